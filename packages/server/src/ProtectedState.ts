import type { ProtectedPaths } from "@vigil/tools"
import { isInside, realish } from "@vigil/tools"
import { dirname, join, resolve } from "node:path"

/**
 * What of the server's own state the tools must not reach: the SQLite database and the files
 * SQLite keeps beside it, the config file (a write of it would be loaded at the next start, with
 * its provider URL and key), and the data folder (shell output under `output/`). Paths, so a file
 * that does not exist yet (a first `vigil.json`, the `-shm`) cannot be created either.
 *
 * The data folder is protected whole unless the working directory is inside it (`--db vigil.db`
 * puts the database in the working directory itself): then the files and `output/` alone.
 */
export const protectedStateOf = (options: {
  readonly db: string
  readonly configFile?: string | undefined
  /** Config files a restart would read (`vigil.json` beside the `opencode.json` in use). */
  readonly configFiles?: ReadonlyArray<string> | undefined
  /** Where full shell output goes (`<data folder>/output` by default). */
  readonly outputDir?: string | undefined
  readonly root?: string
}): ProtectedPaths => {
  const db = resolve(options.db)
  const dataFolder = dirname(db)
  const root = realish(resolve(options.root ?? process.cwd()))
  const files = [db, `${db}-wal`, `${db}-shm`, `${db}-journal`]
  if (options.configFile !== undefined) files.push(resolve(options.configFile))
  for (const file of options.configFiles ?? []) files.push(resolve(file))
  const folders = [resolve(options.outputDir ?? join(dataFolder, "output"))]
  if (!isInside(realish(dataFolder), root)) folders.push(dataFolder)
  return { files, folders }
}
