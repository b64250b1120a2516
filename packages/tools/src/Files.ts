import { Effect, Schema } from "effect"
import { lstatSync, readlinkSync, realpathSync } from "node:fs"
import { mkdir, open, writeFile } from "node:fs/promises"
import { basename, dirname, isAbsolute, relative, resolve, sep } from "node:path"
import type { ToolDefinition } from "./Tool.js"
import { ToolError } from "./Tool.js"

/** How much of a file `read` returns. */
export const readCapBytes = 256 * 1024

/** Symlinks followed by hand before giving up (the kernel's own limit is 40). */
const maxLinks = 40

/**
 * Where `path` really leads: the real path of its nearest existing ancestor, joined with the rest.
 * A dangling symlink on the way is followed by hand: `existsSync` calls it missing, yet writing
 * through it creates its target, wherever that is.
 */
const realish = (path: string, links = 0): string => {
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

const lstatOrUndefined = (path: string) => {
  try {
    return lstatSync(path)
  } catch {
    return undefined
  }
}

const isInside = (root: string, path: string) => {
  const rel = relative(root, path)
  // `..notes` is a name inside the root; only a `..` segment climbs out.
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel))
}

/**
 * Resolves `path` against `root` and refuses anything outside it, by name (`../x`, `/etc`) or
 * through a symlink that points out (dangling or not). It checks before the tool acts: a symlink
 * swapped in between is out of reach, and a tool in this process cannot close that gap anyway
 * (the shell tool runs arbitrary commands in the same directory).
 */
export const resolveInside = (root: string, path: string): Effect.Effect<string, ToolError> =>
  Effect.try({
    try: () => {
      const realRoot = realpathSync(root)
      const target = resolve(realRoot, path)
      if (!isInside(realRoot, target) || !isInside(realRoot, realish(target))) {
        throw new ToolError({ message: `path ${JSON.stringify(path)} is outside the working directory ${realRoot}` })
      }
      return target
    },
    catch: (error) => (error instanceof ToolError ? error : new ToolError({ message: `cannot resolve ${JSON.stringify(path)}: ${String(error)}` }))
  })

export const ReadInput = Schema.Struct({ path: Schema.String.pipe(Schema.minLength(1)) })
export const WriteInput = Schema.Struct({ path: Schema.String.pipe(Schema.minLength(1)), content: Schema.String })

export const ReadTool: ToolDefinition<typeof ReadInput.Type> = {
  name: "read",
  description: "Read a file inside the working directory.",
  input: ReadInput,
  run: (input, context) =>
    Effect.gen(function*() {
      const path = yield* resolveInside(context.root, input.path)
      const { bytes, size } = yield* Effect.tryPromise({
        try: () => readHead(path, readCapBytes),
        catch: (error) =>
          new ToolError({
            message: (error as NodeJS.ErrnoException).code === "ENOENT"
              ? `no such file: ${input.path}`
              : (error as NodeJS.ErrnoException).code === "EISDIR"
              ? `is a directory, not a file: ${input.path}`
              : `cannot read ${input.path}: ${String(error)}`
          })
      })
      return size > readCapBytes
        ? `${bytes.toString("utf8")}\n… [file truncated at ${readCapBytes} bytes of ${size}]`
        : bytes.toString("utf8")
    })
}

/** At most `cap` bytes from the start of a file: a huge log is not read whole to show its head. */
const readHead = async (path: string, cap: number): Promise<{ bytes: Buffer; size: number }> => {
  const handle = await open(path, "r")
  try {
    const { size } = await handle.stat()
    const buffer = Buffer.alloc(Math.min(size, cap))
    let filled = 0
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled)
      if (bytesRead === 0) break
      filled += bytesRead
    }
    return { bytes: buffer.subarray(0, filled), size }
  } finally {
    await handle.close()
  }
}

export const WriteTool: ToolDefinition<typeof WriteInput.Type> = {
  name: "write",
  description: "Write a file inside the working directory (parent folders are created).",
  input: WriteInput,
  run: (input, context) =>
    Effect.gen(function*() {
      const path = yield* resolveInside(context.root, input.path)
      yield* Effect.tryPromise({
        try: async () => {
          await mkdir(dirname(path), { recursive: true })
          await writeFile(path, input.content)
        },
        catch: (error) => new ToolError({ message: `cannot write ${input.path}: ${String(error)}` })
      })
      return `wrote ${Buffer.byteLength(input.content)} bytes to ${input.path}`
    })
}
