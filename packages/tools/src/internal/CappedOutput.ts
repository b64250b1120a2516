/**
 * The output cap lives in the domain package, so the shell, the runner and the store share one
 * definition (one size, one marker); re-exported here where the tools always found it.
 */
export { CappedOutput, capText, outputCapBytes } from "@vigil/domain"
export type { OutputTextOptions } from "@vigil/domain"
