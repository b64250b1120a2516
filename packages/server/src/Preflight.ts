import { Data, Effect } from "effect"
import { accessSync, closeSync, constants, openSync, readSync, statfsSync, statSync } from "node:fs"
import type { Stats } from "node:fs"
import { connect } from "node:net"
import { dirname, resolve } from "node:path"

/**
 * What `vigil serve` checks before it opens the database or runs startup recovery, so an odd
 * `--db` or a busy port is one line and a non-zero exit with nothing written or recovered:
 * - a database path in a folder that cannot exist (`/proc/x/v.db`) made Node's recursive
 *   mkdir spin forever (90% of a core, deaf to SIGTERM, as it never yields);
 * - a directory, or a file or folder that cannot be written, failed inside SQLite with a stack trace;
 * - a busy port failed as "ServeError: An error has occurred", after recovery had already run.
 */
export class StartupCheckError extends Data.TaggedError("StartupCheckError")<{ readonly message: string }> {}

/** Filesystems that are views of the kernel, where no file or folder of ours can be made (statfs magic). */
const virtualFilesystems: ReadonlyMap<number, string> = new Map([
  [0x9fa0, "proc"],
  [0x62656572, "sysfs"],
  [0x64626720, "debugfs"],
  [0x74726163, "tracefs"],
  [0x73636673, "securityfs"],
  [0x27e0eb, "cgroup"],
  [0x63677270, "cgroup2"],
  [0xcafe4a11, "bpf"],
  [0x1cd1, "devpts"],
  [0x62656570, "configfs"],
  [0x6165676c, "pstore"],
  [0xde5e81e4, "efivarfs"],
  [0x65735543, "fusectl"]
])

const code = (error: unknown): string => (error as NodeJS.ErrnoException)?.code ?? String(error)

const statOf = (path: string): Stats | undefined => {
  try {
    return statSync(path)
  } catch (error) {
    // ENOTDIR: a part of the path is a file; the walk up below names it.
    if (code(error) === "ENOENT" || code(error) === "ENOTDIR") return undefined
    throw error
  }
}

const virtualFs = (path: string): string | undefined => {
  try {
    return virtualFilesystems.get(Number(statfsSync(path).type))
  } catch {
    return undefined
  }
}

const canAccess = (path: string, mode: number): string | undefined => {
  try {
    accessSync(path, mode)
    return undefined
  } catch (error) {
    return code(error)
  }
}

const sqliteHeader = Buffer.from("SQLite format 3\0", "latin1")

/** An existing file that is not empty must start as every SQLite database does (else: SQLITE_NOTADB, with a stack). */
const notSqlite = (path: string, stats: Stats): string | undefined => {
  if (stats.size === 0) return undefined
  let fd: number | undefined
  try {
    fd = openSync(path, "r")
    const head = Buffer.alloc(sqliteHeader.length)
    const read = readSync(fd, head, 0, head.length, 0)
    return read === head.length && head.equals(sqliteHeader) ? undefined : "it is not a SQLite database"
  } catch (error) {
    return `it cannot be read (${code(error)})`
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

/**
 * The problem with a SQLite file path, or undefined. `write`: the server's use (the file and its
 * folder, where SQLite puts its WAL, must be writable, or creatable); `read`: `vigil status`.
 * Only looks: creates nothing.
 */
const databasePathProblem = (file: string, mode: "read" | "write"): string | undefined => {
  const path = resolve(file)
  let existing: Stats | undefined
  try {
    existing = statOf(path)
  } catch (error) {
    // ELOOP, EACCES: it cannot be reached.
    return `it cannot be reached (${code(error)})`
  }
  if (existing !== undefined) {
    if (existing.isDirectory()) return "it is a directory, not a database file"
    if (!existing.isFile()) return "it is not a regular file"
    const fs = virtualFs(path)
    if (fs !== undefined) return `it is on ${fs}, a kernel filesystem, not a place for a database`
    const foreign = notSqlite(path, existing)
    if (foreign !== undefined) return foreign
    if (mode === "read") {
      const denied = canAccess(path, constants.R_OK)
      return denied === undefined ? undefined : `it cannot be read (${denied})`
    }
    const denied = canAccess(path, constants.R_OK | constants.W_OK)
    if (denied !== undefined) return `it cannot be read and written (${denied})`
    const folderDenied = canAccess(dirname(path), constants.W_OK | constants.X_OK)
    return folderDenied === undefined
      ? undefined
      : `its folder ${dirname(path)} is not writable (${folderDenied}), and SQLite keeps its journal beside the file`
  }
  // The nearest folder that exists: what is missing below it would be made there.
  let folder = dirname(path)
  for (;;) {
    let stats: Stats | undefined
    try {
      stats = statOf(folder)
    } catch (error) {
      return `${folder} cannot be reached (${code(error)})`
    }
    if (stats !== undefined) {
      if (!stats.isDirectory()) return `${folder} is not a folder`
      break
    }
    if (dirname(folder) === folder) return `${folder} does not exist`
    folder = dirname(folder)
  }
  const fs = virtualFs(folder)
  if (fs !== undefined) return `${folder} is on ${fs}, a kernel filesystem: no database can be made there`
  if (mode === "read") return undefined
  const denied = canAccess(folder, constants.W_OK | constants.X_OK)
  return denied === undefined ? undefined : `nothing can be created in ${folder} (${denied})`
}

export const checkDatabasePath = (file: string, mode: "read" | "write") =>
  Effect.suspend(() => {
    const problem = databasePathProblem(file, mode)
    return problem === undefined
      ? Effect.void
      : Effect.fail(new StartupCheckError({ message: `cannot use the database ${file}: ${problem}` }))
  })

const listenProblem = (host: string, port: number, error: unknown): string => {
  switch (code(error)) {
    case "EADDRINUSE":
      return `port ${port} on ${host} is in use (another vigil, or another program): stop it or choose another with --port`
    case "EACCES":
      return `cannot listen on port ${port} on ${host}: permission denied (ports below 1024 need privileges)`
    case "EADDRNOTAVAIL":
      return `cannot listen on ${host}: it is not an address of this machine`
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `cannot listen on ${host}: no such host`
    default:
      return `cannot listen on port ${port} on ${host}: ${error instanceof Error ? error.message : String(error)}`
  }
}

/**
 * Whether the port is taken, asked without taking it: by connecting to it. Binding it to find out
 * (as this did) reset whatever connected in that moment: a client reconnecting to a server being
 * restarted got ECONNRESET from the probe's backlog (server/test/Restarts.test.ts, on a loaded
 * machine). A refused connection means free; nobody answering within a second, too. What else can
 * keep the server from listening (an address not this machine's, a port it may not bind, a program
 * that takes the port meanwhile) is said in the same one line when it listens (`describeListenFailure`).
 */
export const checkPortFree = (host: string, port: number) =>
  Effect.async<void, StartupCheckError>((resume) => {
    // A server on every address is reached on loopback.
    const target = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "::1" : host
    const socket = connect({ host: target, port })
    const settle = (result: Effect.Effect<void, StartupCheckError>) => {
      socket.destroy()
      resume(result)
    }
    socket.setTimeout(1_000, () => settle(Effect.void))
    socket.once("connect", () => {
      const inUse = Object.assign(new Error(`port ${port} is in use`), { code: "EADDRINUSE" })
      settle(Effect.fail(new StartupCheckError({ message: listenProblem(host, port, inUse) })))
    })
    socket.once("error", () => settle(Effect.void))
    return Effect.sync(() => socket.destroy())
  })

/** The line for a listen that failed after all (a `ServeError`'s cause). */
export const describeListenFailure = (host: string, port: number, cause: unknown): string => listenProblem(host, port, cause)
