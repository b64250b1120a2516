import { cpSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..")
const packages = join(repoRoot, "packages")

/**
 * The example's dependencies as the workspace has them, each by its real path: the vigil packages
 * themselves, and the very copies of effect and `@effect/*` they resolve, so the example runs on
 * one copy of effect as an npm install of the packed packages would give it.
 */
const dependencies = (): Record<string, string> => ({
  "@vigil/domain": join(packages, "domain"),
  "@vigil/runtime": join(packages, "runtime"),
  "@vigil/store": join(packages, "store"),
  "@vigil/tools": join(packages, "tools"),
  effect: installed("effect"),
  "@effect/platform": installed("@effect/platform"),
  "@effect/platform-node": installed("@effect/platform-node"),
  "@effect/sql": installed("@effect/sql"),
  "@effect/sql-sqlite-node": installed("@effect/sql-sqlite-node"),
  "@types/node": join(repoRoot, "node_modules/@types/node")
})

/** A package as the vigil packages have it installed (the first of them that depends on it). */
const installed = (name: string): string => {
  for (const owner of ["runtime", "store", "server", "tools", "domain", "e2e"]) {
    const path = join(packages, owner, "node_modules", name)
    if (existsSync(path)) return path
  }
  throw new Error(`no workspace package has ${name} installed`)
}

/**
 * examples/embed copied to a temp folder outside the workspace, with a `node_modules` of links to
 * the workspace's packages (until scripts/pack-check.sh installs the packed ones): what the
 * example imports resolves only through it. Removed by `dispose`.
 */
export const stageExample = () => {
  const dir = mkdtempSync(join(tmpdir(), "vigil-embed-"))
  cpSync(join(repoRoot, "examples/embed/src"), join(dir, "src"), { recursive: true })
  cpSync(join(repoRoot, "examples/embed/package.json"), join(dir, "package.json"))
  cpSync(join(repoRoot, "examples/embed/tsconfig.json"), join(dir, "tsconfig.json"))
  for (const [name, path] of Object.entries(dependencies())) {
    const link = join(dir, "node_modules", name)
    mkdirSync(dirname(link), { recursive: true })
    symlinkSync(realpathSync(path), link)
  }
  return { dir, main: join(dir, "src/main.ts"), dispose: () => rmSync(dir, { recursive: true, force: true }) }
}
