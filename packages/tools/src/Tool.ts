import type { PartId, SessionId } from "@vigil/domain"
import type { Duration, Effect, Schema } from "effect"
import { Data } from "effect"

/** A tool's own failure: the runner records it on the part as `ToolFailed{message}`. */
export class ToolError extends Data.TaggedError("ToolError")<{ readonly message: string }> {}

/** What a tool's process leaves on its part, so a later process can end what a crashed owner left. */
export interface ProcessRecord {
  readonly pid: number
  readonly pgid: number
  /** `/proc/<pid>/stat` start time (clock ticks since boot): a pid reused by another process has another one. */
  readonly startTime: string
}

/**
 * What the supervisor hands a running tool. Everything here is progress the supervision layer
 * sees: output counts as session activity, escalation steps go to the event log.
 */
export interface ToolContext {
  readonly partId: PartId
  readonly sessionId: SessionId
  /** The directory file tools are confined to and shells start in. */
  readonly root: string
  /** Streamed output (a chunk of stdout/stderr, a progress line). */
  readonly output: (chunk: string) => Effect.Effect<void>
  /** The file the supervisor keeps every byte of `output` in, once there is one (named in a truncated output). */
  readonly fullOutput?: () => string | undefined
  /** Called once the tool's process exists, before it can do anything worth recovering. */
  readonly recordProcess: (process: ProcessRecord) => Effect.Effect<void>
  /** An escalation step or notable fact (`shell.term`, `shell.kill`, `shell.survivors`, …) for the event log. */
  readonly event: (type: string, data: Record<string, unknown>) => Effect.Effect<void>
}

/**
 * What a tool's part waits on besides its own work, which decides how it is supervised:
 * - `nothing`, a leaf (the default): its deadline is `tool_timeout`, and the watchdog judges it by it;
 * - `child-session` (`task`): its deadline is `task_timeout`, and the watchdog leaves it alone while
 *   its child session's subtree shows activity (the stuck leaf down there is the one to end);
 * - `reply` (`ask`): its deadline is `task_timeout` (a person answers at a person's pace); a leaf otherwise.
 */
export type WaitsOn = "nothing" | "child-session" | "reply"

export interface ToolDefinition<I = unknown, R = never> {
  readonly name: string
  readonly description: string
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly input: Schema.Schema<I, any>
  /** The call's own deadline, when its input asks for one (the runner caps it by the configured timeout). */
  readonly timeoutOf?: (input: I) => Duration.Duration | undefined
  /** What its part waits on (`nothing` when left out). */
  readonly waitsOn?: WaitsOn
  /**
   * It starts processes on this host, each carrying its part's marker (`partMarkerName`): a
   * recovery then looks for them by that marker even when the part recorded no pid before its
   * owner died. False when left out.
   */
  readonly ownsProcesses?: boolean
  readonly run: (input: I, context: ToolContext) => Effect.Effect<string, ToolError, R>
}

/** A tool of any input, as held in registries (a tool's own input type is checked where it is defined). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyTool = ToolDefinition<any>
