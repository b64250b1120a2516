import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import {
  DeathCause,
  Instance,
  InvalidToolInput,
  Part,
  PartNotFound,
  RecoveryReport,
  RequestNotFound,
  Session,
  SessionBusy,
  SessionNotFound,
  SupervisionEvent,
  UnknownModel,
  UnknownTool
} from "@vigil/domain"
import { Either, ParseResult, Schema } from "effect"

/**
 * The HTTP contract (README, "HTTP API"): JSON, camelCase fields. Every body, path parameter and response
 * has a schema, so bad input is refused (400, naming the field) before a handler runs and writes
 * anything, and `/doc` documents exactly what is served.
 */

const IdPath = Schema.Struct({ id: Schema.String })

/**
 * A request body: a field the schema does not name is refused (400, naming it), as the spec's
 * `additionalProperties: false` says, rather than silently dropped (a typo such as `timeut` would
 * otherwise run the call without its deadline).
 */
const Body = <Fields extends Schema.Struct.Fields>(fields: Fields) =>
  Schema.Struct(fields).annotations({ parseOptions: { onExcessProperty: "error" } })

// --- errors every route may answer (sent by BadRequests, Auth, RequestGuard and Server) ---------

const plainError = <Tag extends string>(tag: Tag, description: string) =>
  Schema.Struct({ _tag: Schema.Literal(tag), message: Schema.String }).annotations({ identifier: tag, description })

/** A body that is not JSON, not UTF-8, nests too deep, or a cursor that is not one (BadRequests.ts). */
export const BadRequest = plainError("BadRequest", "The request could not be read (not JSON, not UTF-8, too deep)")
/** A body over the 1 MiB limit (BadRequests.ts). */
export const PayloadTooLarge = plainError("PayloadTooLarge", "The request body is larger than 1 MiB")
/** Basic auth required (Auth.ts), with `WWW-Authenticate: Basic realm="vigil"`. */
export const Unauthorized = plainError("Unauthorized", "HTTP basic auth required (user vigil, VIGIL_SERVER_PASSWORD)")
/** A cross-site `Origin` (RequestGuard.ts). */
export const ForbiddenOrigin = plainError("ForbiddenOrigin", "The Origin is not this server's")
/** A body not labelled `application/json` (RequestGuard.ts). */
export const UnsupportedMediaType = plainError("UnsupportedMediaType", "A body must be sent as application/json")
/** A `Host` that does not name this server (RequestGuard.ts, against DNS rebinding). */
export const MisdirectedRequest = plainError("MisdirectedRequest", "The Host header does not name this server")
/** Starting or stopping, with `Retry-After` (Server.ts). */
export const Unavailable = plainError("Unavailable", "The server is starting or stopping: retry after Retry-After")
/** No route of that path (BadRequests.ts). */
export const RouteNotFound = plainError("RouteNotFound", "No route of that path")
/** A path served, but not with that method; `Allow` lists the methods it takes (BadRequests.ts). */
export const MethodNotAllowed = plainError("MethodNotAllowed", "The path is served, not with this method: see Allow")
/** A defect, logged by the server (BadRequests.ts). */
export const InternalError = plainError("InternalError", "The server could not handle the request; see its log")

// --- pages ---------------------------------------------------------------------------------------

/** What a page holds when `limit` is not given, and at most. */
export const defaultPageLimit = 100
export const maxPageLimit = 1000

/** An integer in the query string, declared in the spec as what it is (an integer), not as a string. */
const integerParam = (min: number, max: number, description: string) =>
  Schema.NumberFromString.pipe(Schema.int(), Schema.between(min, max)).annotations({
    jsonSchema: { type: "integer", minimum: min, maximum: max, description }
  })

const base64url = {
  encode: (text: string) => Buffer.from(text, "utf8").toString("base64url"),
  decode: (text: string) => Buffer.from(text, "base64url").toString("utf8")
}

/**
 * An opaque cursor: the key of the last item of the previous page, base64url. Opaque so the key
 * can change without changing the contract; one that does not decode is a 400 naming `cursor`.
 */
const cursorOf = <A>(name: string, decode: (text: string) => A | undefined, encode: (key: A) => string) =>
  Schema.transformOrFail(Schema.String, Schema.Any as Schema.Schema<A>, {
    strict: true,
    decode: (text, _, ast) => {
      const key = /^[A-Za-z0-9_-]{1,1024}$/.test(text) ? decode(base64url.decode(text)) : undefined
      return key === undefined
        ? ParseResult.fail(new ParseResult.Type(ast, text, `not a ${name} cursor: pass the \`next\` of the previous page`))
        : ParseResult.succeed(key)
    },
    encode: (key) => ParseResult.succeed(base64url.encode(encode(key)))
  }).annotations({ jsonSchema: { type: "string", description: `the \`next\` of the previous page (opaque)` } })

/** Sessions are paged newest first on (createdAt, id). */
export interface SessionKey {
  readonly createdAt: number
  readonly id: string
}
const sessionKeyOf = (text: string): SessionKey | undefined => {
  const colon = text.indexOf(":")
  const createdAt = Number(text.slice(0, colon))
  return colon > 0 && Number.isSafeInteger(createdAt) && colon < text.length - 1
    ? { createdAt, id: text.slice(colon + 1) }
    : undefined
}
export const SessionCursor = cursorOf<SessionKey>("session", sessionKeyOf, (key) => `${key.createdAt}:${key.id}`)
/** Parts are paged on their id, which sorts by creation. */
export const PartCursor = cursorOf<string>("part", (text) => (text === "" ? undefined : text), (id) => id)

const encodeCursorSync = <A>(cursor: Schema.Schema<A, string>) => {
  const encode = Schema.encodeEither(cursor)
  return (key: A): string => Either.getOrThrow(encode(key))
}
/** The supervision log is paged on its event ids, newest first. */
export const EventCursor = cursorOf<number>("event", (text) => {
  const id = Number(text)
  return /^[1-9][0-9]*$/.test(text) && Number.isSafeInteger(id) ? id : undefined
}, (id) => String(id))

export const sessionCursor = encodeCursorSync(SessionCursor)
export const partCursor = encodeCursorSync(PartCursor)
export const eventCursor = encodeCursorSync(EventCursor)

const PageQuery = <A>(cursor: Schema.Schema<A, string>) =>
  Schema.Struct({
    limit: Schema.optional(integerParam(1, maxPageLimit, `items on the page (default ${defaultPageLimit}, at most ${maxPageLimit})`)),
    cursor: Schema.optional(cursor)
  })
export const SessionPageQuery = PageQuery(SessionCursor)
export const PartPageQuery = PageQuery(PartCursor)

/**
 * A page of a list: its items, and the cursor of the next page (`null` on the last). A list is
 * never cut without saying so: while `next` is not null, there is more.
 */
const pageOf = <A, I>(item: Schema.Schema<A, I>, identifier: string) =>
  Schema.Struct({
    items: Schema.Array(item),
    next: Schema.NullOr(Schema.String).annotations({ description: "pass as `cursor` for the next page; null: the last" })
  }).annotations({ identifier })
export const SessionPage = pageOf(Session, "SessionPage")
export const PartPage = pageOf(Part, "PartPage")

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

export const CreateSession = Body({
  parentId: Schema.optional(Schema.String),
  title: Schema.optional(Schema.String)
})

export const RunTool = Body({
  tool: Schema.String,
  input: Schema.Unknown,
  /** The call's own deadline in milliseconds, capped by the configured `tool_timeout`. */
  timeout: Schema.optional(Schema.Int.pipe(Schema.positive()))
})

export const ToolAccepted = Schema.Struct({ partId: Schema.String }).annotations({ identifier: "ToolAccepted" })

export const Prompt = Body({
  text: Schema.String,
  model: Schema.optional(Schema.String)
})

export const PromptAccepted = Schema.Struct({ sessionId: Schema.String }).annotations({ identifier: "PromptAccepted" })

export const Reply = Body({
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
  // Newest first, a page at a time.
  .add(HttpApiEndpoint.get("list", "/session").setUrlParams(SessionPageQuery).addSuccess(SessionPage))
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
      .setUrlParams(PartPageQuery)
      .addSuccess(PartPage)
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
  .add(HttpApiEndpoint.get("active", "/part/active").setUrlParams(PartPageQuery).addSuccess(PartPage))
{}

/**
 * `GET /event/log`: the supervision events, newest first, of one session when `sessionId` is given,
 * in pages like every list (`cursor`: the `next` of the previous page, toward older events).
 */
export const EventLogQuery = Schema.Struct({
  sessionId: Schema.optional(Schema.String),
  limit: Schema.optional(integerParam(1, 1000, "events on the page (default 200, at most 1000)")),
  cursor: Schema.optional(EventCursor)
})
export const EventPage = pageOf(SupervisionEvent, "EventPage")

export class EventsGroup extends HttpApiGroup.make("events")
  .add(
    HttpApiEndpoint.get("events", "/event")
      // Read by the stream itself (EventStream.ts: a bad id is a 400 there), declared here so a
      // client generated from the spec knows how to resume.
      .setUrlParams(Schema.Struct({
        since: Schema.optional(Schema.String.annotations({
          jsonSchema: { type: "integer", minimum: 0, description: "replay what the log holds after this event id (for curl; EventSource clients send Last-Event-ID)" }
        }))
      }))
      .setHeaders(Schema.Struct({
        "last-event-id": Schema.optional(Schema.String.annotations({
          description: "the id of the last event received: what the log holds after it is replayed, then the live stream"
        }))
      }))
      .addSuccess(EventStream)
  )
  .add(HttpApiEndpoint.get("log", "/event/log").setUrlParams(EventLogQuery).addSuccess(EventPage))
{}

/** An instance row with what this server makes of it now: alive or dead (and why), heartbeat age. */
export const InstanceStatus = Schema.Struct({
  ...Instance.fields,
  alive: Schema.Boolean,
  /** Liveness's verdict (the same rule as `vigil status`'s); null when alive. */
  deathCause: Schema.NullOr(DeathCause),
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

/** Removes `$id` from what `Schema.Unknown` generates: it repeats on every such field, and Ajv refuses a spec with twice the same id. */
const withoutUnknownIds = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(withoutUnknownIds)
  if (value === null || typeof value !== "object") return value
  return Object.fromEntries(
    Object.entries(value).filter(([key, inner]) => !(key === "$id" && inner === "/schemas/unknown")).map((
      [key, inner]
    ) => [key, withoutUnknownIds(inner)])
  )
}

/**
 * The spec as served, with what the server does around HttpApi: basic auth on every route (a
 * security scheme; each operation inherits it), and no repeated `$id`. HttpApi writes
 * `security: []` on each operation, which would say "no auth": removed, so the global one applies.
 */
type Json = Record<string, unknown>
const servedSpec = (spec: Json): Json => {
  const out = withoutUnknownIds(spec) as Json
  out["components"] = {
    ...(out["components"] as Json),
    securitySchemes: {
      basicAuth: {
        type: "http",
        scheme: "basic",
        description: "When VIGIL_SERVER_PASSWORD is set: user `vigil`, that password, on every route (401 otherwise)"
      }
    }
  }
  out["security"] = [{ basicAuth: [] }]
  for (const path of Object.values(out["paths"] as Record<string, Record<string, Json>>)) {
    for (const operation of Object.values(path)) {
      if (Array.isArray(operation["security"]) && operation["security"].length === 0) delete operation["security"]
    }
  }
  return out
}

export class VigilApi extends HttpApi.make("vigil")
  .add(HealthGroup)
  .add(SessionsGroup)
  .add(PartsGroup)
  .add(EventsGroup)
  .add(InstancesGroup)
  // What every route may answer before (or instead of) its handler, with the bodies really sent.
  .addError(BadRequest, { status: 400 })
  .addError(Unauthorized, { status: 401 })
  .addError(ForbiddenOrigin, { status: 403 })
  .addError(RouteNotFound, { status: 404 })
  .addError(PayloadTooLarge, { status: 413 })
  .addError(UnsupportedMediaType, { status: 415 })
  .addError(MisdirectedRequest, { status: 421 })
  .addError(InternalError, { status: 500 })
  .addError(Unavailable, { status: 503 })
  .annotateContext(OpenApi.annotations({
    title: "vigil",
    description: "Supervised sessions, tool executions and model steps: nothing stays stuck. " +
      "A method a path does not take answers 405 (MethodNotAllowed) with `Allow`. Unknown body fields are refused (400). " +
      "Lists come in pages: `{items, next}`; pass `next` as `cursor` for the following page.",
    transform: servedSpec
  }))
{}

/** Every path template of the API with the methods it takes (for 405 and `Allow`), and the routes served beside it. */
export const routeMethods: ReadonlyArray<{ readonly path: RegExp; readonly methods: ReadonlyArray<string> }> = (() => {
  const byPath = new Map<string, Set<string>>()
  const add = (path: string, method: string) => {
    const methods = byPath.get(path) ?? new Set<string>()
    methods.add(method)
    byPath.set(path, methods)
  }
  for (const group of Object.values(VigilApi.groups)) {
    for (const endpoint of Object.values(group.endpoints)) add(endpoint.path, endpoint.method)
  }
  for (const path of ["/openapi.json", "/doc", "/metrics", "/", "/dashboard/app.js", "/dashboard/app.css"]) add(path, "GET")
  return [...byPath].map(([path, methods]) => ({
    path: new RegExp(`^${path.replace(/:[A-Za-z]+/g, "[^/]+")}$`),
    methods: [...methods, ...(methods.has("GET") ? ["HEAD"] : [])]
  }))
})()
