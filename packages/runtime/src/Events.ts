import type { ErrorReason, Part, Session, SupervisionEvent } from "@vigil/domain"
import { describeReason } from "@vigil/domain"
import type { EventInput } from "@vigil/store"
import { EventLog } from "@vigil/store"
import { Clock, Effect, Option, Queue, Stream } from "effect"

/** What `/event` streams: state changes, and every supervision action with its reason. */
export type LiveEvent =
  | { readonly type: "session.updated"; readonly session: Session }
  | { readonly type: "part.updated"; readonly part: Part }
  | { readonly type: "recovery.completed"; readonly report: unknown }
  | { readonly type: "watchdog.action"; readonly event: SupervisionEvent }
  | { readonly type: "idle.cancelled"; readonly event: SupervisionEvent }
  | { readonly type: "supervision"; readonly event: SupervisionEvent }
  /** The last event of a subscription that fell too far behind (`subscriberBuffer`): it ends there, the client resumes. */
  | { readonly type: "stream.overflow"; readonly limit: number; readonly message: string }

/**
 * How far a subscriber may fall behind before its subscription is ended with `stream.overflow`: in
 * events, and in bytes of their JSON (a `write` part carries its whole content, a completed part
 * up to 64 KiB of output). A client that never reads (a stalled socket) then costs at most this
 * much, in objects every subscriber shares: memory stays bounded whatever the clients do.
 */
export const subscriberBuffer = { events: 4096, bytes: 8 * 1024 * 1024 } as const

interface Subscriber {
  readonly queue: Queue.Queue<Sized>
  bytes: number
  overflowed: boolean
}

/** An event with the size its JSON was measured at (once per publish, for every subscriber). */
interface Sized {
  readonly event: LiveEvent
  readonly bytes: number
}

const overflowEvent: LiveEvent = {
  type: "stream.overflow",
  limit: subscriberBuffer.events,
  message: `this stream fell behind by more than ${subscriberBuffer.events} events or ${
    subscriberBuffer.bytes / 1024 / 1024
  } MiB and was ended; reconnect to resume`
}

const sizeOf = (event: LiveEvent): number => {
  try {
    return JSON.stringify(event)?.length ?? 0
  } catch {
    return 0
  }
}

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
    // One queue per subscriber rather than a shared unbounded hub: the hub keeps every event until
    // its slowest subscriber takes it, so one client that never reads held them all.
    const subscribers = new Set<Subscriber>()

    const offer = (subscriber: Subscriber, sized: Sized) => {
      if (subscriber.overflowed) return
      const behind = Option.getOrElse(subscriber.queue.unsafeSize(), () => 0)
      if (behind >= subscriberBuffer.events || subscriber.bytes + sized.bytes > subscriberBuffer.bytes) {
        subscriber.overflowed = true
        subscriber.queue.unsafeOffer({ event: overflowEvent, bytes: 0 })
        return
      }
      subscriber.bytes += sized.bytes
      subscriber.queue.unsafeOffer(sized)
    }

    const publish = (event: LiveEvent) =>
      Effect.sync(() => {
        if (subscribers.size === 0) return
        const sized: Sized = { event, bytes: sizeOf(event) }
        for (const subscriber of subscribers) offer(subscriber, sized)
      })

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

    /**
     * A live subscription; each subscriber gets every event published after it subscribed, in
     * order, unless it falls `subscriberBufferEvents` behind: then `stream.overflow` is its last.
     */
    const subscribe = Effect.acquireRelease(
      Effect.gen(function*() {
        const subscriber: Subscriber = { queue: yield* Queue.unbounded<Sized>(), bytes: 0, overflowed: false }
        subscribers.add(subscriber)
        return subscriber
      }),
      (subscriber) =>
        Effect.suspend(() => {
          subscribers.delete(subscriber)
          return Queue.shutdown(subscriber.queue)
        })
    ).pipe(
      Effect.map((subscriber) =>
        // One at a time: what is taken from the queue sits in the socket's buffer until it drains,
        // so a stalled client holds one event there, not a batch.
        Stream.fromQueue(subscriber.queue, { maxChunkSize: 1 }).pipe(
          Stream.map((sized) => {
            subscriber.bytes -= sized.bytes
            return sized.event
          }),
          Stream.takeUntil((event) => event.type === "stream.overflow")
        )
      )
    )

    return { publish, record, subscribe } as const
  }),
  dependencies: []
}) {}
