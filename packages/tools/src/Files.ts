import { Effect, Schema } from "effect"
import { realpathSync } from "node:fs"
import { resolve } from "node:path"
import type { ProtectedPaths } from "./FileAccess.js"
import { AccessError, isInside, noProtectedPaths, openInside, realish } from "./FileAccess.js"
import { fileToolThreads, ThreadBudget } from "./ThreadBudget.js"
import type { ToolDefinition } from "./Tool.js"
import { ToolError } from "./Tool.js"

/** How much of a file `read` returns. */
export const readCapBytes = 256 * 1024

/**
 * Resolves `path` against `root` and refuses anything outside it, by name (`../x`, `/etc`) or
 * through a symlink that points out (dangling or not). A check by name, for the shell's `cwd`
 * (a path is all `spawn` takes, and the shell runs arbitrary commands there anyway); the file
 * tools open through `openInside`, which leaves no window between the check and the use.
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

export interface FileToolOptions {
  /** The server's own files and folders (database, config, data folder): refused to both tools. */
  readonly protect?: ProtectedPaths
  /** The file threads the tools may hold at once (shared by `read` and `write` of `makeFileTools`). */
  readonly threads?: ThreadBudget
}

const failure = (verb: string, path: string) => (error: unknown) =>
  new ToolError({ message: error instanceof AccessError ? error.message : `cannot ${verb} ${path}: ${String(error)}` })

export const makeReadTool = (options: FileToolOptions = {}): ToolDefinition<typeof ReadInput.Type> => {
  const threads = options.threads ?? new ThreadBudget(fileToolThreads)
  return {
    name: "read",
    description: "Read a file inside the working directory.",
    input: ReadInput,
    run: (input, context) =>
      Effect.tryPromise({
        try: (signal) =>
          threads.run(() => readHead(context.root, input.path, options.protect ?? noProtectedPaths, readCapBytes), signal),
        catch: failure("read", input.path)
      }).pipe(
        Effect.map(({ bytes, size }) =>
          size > readCapBytes
            ? `${bytes.toString("utf8")}\n… [file truncated at ${readCapBytes} bytes of ${size}]`
            : bytes.toString("utf8")
        )
      )
  }
}

/** At most `cap` bytes from the start of a file: a huge log is not read whole to show its head. */
const readHead = async (root: string, path: string, protect: ProtectedPaths, cap: number) => {
  const { handle, info } = await openInside(root, path, "read", protect)
  try {
    const buffer = Buffer.alloc(Math.min(info.size, cap))
    let filled = 0
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled)
      if (bytesRead === 0) break
      filled += bytesRead
    }
    return { bytes: buffer.subarray(0, filled), size: info.size }
  } finally {
    await handle.close()
  }
}

export const makeWriteTool = (options: FileToolOptions = {}): ToolDefinition<typeof WriteInput.Type> => {
  const threads = options.threads ?? new ThreadBudget(fileToolThreads)
  return {
    name: "write",
    description: "Write a file inside the working directory (parent folders are created).",
    input: WriteInput,
    run: (input, context) =>
      Effect.tryPromise({
        try: (signal) =>
          threads.run(() => writeWhole(context.root, input.path, options.protect ?? noProtectedPaths, input.content), signal),
        catch: failure("write", input.path)
      }).pipe(Effect.as(`wrote ${Buffer.byteLength(input.content)} bytes to ${input.path}`))
  }
}

/** Into the descriptor that was checked, truncated only then: a refused file is left as it was. */
const writeWhole = async (root: string, path: string, protect: ProtectedPaths, content: string) => {
  const { handle } = await openInside(root, path, "write", protect)
  try {
    await handle.truncate(0)
    const bytes = Buffer.from(content)
    let written = 0
    while (written < bytes.length) {
      const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, written)
      written += bytesWritten
    }
  } finally {
    await handle.close()
  }
}

/** `read` and `write`, sharing one budget of file threads. */
export const makeFileTools = (options: FileToolOptions = {}) => {
  const shared = { ...options, threads: options.threads ?? new ThreadBudget(fileToolThreads) }
  return { read: makeReadTool(shared), write: makeWriteTool(shared) }
}

const unprotected = makeFileTools()
/** The file tools with nothing protected beyond the working-directory fence (tests, embedding apps). */
export const ReadTool = unprotected.read
export const WriteTool = unprotected.write
