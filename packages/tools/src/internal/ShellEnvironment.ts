import type { ShellEnvPolicy } from "@vigil/domain"
import { defaultShellEnv } from "@vigil/domain"
import { Option } from "effect"

/**
 * What a shell inherits of the server's environment. A shell runs whatever a model (or whoever
 * reaches the API) asks, so `env` must not print the server's password or a provider's key:
 * by default secrets are removed, as codex's `shell_environment_policy` does.
 */
export interface ShellEnvironment {
  readonly policy: ShellEnvPolicy
  /** Values never passed on whatever their variable is called (the configured provider keys). */
  readonly secretValues: ReadonlyArray<string>
}

const defaultShellEnvironment: ShellEnvironment = { policy: defaultShellEnv, secretValues: [] }

/** vigil's own secrets, whatever the patterns say. */
const vigilSecretNames: ReadonlyArray<string> = ["VIGIL_SERVER_PASSWORD", "VIGIL_DATABASE_URL"]

/** Names that hold secrets by convention (codex's default excludes). */
const secretNamePatterns: ReadonlyArray<string> = ["*KEY*", "*SECRET*", "*TOKEN*", "*PASSWORD*"]

/** A name glob (`*`, `?`), matched case-insensitively against the whole name. */
const globMatcher = (globs: ReadonlyArray<string>): ((name: string) => boolean) => {
  if (globs.length === 0) return () => false
  const source = globs
    .map((glob) => glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, "."))
    .join("|")
  const pattern = new RegExp(`^(?:${source})$`, "i")
  return (name) => pattern.test(name)
}

/**
 * The environment a shell starts with: `include_only` first (when set), then the defaults
 * (vigil's secrets, provider keys by value, secret-looking names) unless `include` names the
 * variable, then `exclude`, which always wins.
 */
export const shellEnvironment = (
  env: Readonly<Record<string, string | undefined>>,
  environment: ShellEnvironment = defaultShellEnvironment
): Record<string, string> => {
  const { policy } = environment
  const only = Option.map(policy.includeOnly, globMatcher)
  const included = globMatcher(policy.include)
  const excluded = globMatcher(policy.exclude)
  const secretName = globMatcher([...vigilSecretNames, ...secretNamePatterns])
  const secretValues = new Set(environment.secretValues.filter((value) => value !== ""))
  const kept: Record<string, string> = {}
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue
    if (Option.isSome(only) && !only.value(name)) continue
    if ((secretName(name) || secretValues.has(value)) && !included(name)) continue
    if (excluded(name)) continue
    kept[name] = value
  }
  return kept
}
