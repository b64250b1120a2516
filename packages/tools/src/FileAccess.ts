import type { Stats } from "node:fs"
import { constants, lstatSync, readlinkSync, realpathSync, statSync } from "node:fs"
import type { FileHandle } from "node:fs/promises"
import { mkdir, open, readlink, realpath } from "node:fs/promises"
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path"

/**
 * Opening a file for a tool without a window between the check and the use (Linux).
 *
 * A path is walked one component at a time from a descriptor of the working directory: each
 * component is opened as `/proc/self/fd/<dir>/<name>` with `O_NOFOLLOW`, which is `openat(2)` in a
 * language that has none. A symlink is never followed by the kernel: it is read and its target is
 * walked again, from the root, under the same rules. So a symlink swapped in while a tool runs
 * meets a check that already holds the descriptor it will use; what the tool reads or writes is
 * the file it checked, never a path opened a second time.
 *
 * Every open is non-blocking (`O_NONBLOCK`, `O_NOCTTY`) and the file must then be a regular file:
 * opening a FIFO without it waits for a writer inside one of libuv's four file threads, and four
 * such reads starve every later file operation of the process (the shell tool's too).
 */

/** The server's own state, out of reach of the file tools and of a shell's `cwd`. */
export interface ProtectedPaths {
  /** Files refused whether or not they exist yet (a database, its -wal/-shm, the config file). */
  readonly files: ReadonlyArray<string>
  /** Folders refused with everything in them (the data folder, the shell output folder). */
  readonly folders: ReadonlyArray<string>
}

export const noProtectedPaths: ProtectedPaths = { files: [], folders: [] }

/** A refusal or a failure, with the message the tool reports as it is. */
export class AccessError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message)
  }
}

/** Symlinks followed before giving up (the kernel's own limit is 40). */
const maxLinks = 40

export const isInside = (root: string, path: string) => {
  const rel = relative(root, path)
  // `..notes` is a name inside the root; only a `..` segment climbs out.
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel))
}

const lstatOrUndefined = (path: string) => {
  try {
    return lstatSync(path)
  } catch {
    return undefined
  }
}

/**
 * Where `path` would lead now: the real path of its nearest existing ancestor, joined with the
 * rest, a dangling symlink on the way followed by hand. A name only, for comparing with what a
 * walk reaches (a protected file that does not exist yet, a symlink target spelled through a
 * symlinked ancestor of the root); nothing is opened by it.
 */
export const realish = (path: string, links = 0): string => {
  let existing = path
  const rest: Array<string> = []
  for (;;) {
    const entry = lstatOrUndefined(existing)
    if (entry?.isSymbolicLink() && links < maxLinks) {
      try {
        return resolve(realpathSync(existing), ...rest)
      } catch {
        return realish(resolve(dirname(existing), readlinkSync(existing), ...rest), links + 1)
      }
    }
    if (entry !== undefined) return resolve(realpathSync(existing), ...rest)
    const parent = dirname(existing)
    if (parent === existing) return path
    rest.unshift(basename(existing))
    existing = parent
  }
}

const statOrUndefined = (path: string) => {
  try {
    return statSync(path)
  } catch {
    return undefined
  }
}

const sameFile = (a: Stats, b: { readonly dev: number; readonly ino: number }) => a.dev === b.dev && a.ino === b.ino

/** The protected paths as they are now: real names, and the identity of those that exist. */
interface Fence {
  readonly files: ReadonlyArray<string>
  readonly folders: ReadonlyArray<string>
  readonly fileIds: ReadonlyArray<Stats>
  readonly folderIds: ReadonlyArray<Stats>
}

const fenceOf = (paths: ProtectedPaths): Fence => ({
  files: paths.files.map((path) => realish(resolve(path))),
  folders: paths.folders.map((path) => realish(resolve(path))),
  fileIds: paths.files.flatMap((path) => statOrUndefined(path) ?? []),
  folderIds: paths.folders.flatMap((path) => statOrUndefined(path) ?? [])
})

/** Whether a real path is one of the server's own; `undefined` when it is not. */
const protectedName = (fence: Fence, real: string): string | undefined =>
  fence.files.find((file) => file === real) ?? fence.folders.find((folder) => isInside(folder, real))

const refuseProtected = (what: string) =>
  new AccessError(`${what} is part of the server's own state (its database, config or data folder) and is out of reach of the tools`)

/** Refuses a folder (a shell's `cwd`) inside the server's data folder, by name and by identity. */
export const checkNotProtectedFolder = (paths: ProtectedPaths, folder: string, shown: string): void => {
  const fence = fenceOf(paths)
  const real = realish(folder)
  const info = statOrUndefined(real)
  if (protectedName(fence, real) !== undefined || (info && fence.folderIds.some((id) => sameFile(info, id)))) {
    throw refuseProtected(JSON.stringify(shown))
  }
}

const fdPath = (handle: FileHandle) => `/proc/self/fd/${handle.fd}`

const code = (error: unknown) => (error as NodeJS.ErrnoException | undefined)?.code

export type Access = "read" | "write"

const fileFlags = {
  read: constants.O_RDONLY,
  write: constants.O_WRONLY | constants.O_CREAT
} as const
const always = constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY
const directoryFlags = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW

const kindOf = (info: Stats) =>
  info.isDirectory()
    ? "a directory"
    : info.isFIFO()
    ? "a FIFO"
    : info.isSocket()
    ? "a socket"
    : info.isCharacterDevice() || info.isBlockDevice()
    ? "a device"
    : "not a regular file"

export interface OpenedFile {
  readonly handle: FileHandle
  readonly info: Stats
}

/**
 * Opens `path` (relative to `root`, or absolute) for a tool: inside `root`, never through a
 * protected path, a regular file with no other hard link (one would read and write a file
 * outside). For `write` the missing folders on the way are made and the file is created, but not
 * truncated: the caller truncates the checked descriptor. The caller closes the handle.
 */
export const openInside = async (
  root: string,
  path: string,
  access: Access,
  protect: ProtectedPaths
): Promise<OpenedFile> => {
  const shown = JSON.stringify(path)
  const realRoot = await realpath(root)
  const outside = () => new AccessError(`path ${shown} is outside the working directory ${realRoot}`)
  const target = resolve(realRoot, path)
  if (!isInside(realRoot, target)) throw outside()
  const fence = fenceOf(protect)

  /** The folders walked so far, the root first: `..` closes the last one. */
  const stack: Array<FileHandle> = []
  const closeFrom = async (depth: number) => {
    for (const handle of stack.splice(depth)) await handle.close().catch(() => undefined)
  }
  const enterDirectory = async (handle: FileHandle) => {
    stack.push(handle)
    const real = await readlink(fdPath(handle)).catch((error: unknown) => {
      throw code(error) === "ENOENT" && stack.length === 1
        ? new AccessError("the file tools need Linux's /proc/self/fd, which this system does not have")
        : error
    })
    const info = await handle.stat()
    if (!isInside(realRoot, real)) throw outside()
    if (protectedName(fence, real) !== undefined || fence.folderIds.some((id) => sameFile(info, id))) {
      throw refuseProtected(shown)
    }
  }

  let pending = relative(realRoot, target).split(sep).filter((name) => name !== "" && name !== ".")
  let links = 0
  let retries = 0
  try {
    await enterDirectory(await open(realRoot, directoryFlags))
    for (;;) {
      const name = pending.shift()
      if (name === undefined) throw new AccessError(`is a directory, not a file: ${path}`, "EISDIR")
      if (name === "..") {
        if (stack.length === 1) throw outside()
        await closeFrom(stack.length - 1)
        continue
      }
      const dir = stack[stack.length - 1]!
      const at = `${fdPath(dir)}/${name}`
      const last = pending.length === 0
      try {
        if (!last) {
          await enterDirectory(await open(at, directoryFlags))
          continue
        }
        // The name itself, before anything is created under it (an empty config file made here
        // and refused after would still stop the next start-up).
        if (protectedName(fence, join(await readlink(fdPath(dir)), name)) !== undefined) throw refuseProtected(shown)
        const handle = await open(at, fileFlags[access] | always, 0o666)
        const info = await handle.stat()
        const refusal = fileRefusal(info, path) ??
          (fence.fileIds.some((id) => sameFile(info, id)) ? refuseProtected(shown) : undefined) ??
          (await descriptorRefusal(handle, realRoot, fence, outside, shown))
        if (refusal !== undefined) {
          await handle.close().catch(() => undefined)
          throw refusal
        }
        return { handle, info }
      } catch (error) {
        if (error instanceof AccessError) throw error
        const errno = code(error)
        if (errno === "ELOOP" || errno === "ENOTDIR") {
          // A symlink (O_NOFOLLOW refuses it): walk its target instead, from where it points.
          const link = await readlink(at).catch(() => undefined)
          if (link === undefined) throw new AccessError(`not a directory on the way to ${path}`, errno)
          if (++links > maxLinks) throw new AccessError(`too many levels of symbolic links in ${path}`, "ELOOP")
          if (isAbsolute(link)) {
            const real = isInside(realRoot, link) ? resolve(link) : realish(link)
            if (!isInside(realRoot, real)) throw outside()
            await closeFrom(1)
            pending = [...relative(realRoot, real).split(sep), ...pending].filter((part) => part !== "" && part !== ".")
          } else {
            pending = [...link.split("/"), ...pending].filter((part) => part !== "" && part !== ".")
          }
          continue
        }
        if (errno === "ENOENT" && access === "write" && !last && retries++ < 100) {
          // A missing folder is made in the folder already held, never through a path, and never
          // as the server's own (a data folder that does not exist yet stays so).
          if (protectedName(fence, join(await readlink(fdPath(dir)), name)) !== undefined) throw refuseProtected(shown)
          await mkdir(at).catch((made: unknown) => {
            if (code(made) !== "EEXIST") throw made
          })
          pending.unshift(name)
          continue
        }
        if (errno === "ENOENT") throw new AccessError(`no such file: ${path}`, errno)
        if (errno === "EISDIR") throw new AccessError(`is a directory, not a file: ${path}`, errno)
        // A FIFO opened for writing with no reader: refused without waiting for one.
        if (errno === "ENXIO") throw new AccessError(`not a regular file (a FIFO or a device): ${path}`, errno)
        throw error
      }
    }
  } finally {
    await closeFrom(0)
  }
}

const fileRefusal = (info: Stats, path: string): AccessError | undefined => {
  if (info.isDirectory()) return new AccessError(`is a directory, not a file: ${path}`, "EISDIR")
  if (!info.isFile()) return new AccessError(`not a regular file (${kindOf(info)}): ${path}`)
  if (info.nlink > 1) {
    return new AccessError(
      `${path} has ${info.nlink} hard links: a file linked elsewhere is refused (it may be a file outside the working directory)`
    )
  }
  return undefined
}

/** The opened descriptor's own path, the last word: inside the root and not protected. */
const descriptorRefusal = async (
  handle: FileHandle,
  realRoot: string,
  fence: Fence,
  outside: () => AccessError,
  shown: string
): Promise<AccessError | undefined> => {
  const real = await readlink(fdPath(handle))
  if (!isInside(realRoot, real)) return outside()
  if (protectedName(fence, real) !== undefined) return refuseProtected(shown)
  return undefined
}
