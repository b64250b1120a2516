import { Schema } from "effect"
import { ErrorReason } from "./ErrorReason.js"
import { InstanceId, makePartId, PartId, SessionId } from "./Ids.js"
import { PartKind, PartStatus, SessionStatus } from "./Status.js"

/** Epoch milliseconds, read from Effect's Clock so TestClock drives every time rule. */
export const Millis = Schema.Number

export class Session extends Schema.Class<Session>("Session")({
  id: SessionId,
  parentId: Schema.NullOr(SessionId),
  parentPartId: Schema.NullOr(PartId),
  title: Schema.String,
  status: SessionStatus,
  cancelReason: Schema.NullOr(ErrorReason),
  lastActivityAt: Millis,
  ownerId: InstanceId,
  createdAt: Millis
}) {}

export class Part extends Schema.Class<Part>("Part")({
  id: PartId,
  sessionId: SessionId,
  kind: PartKind,
  /** The tool's name for `tool` parts, the model's for `model` parts. */
  tool: Schema.String,
  input: Schema.Unknown,
  /** For a `tool` part, the id of the model's tool call it answers. */
  callId: Schema.NullOr(Schema.String),
  status: PartStatus,
  output: Schema.NullOr(Schema.String),
  error: Schema.NullOr(ErrorReason),
  createdAt: Millis,
  startedAt: Schema.NullOr(Millis),
  endedAt: Schema.NullOr(Millis),
  deadlineAt: Schema.NullOr(Millis),
  ownerId: InstanceId,
  childSessionId: Schema.NullOr(SessionId),
  pid: Schema.NullOr(Schema.Number),
  pgid: Schema.NullOr(Schema.Number),
  procStart: Schema.NullOr(Schema.String)
}) {}

/**
 * A new part row: what the caller knows, and nothing else set (no process, no child, no
 * deadline, not started). Ids sort in creation order. Built without re-validating its schema:
 * the fields are already typed (branded ids, literal statuses), and this is on every tool call's
 * path (validation was ~9% of a no-op call's CPU). Data from outside is decoded, never built here.
 */
export const newPart = (
  fields: Pick<Part, "sessionId" | "kind" | "tool" | "input" | "status" | "ownerId" | "createdAt"> & Partial<Part>
): Part =>
  new Part({
    id: makePartId(),
    callId: null,
    output: null,
    error: null,
    startedAt: null,
    endedAt: null,
    deadlineAt: null,
    childSessionId: null,
    pid: null,
    pgid: null,
    procStart: null,
    ...fields
  }, true)

export class Instance extends Schema.Class<Instance>("Instance")({
  id: InstanceId,
  pid: Schema.Number,
  host: Schema.String,
  /** `/proc` start time of the process, so a reused pid is not taken for this instance. */
  procStart: Schema.NullOr(Schema.String),
  startedAt: Millis,
  heartbeatAt: Millis,
  leaseMillis: Schema.Number,
  stoppedAt: Schema.NullOr(Millis)
}) {}

/** Dead: stopped, or its lease ran out. Same-host pid checks sharpen this (see runtime's Liveness). */
export const leaseExpired = (instance: Instance, now: number): boolean =>
  instance.stoppedAt !== null || instance.heartbeatAt + instance.leaseMillis < now

/** A row of the append-only log of what the supervision layer did on its own, and why. */
export class SupervisionEvent extends Schema.Class<SupervisionEvent>("SupervisionEvent")({
  id: Schema.Number,
  type: Schema.String,
  at: Millis,
  instanceId: Schema.NullOr(InstanceId),
  sessionId: Schema.NullOr(SessionId),
  partId: Schema.NullOr(PartId),
  reason: Schema.NullOr(ErrorReason),
  data: Schema.NullOr(Schema.Unknown)
}) {}
