import { Duration, Effect, Schema } from "effect"
import { resolveInside } from "./Files.js"
import type { ShellOptions } from "./Shell.js"
import { runShell } from "./Shell.js"
import type { ToolDefinition } from "./Tool.js"

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
  options: Pick<ShellOptions, "outputCap" | "killGrace" | "drain"> = {}
): ToolDefinition<BashInput> => ({
  name: "bash",
  description: "Run a shell command (/bin/sh -c) in the working directory; output is captured and capped.",
  input: BashInput,
  timeoutOf: (input) => (input.timeout === undefined ? undefined : Duration.millis(input.timeout)),
  run: (input, context) =>
    Effect.gen(function*() {
      const cwd = input.cwd === undefined ? context.root : yield* resolveInside(context.root, input.cwd)
      const result = yield* runShell({
        ...options,
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

export const BashTool = makeBashTool()
