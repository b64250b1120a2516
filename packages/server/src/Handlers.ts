import { HttpApiBuilder } from "@effect/platform"
import { PartId, PartNotFound, SessionCancelled, SessionId } from "@vigil/domain"
import { InstanceLease, PendingWrites, ProcessControl, RecoveryComplete, SessionService, ToolRunner, Watchdog } from "@vigil/runtime"
import { EventLog, PartRepo, SessionRepo } from "@vigil/store"
import { Duration, Effect, Layer, Option } from "effect"
import { defaultPageLimit, eventCursor, partCursor, sessionCursor, VigilApi } from "./Api.js"
import { eventStreamResponse } from "./EventStream.js"
import { listInstances } from "./Instances.js"

const HealthLive = HttpApiBuilder.group(VigilApi, "health", (handlers) =>
  Effect.gen(function*() {
    const { instance } = yield* InstanceLease
    const { report } = yield* RecoveryComplete
    const watchdog = yield* Watchdog
    const runner = yield* ToolRunner
    const { containment } = yield* ProcessControl
    const pending = yield* PendingWrites
    return handlers.handle("health", () =>
      Effect.gen(function*() {
        return {
          status: "ok" as const,
          instance: { id: instance.id, pid: instance.pid, host: instance.host, startedAt: instance.startedAt },
          recovery: report,
          watchdog: Option.getOrNull(yield* watchdog.lastScan),
          leakedFibers: yield* runner.leakedFibers,
          processContainment: containment,
          store: yield* pending.health
        }
      }))
  }))

/** A page's `next`: the cursor of its last item when more follow. */
const nextOf = <A>(page: { readonly items: ReadonlyArray<A>; readonly more: boolean }, cursor: (last: A) => string) => ({
  items: page.items,
  next: page.more && page.items.length > 0 ? cursor(page.items[page.items.length - 1]!) : null
})

const SessionsLive = HttpApiBuilder.group(VigilApi, "sessions", (handlers) =>
  Effect.gen(function*() {
    const sessions = yield* SessionService
    // The pages are read from the repositories (keyset queries); the service checks the session exists.
    const sessionRepo = yield* SessionRepo
    const partRepo = yield* PartRepo
    return handlers
      .handle("create", ({ payload }) =>
        sessions.create({
          parentId: payload.parentId === undefined ? undefined : SessionId.make(payload.parentId),
          title: payload.title
        }))
      .handle("list", ({ urlParams }) =>
        sessionRepo.page({ limit: urlParams.limit ?? defaultPageLimit, after: urlParams.cursor }).pipe(
          Effect.map((page) => nextOf(page, sessionCursor))
        ))
      .handle("get", ({ path }) => sessions.get(SessionId.make(path.id)))
      .handle("tool", ({ path, payload }) =>
        sessions.runTool(SessionId.make(path.id), {
          tool: payload.tool,
          input: payload.input,
          timeout: payload.timeout === undefined ? undefined : Duration.millis(payload.timeout)
        }).pipe(Effect.map(({ partId }) => ({ partId }))))
      .handle("prompt", ({ path, payload }) =>
        sessions.prompt(SessionId.make(path.id), { text: payload.text, model: payload.model }).pipe(
          Effect.as({ sessionId: path.id })
        ))
      .handle("abort", ({ path }) => sessions.abort(SessionId.make(path.id), new SessionCancelled({ by: "api" })))
      .handle("reply", ({ path, payload }) =>
        sessions.reply(SessionId.make(path.id), payload.requestId, payload.answer).pipe(
          Effect.as({ sessionId: path.id, requestId: payload.requestId })
        ))
      .handle("parts", ({ path, urlParams }) =>
        sessions.get(SessionId.make(path.id)).pipe(
          Effect.zipRight(partRepo.pageOfSession(SessionId.make(path.id), { limit: urlParams.limit ?? defaultPageLimit, after: urlParams.cursor })),
          Effect.map((page) => nextOf(page, (part) => partCursor(part.id)))
        ))
  }))

const PartsLive = HttpApiBuilder.group(VigilApi, "parts", (handlers) =>
  Effect.gen(function*() {
    // The session service has no single-part read; the repository is the source of truth for it.
    const parts = yield* PartRepo
    return handlers
      .handle("get", ({ path }) =>
        parts.get(PartId.make(path.id)).pipe(
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(new PartNotFound({ partId: path.id, message: `no part ${path.id}` })),
            onSome: Effect.succeed
          }))
        ))
      .handle("active", ({ urlParams }) =>
        parts.pageActive({ limit: urlParams.limit ?? defaultPageLimit, after: urlParams.cursor }).pipe(
          Effect.map((page) => nextOf(page, (part) => partCursor(part.id)))
        ))
  }))

const EventsLive = HttpApiBuilder.group(VigilApi, "events", (handlers) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    return handlers
      .handleRaw("events", () => eventStreamResponse)
      .handle("log", ({ urlParams }) =>
        log.page({
          sessionId: urlParams.sessionId === undefined ? undefined : SessionId.make(urlParams.sessionId),
          limit: urlParams.limit ?? 200,
          before: urlParams.cursor
        }).pipe(Effect.map((page) => nextOf(page, (event) => eventCursor(event.id)))))
  }))

const InstancesLive = HttpApiBuilder.group(VigilApi, "instances", (handlers) =>
  Effect.map(listInstances, (list) => handlers.handle("list", () => list)))

/** Every group's handlers, with the API they implement. */
export const ApiLive = HttpApiBuilder.api(VigilApi).pipe(
  Layer.provide(Layer.mergeAll(HealthLive, SessionsLive, PartsLive, EventsLive, InstancesLive))
)
