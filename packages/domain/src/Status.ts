import { Schema } from "effect"

/**
 * `busy` runs a turn, `waiting` is blocked on a reply; the rest are at rest and take a new prompt.
 */
export const SessionStatus = Schema.Literal("busy", "waiting", "idle", "cancelled", "error")
export type SessionStatus = typeof SessionStatus.Type
export const isSessionActive = (status: SessionStatus): boolean => status === "busy" || status === "waiting"

export const PartStatus = Schema.Literal("pending", "running", "completed", "error")
export type PartStatus = typeof PartStatus.Type
export const isPartTerminal = (status: PartStatus): boolean => status === "completed" || status === "error"

/**
 * What a part records: the user's prompt, assistant text, a model step, or a tool call.
 * Only `model` and `tool` parts run under supervision; `prompt` and `text` are born completed.
 */
export const PartKind = Schema.Literal("prompt", "text", "model", "tool")
export type PartKind = typeof PartKind.Type

/** `pending → running → completed | error`; a pending part may also end before it starts. */
const partTransitions: { readonly [S in PartStatus]: ReadonlyArray<PartStatus> } = {
  pending: ["running", "error"],
  running: ["completed", "error"],
  completed: [],
  error: []
}

const sessionTransitions: { readonly [S in SessionStatus]: ReadonlyArray<SessionStatus> } = {
  idle: ["busy"],
  cancelled: ["busy"],
  error: ["busy"],
  busy: ["waiting", "idle", "cancelled", "error"],
  waiting: ["busy", "idle", "cancelled", "error"]
}

export const canTransitionPart = (from: PartStatus, to: PartStatus): boolean => partTransitions[from].includes(to)
export const canTransitionSession = (from: SessionStatus, to: SessionStatus): boolean =>
  sessionTransitions[from].includes(to)
