import { execFileSync } from "node:child_process"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/**
 * Global setup of the suites that start real `vigil` processes (server, e2e): they run the built
 * CLI (`node packages/server/dist/vigil.mjs`, as an installed package does), so this builds what is
 * stale first (`tsc -b` is incremental: a fraction of a second when nothing changed) and a
 * targeted `vitest run` never tests an old build. Synchronous, and once per vitest process: the
 * projects that list it share it.
 */
export default function buildOnce(): void {
  const state = globalThis as { vigilBuilt?: boolean }
  if (state.vigilBuilt === true) return
  const root = dirname(fileURLToPath(import.meta.url))
  execFileSync(process.execPath, [join(root, "scripts/build.mjs")], { cwd: root, stdio: ["ignore", "inherit", "inherit"] })
  state.vigilBuilt = true
}
