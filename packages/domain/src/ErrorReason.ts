import { Duration, Match, Schema } from "effect"

/**
 * Why a part or a session ended other than normally. Every terminal error carries one, stored as
 * JSON on the row and sent as-is over HTTP, so "why was this cancelled?" always has an answer.
 * Durations are milliseconds.
 */
export class ToolTimeout extends Schema.TaggedClass<ToolTimeout>()("ToolTimeout", {
  timeout: Schema.Number
}) {}
export class OrphanedByCrash extends Schema.TaggedClass<OrphanedByCrash>()("OrphanedByCrash", {
  ownerId: Schema.String
}) {}
export class WatchdogStuck extends Schema.TaggedClass<WatchdogStuck>()("WatchdogStuck", {
  runningFor: Schema.Number,
  threshold: Schema.Number
}) {}
export class IdleCancelled extends Schema.TaggedClass<IdleCancelled>()("IdleCancelled", {
  idleFor: Schema.Number,
  threshold: Schema.Number
}) {}
export class SessionCancelled extends Schema.TaggedClass<SessionCancelled>()("SessionCancelled", {
  by: Schema.String
}) {}
export class AbortIncomplete extends Schema.TaggedClass<AbortIncomplete>()("AbortIncomplete", {
  grace: Schema.Number,
  /** What the abort was for (a timeout, a cancel, …), when the abort itself did not finish in time. */
  cause: Schema.optional(Schema.String)
}) {}
export class ToolFailed extends Schema.TaggedClass<ToolFailed>()("ToolFailed", {
  message: Schema.String
}) {}

export const ErrorReason = Schema.Union(
  ToolTimeout,
  OrphanedByCrash,
  WatchdogStuck,
  IdleCancelled,
  SessionCancelled,
  AbortIncomplete,
  ToolFailed
)
export type ErrorReason = typeof ErrorReason.Type

const human = (millis: number) => Duration.format(Duration.millis(Math.round(millis)))

/** The text a model sees on its next turn for a part that ended with this reason. */
export const describeReason: (reason: ErrorReason) => string = Match.type<ErrorReason>().pipe(
  Match.tagsExhaustive({
    ToolTimeout: (r) => `tool timed out after ${human(r.timeout)}`,
    OrphanedByCrash: (r) => `interrupted: the server running it (${r.ownerId}) stopped unexpectedly`,
    WatchdogStuck: (r) =>
      `stopped by the watchdog: running for ${human(r.runningFor)}, over the limit of ${human(r.threshold)}`,
    IdleCancelled: (r) => `cancelled: no activity for ${human(r.idleFor)} (limit ${human(r.threshold)})`,
    SessionCancelled: (r) => `cancelled by ${r.by}`,
    AbortIncomplete: (r) =>
      `${r.cause ? `${r.cause}; ` : ""}the abort did not finish within ${human(r.grace)}, the work was abandoned`,
    ToolFailed: (r) => r.message
  })
)
