import { Effect, Schema } from "effect"
import { existsSync, realpathSync } from "node:fs"
import { mkdir, readFile, writeFile } from "node:fs/promises"
import { dirname, isAbsolute, relative, resolve, sep } from "node:path"
import type { ToolDefinition } from "./Tool.js"
import { ToolError } from "./Tool.js"

/** How much of a file `read` returns. */
export const readCapBytes = 256 * 1024

/** The real path of `path`, or of its nearest existing ancestor joined with the rest. */
const realish = (path: string): string => {
  let existing = path
  const rest: Array<string> = []
  while (!existsSync(existing)) {
    const parent = dirname(existing)
    if (parent === existing) break
    rest.unshift(existing.slice(parent.length + (parent.endsWith(sep) ? 0 : 1)))
    existing = parent
  }
  return resolve(realpathSync(existing), ...rest)
}

const isInside = (root: string, path: string) => {
  const rel = relative(root, path)
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel))
}

/**
 * Resolves `path` against `root` and refuses anything outside it, by name (`../x`, `/etc`) or
 * through a symlink that points out.
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
      const content = yield* Effect.tryPromise({
        try: () => readFile(path),
        catch: (error) =>
          new ToolError({
            message: (error as NodeJS.ErrnoException).code === "ENOENT"
              ? `no such file: ${input.path}`
              : `cannot read ${input.path}: ${String(error)}`
          })
      })
      return content.length > readCapBytes
        ? `${content.subarray(0, readCapBytes).toString("utf8")}\n… [file truncated at ${readCapBytes} bytes of ${content.length}]`
        : content.toString("utf8")
    })
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
