import { Duration, Effect, Schema } from "effect"
import type { ProtectedPaths } from "./FileAccess.js"
import { AccessError, checkNotProtectedFolder } from "./FileAccess.js"
import { resolveInside } from "./Files.js"
import type { ShellOptions } from "./Shell.js"
import { runShell } from "./Shell.js"
import type { ToolDefinition } from "./Tool.js"
import { ToolError } from "./Tool.js"

export const BashInput = Schema.Struct({
  command: Schema.String.pipe(Schema.minLength(1)),
  cwd: Schema.optional(Schema.String),
  /** Milliseconds; the runner caps it by `tool_timeout`. */
  timeout: Schema.optional(Schema.Number.pipe(Schema.positive()))
})
export type BashInput = typeof BashInput.Type

/** The environment variable every process a tool starts inherits: how a hard stop finds them all. */
export const partMarkerName = "VIGIL_PART_ID"

export const makeBashTool = (
  options: Pick<ShellOptions, "outputCap" | "killGrace" | "drain" | "environment"> & {
    /** The server's own state: no shell starts in its data folder. */
    readonly protect?: ProtectedPaths
  } = {}
): ToolDefinition<BashInput> => ({
  name: "bash",
  description: "Run a shell command (/bin/sh -c) in the working directory; output is captured and capped.",
  input: BashInput,
  timeoutOf: (input) => (input.timeout === undefined ? undefined : Duration.millis(input.timeout)),
  ownsProcesses: true,
  run: (input, context) =>
    Effect.gen(function*() {
      const cwd = input.cwd === undefined ? context.root : yield* resolveInside(context.root, input.cwd)
      if (options.protect) yield* refuseProtectedCwd(options.protect, cwd, input.cwd ?? ".")
      const { protect: _, ...shellOptions } = options
      const result = yield* runShell({
        ...shellOptions,
        command: input.command,
        cwd,
        marker: { name: partMarkerName, value: context.partId },
        onStart: context.recordProcess,
        onOutput: context.output,
        ...(context.fullOutput ? { fullOutput: context.fullOutput } : {}),
        onStep: (step, data) => context.event(`shell.${step}`, data)
      })
      return result.output
    })
})

/**
 * By name only: `spawn` takes a path, and the shell may `cd` anywhere once started (the tools'
 * fence is for the file tools; a shell is confined by the process, not by vigil).
 */
const refuseProtectedCwd = (protect: ProtectedPaths, cwd: string, shown: string) =>
  Effect.try({
    try: () => checkNotProtectedFolder(protect, cwd, shown),
    catch: (error) => new ToolError({ message: error instanceof AccessError ? `cwd ${error.message}` : String(error) })
  })

export const BashTool = makeBashTool()
