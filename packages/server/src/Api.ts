import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import {
  Instance,
  InvalidToolInput,
  Part,
  PartNotFound,
  RequestNotFound,
  Session,
  SessionBusy,
  SessionNotFound,
  SupervisionEvent,
  UnknownModel,
  UnknownTool
} from "@vigil/domain"
import { Schema } from "effect"

/**
 * The HTTP contract of DESIGN.md: JSON, camelCase fields. Every body, path parameter and response
 * has a schema, so bad input is refused (400, naming the field) before a handler runs and writes
 * anything, and `/doc` documents exactly what is served.
 */

const IdPath = Schema.Struct({ id: Schema.String })

/** What startup recovery (or `vigil recover`) did: runtime's `RescueReport`. */
export const RecoveryReport = Schema.Struct({
  deadOwners: Schema.Array(Schema.Struct({ id: Schema.String, cause: Schema.String })),
  orphanedParts: Schema.Number,
  sessionsFreed: Schema.Number,
  processesKilled: Schema.Number,
  partIds: Schema.Array(Schema.String),
  sessionIds: Schema.Array(Schema.String),
  tookMs: Schema.Number,
  dryRun: Schema.Boolean
}).annotations({ identifier: "RecoveryReport" })

/** The watchdog's last scan: runtime's `ScanSummary`. */
export const WatchdogScan = Schema.Struct({
  at: Schema.Number,
  tookMs: Schema.Number,
  orphansRescued: Schema.Number,
  stuckParts: Schema.Number
}).annotations({ identifier: "WatchdogScan" })

export const Health = Schema.Struct({
  status: Schema.Literal("ok"),
  instance: Schema.Struct({
    id: Schema.String,
    pid: Schema.Number,
    host: Schema.String,
    startedAt: Schema.Number
  }),
  recovery: RecoveryReport,
  watchdog: Schema.NullOr(WatchdogScan),
  /** Fibers abandoned after an abort did not finish within the grace (AbortIncomplete). */
  leakedFibers: Schema.Number,
  /**
   * How a hard stop finds a tool's processes: a cgroup per part (which no process leaves by
   * itself), or only the inherited `VIGIL_PART_ID` marker (which a process can drop).
   */
  processContainment: Schema.Literal("cgroup-v2", "cgroup-v1-freezer", "marker"),
  /** `degraded` while the store refuses writes (a full disk): terminal writes are held in memory and retried. */
  store: Schema.Struct({
    status: Schema.Literal("ok", "degraded"),
    pendingWrites: Schema.Number,
    droppedWrites: Schema.Number,
    lastError: Schema.NullOr(Schema.String),
    since: Schema.NullOr(Schema.Number)
  })
}).annotations({ identifier: "Health" })

export const CreateSession = Schema.Struct({
  parentId: Schema.optional(Schema.String),
  title: Schema.optional(Schema.String)
})

export const RunTool = Schema.Struct({
  tool: Schema.String,
  input: Schema.Unknown,
  /** The call's own deadline in milliseconds, capped by the configured `tool_timeout`. */
  timeout: Schema.optional(Schema.Int.pipe(Schema.positive()))
})

export const ToolAccepted = Schema.Struct({ partId: Schema.String }).annotations({ identifier: "ToolAccepted" })

export const Prompt = Schema.Struct({
  text: Schema.String,
  model: Schema.optional(Schema.String)
})

export const PromptAccepted = Schema.Struct({ sessionId: Schema.String }).annotations({ identifier: "PromptAccepted" })

export const Reply = Schema.Struct({
  requestId: Schema.String,
  answer: Schema.String
})

export const ReplyAccepted = Schema.Struct({ sessionId: Schema.String, requestId: Schema.String }).annotations({
  identifier: "ReplyAccepted"
})

/** The live stream: one `event: <type>` message per state change, its data a JSON object with a `type`. */
export const EventStream = HttpApiSchema.Text({ contentType: "text/event-stream" })

export class HealthGroup extends HttpApiGroup.make("health").add(
  HttpApiEndpoint.get("health", "/health").addSuccess(Health)
) {}

export class SessionsGroup extends HttpApiGroup.make("sessions")
  .add(
    HttpApiEndpoint.post("create", "/session")
      .setPayload(CreateSession)
      .addSuccess(Session, { status: 201 })
      .addError(SessionNotFound, { status: 404 })
  )
  .add(HttpApiEndpoint.get("list", "/session").addSuccess(Schema.Array(Session)))
  .add(
    HttpApiEndpoint.get("get", "/session/:id")
      .setPath(IdPath)
      .addSuccess(Session)
      .addError(SessionNotFound, { status: 404 })
  )
  .add(
    HttpApiEndpoint.post("tool", "/session/:id/tool")
      .setPath(IdPath)
      .setPayload(RunTool)
      .addSuccess(ToolAccepted, { status: 202 })
      .addError(SessionNotFound, { status: 404 })
      .addError(UnknownTool, { status: 400 })
      .addError(InvalidToolInput, { status: 400 })
      .addError(SessionBusy, { status: 409 })
  )
  .add(
    HttpApiEndpoint.post("prompt", "/session/:id/prompt")
      .setPath(IdPath)
      .setPayload(Prompt)
      .addSuccess(PromptAccepted, { status: 202 })
      .addError(SessionNotFound, { status: 404 })
      .addError(UnknownModel, { status: 400 })
      .addError(SessionBusy, { status: 409 })
  )
  .add(
    HttpApiEndpoint.post("abort", "/session/:id/abort")
      .setPath(IdPath)
      .addSuccess(Session)
      .addError(SessionNotFound, { status: 404 })
  )
  .add(
    HttpApiEndpoint.post("reply", "/session/:id/reply")
      .setPath(IdPath)
      .setPayload(Reply)
      .addSuccess(ReplyAccepted)
      .addError(SessionNotFound, { status: 404 })
      .addError(RequestNotFound, { status: 404 })
      // The question waits on the instance that runs the turn; another instance names it.
      .addError(SessionBusy, { status: 409 })
  )
  .add(
    HttpApiEndpoint.get("parts", "/session/:id/part")
      .setPath(IdPath)
      .addSuccess(Schema.Array(Part))
      .addError(SessionNotFound, { status: 404 })
  )
{}

export class PartsGroup extends HttpApiGroup.make("parts")
  .add(
    HttpApiEndpoint.get("get", "/part/:id")
      .setPath(IdPath)
      .addSuccess(Part)
      .addError(PartNotFound, { status: 404 })
  )
  // Every pending or running part of every session, read through the partial index of live rows.
  .add(HttpApiEndpoint.get("active", "/part/active").addSuccess(Schema.Array(Part)))
{}

/** `GET /event/log`: the newest supervision events first, of one session when `sessionId` is given. */
export const EventLogQuery = Schema.Struct({
  sessionId: Schema.optional(Schema.String),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1000)))
})

export class EventsGroup extends HttpApiGroup.make("events")
  .add(HttpApiEndpoint.get("events", "/event").addSuccess(EventStream))
  .add(HttpApiEndpoint.get("log", "/event/log").setUrlParams(EventLogQuery).addSuccess(Schema.Array(SupervisionEvent)))
{}

/** An instance row with what this server makes of it now: alive or dead (and why), heartbeat age. */
export const InstanceStatus = Schema.Struct({
  ...Instance.fields,
  alive: Schema.Boolean,
  /** `stopped`, `lease-expired`, `process-gone`, …: runtime's `Liveness` verdict; null when alive. */
  deathCause: Schema.NullOr(Schema.String),
  /** This server's own instance. */
  self: Schema.Boolean,
  heartbeatAgeMs: Schema.Number
}).annotations({ identifier: "InstanceStatus" })

/**
 * `GET /instance`: the instances still registered as running, those that own live sessions or
 * parts, and the dead owners the last startup recovery handled; with the server's clock (`now`),
 * so a client can place deadlines and ages on the server's time.
 */
export const InstanceList = Schema.Struct({
  now: Schema.Number,
  instances: Schema.Array(InstanceStatus)
}).annotations({ identifier: "InstanceList" })

export class InstancesGroup extends HttpApiGroup.make("instances").add(
  HttpApiEndpoint.get("list", "/instance").addSuccess(InstanceList)
) {}

export class VigilApi extends HttpApi.make("vigil")
  .add(HealthGroup)
  .add(SessionsGroup)
  .add(PartsGroup)
  .add(EventsGroup)
  .add(InstancesGroup)
  .annotateContext(OpenApi.annotations({
    title: "vigil",
    description: "Supervised sessions, tool executions and model steps: nothing stays stuck."
  }))
{}
