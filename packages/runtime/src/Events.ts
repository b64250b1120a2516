import type { ErrorReason, Part, Session, SupervisionEvent } from "@vigil/domain"
import { describeReason } from "@vigil/domain"
import type { EventInput } from "@vigil/store"
import { EventLog } from "@vigil/store"
import { Clock, Effect, PubSub, Stream } from "effect"

/** What `/event` streams: state changes, and every supervision action with its reason. */
export type LiveEvent =
  | { readonly type: "session.updated"; readonly session: Session }
  | { readonly type: "part.updated"; readonly part: Part }
  | { readonly type: "recovery.completed"; readonly report: unknown }
  | { readonly type: "watchdog.action"; readonly event: SupervisionEvent }
  | { readonly type: "idle.cancelled"; readonly event: SupervisionEvent }
  | { readonly type: "supervision"; readonly event: SupervisionEvent }

/** Which live stream type a logged supervision event goes out as. */
const liveTypeOf = (type: string): "watchdog.action" | "idle.cancelled" | "supervision" =>
  type.startsWith("watchdog.") ? "watchdog.action" : type.startsWith("idle.") ? "idle.cancelled" : "supervision"

/**
 * The one way the supervision layer reports what it did: to the append-only event log (so the
 * answer to "why?" survives a restart), to the live stream, and to the process log with its reason.
 */
export class Events extends Effect.Service<Events>()("vigil/Events", {
  scoped: Effect.gen(function*() {
    const log = yield* EventLog
    const hub = yield* Effect.acquireRelease(PubSub.unbounded<LiveEvent>(), PubSub.shutdown)

    const publish = (event: LiveEvent) => PubSub.publish(hub, event).pipe(Effect.asVoid)

    const record = Effect.fn("Events.record")(function*(input: Omit<EventInput, "at"> & { readonly at?: number }) {
      const at = input.at ?? (yield* Clock.currentTimeMillis)
      const id = yield* log.append({ ...input, at })
      const event: SupervisionEvent = {
        id,
        type: input.type,
        at,
        instanceId: input.instanceId ?? null,
        sessionId: input.sessionId ?? null,
        partId: input.partId ?? null,
        reason: input.reason ?? null,
        data: input.data ?? null
      } as SupervisionEvent
      yield* Effect.logWarning(input.type).pipe(
        Effect.annotateLogs({
          ...(input.sessionId ? { session: input.sessionId } : {}),
          ...(input.partId ? { part: input.partId } : {}),
          ...(input.reason ? { reason: describeReason(input.reason as ErrorReason) } : {}),
          ...(input.data !== undefined ? { data: JSON.stringify(input.data) } : {})
        })
      )
      yield* publish({ type: liveTypeOf(input.type), event } as LiveEvent)
      return event
    })

    /** A live subscription; each subscriber gets every event published after it subscribed. */
    const subscribe = Stream.fromPubSub(hub, { scoped: true })

    return { publish, record, subscribe } as const
  }),
  dependencies: []
}) {}
