/** The server's defaults, in a module of their own: the CLI reads them without loading the server. */

export const defaultPort = 4096
/** Loopback only unless asked otherwise: the server runs shell commands for whoever reaches it. */
export const defaultHost = "127.0.0.1"
export const defaultDb = ".vigil/vigil.db"
export const defaultConfig = "vigil.json"

/**
 * The config files read when none is named, first found wins: vigil's own, then opencode's, so a
 * project set up for opencode runs on vigil unchanged (ConfigFile.ts reads them).
 */
export const configCandidates: ReadonlyArray<string> = [
  defaultConfig,
  "opencode.json",
  "opencode.jsonc",
  ".opencode/opencode.json",
  ".opencode/opencode.jsonc"
]
