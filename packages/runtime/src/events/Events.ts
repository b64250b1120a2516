import type { ErrorReason, Part, PartId, Session, SessionId, SupervisionEvent } from "@vigil/domain"
import { describeReason, RecoveryReport } from "@vigil/domain"
import type { EventInput } from "@vigil/store"
import { EventLog, PartRepo, SessionRepo } from "@vigil/store"
import type { Scope } from "effect"
import { Chunk, Clock, Deferred, Duration, Effect, Exit, Fiber, Option, Queue, Schema, Stream } from "effect"

/** What `/event` streams: state changes, every supervision action with its reason, and live output. */
export type LiveEvent =
  | { readonly type: "session.updated"; readonly session: Session }
  | { readonly type: "part.updated"; readonly part: Part }
  | { readonly type: "recovery.completed"; readonly report: RecoveryReport }
  | { readonly type: "watchdog.action"; readonly event: SupervisionEvent }
  | { readonly type: "idle.cancelled"; readonly event: SupervisionEvent }
  | { readonly type: "supervision"; readonly event: SupervisionEvent }
  /**
   * A running part's output (a shell's stdout/stderr, a model step's text) as it comes: `offset` is
   * how many characters of it came before `text`. Live only, never in the log: a delta that was
   * skipped (a slow subscriber, a part printing faster than `deltaLimits`) shows as a jump in
   * `offset`, and the part's final output is in its `part.updated` as always.
   */
  | { readonly type: "part.delta"; readonly partId: PartId; readonly sessionId: SessionId; readonly offset: number; readonly text: string }
  /**
   * The last event of a subscription that fell too far behind (`subscriberBuffer`): it ends there.
   * `lastId` is the id of the last event it delivered: resuming from it loses nothing.
   */
  | { readonly type: "stream.overflow"; readonly limit: number; readonly message: string; readonly lastId: number | null }
  /** First in a resumed stream whose position is older than what the log keeps of state changes. */
  | { readonly type: "stream.truncated"; readonly before: number; readonly message: string }

/**
 * An event and its position in the log: resuming from `id` (`since(id)`, `Last-Event-ID`) replays
 * what came after it. `null` for what the log does not hold (deltas, the stream's own notices, an
 * event whose write the store refused).
 */
export interface Sequenced {
  readonly id: number | null
  readonly event: LiveEvent
}

/**
 * How far a subscriber may fall behind before its subscription is ended with `stream.overflow`: in
 * events, and in bytes of their JSON (a `write` part carries its whole content, a completed part
 * up to 64 KiB of output). A client that never reads (a stalled socket) then costs at most this
 * much, in objects every subscriber shares: memory stays bounded whatever the clients do.
 */
export const subscriberBuffer = { events: 4096, bytes: 8 * 1024 * 1024 } as const

/**
 * Live output: batched every `interval` per part, at most `chars` per delta (a part printing faster
 * sends its newest `chars`, and the offset jumps). A subscriber already `skipBehind` events behind
 * gets no deltas: they never push it into overflow, and never wait on it.
 */
export const deltaLimits = { interval: Duration.millis(50), chars: 16 * 1024, skipBehind: 256 } as const

/**
 * State markers (`part.updated`, `session.updated`) older than the newest `stateRetention` ids are
 * pruned; supervision events are kept. A stream resumed from further back gets `stream.truncated`.
 */
export const stateRetention = 100_000

/**
 * How long a state marker waits for others to share its write. On the wall clock even under a
 * TestClock: it is how the log is written, not a time rule, and a test's virtual clock must not
 * hold a supervision event's write.
 */
const batchWindow = Duration.millis(5)
const wallClock = Clock.make()
/** Most rows one write of the log takes (7 parameters each, well under SQLite's 32,766). */
const maxBatch = 500
/** How many writes may wait for the log before a publisher waits: memory stays bounded on a slow store. */
const maxQueuedWrites = 16_384
/**
 * Rows a resumed stream reads from the log at a time. Small: a replayed marker carries its part as
 * it is now (a `write` part up to its 1 MiB input), and a page is held until the client takes it.
 */
const replayPage = 64
/** Markers pruned per statement (better-sqlite3 blocks while it runs), and how often it is tried. */
const pruneBatch = 5_000
const pruneEvery = 2_000
/** How many ended parts are remembered, so that a late chunk of one starts no delta. */
export const endedKept = 4096

interface Subscriber {
  readonly queue: Queue.Queue<Sized>
  bytes: number
  ended: boolean
}

/** An event with its id and the size its JSON was measured at (once per publish, for every subscriber). `null`: the end. */
interface Sized {
  readonly id: number | null
  readonly event: LiveEvent | null
  readonly bytes: number
}

type Write =
  | { readonly _tag: "Event"; readonly input: EventInput; readonly live: (id: number | null) => LiveEvent | undefined; readonly done?: Deferred.Deferred<SupervisionEvent> }
  | { readonly _tag: "Barrier"; readonly done: Deferred.Deferred<void> }
  | { readonly _tag: "Stop" }

const overflowMessage = `this stream fell behind by more than ${subscriberBuffer.events} events or ${
  subscriberBuffer.bytes / 1024 / 1024
} MiB and was ended; reconnect to resume`

const overflowMarker: LiveEvent = { type: "stream.overflow", limit: subscriberBuffer.events, message: overflowMessage, lastId: null }

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

const supervisionOf = (id: number, input: EventInput): SupervisionEvent => ({
  id,
  type: input.type,
  at: input.at,
  instanceId: input.instanceId ?? null,
  sessionId: input.sessionId ?? null,
  partId: input.partId ?? null,
  reason: input.reason ?? null,
  data: input.data ?? null
}) as SupervisionEvent

const isTerminal = (part: Part) => part.status === "completed" || part.status === "error"

interface DeltaState {
  readonly sessionId: SessionId
  /** The offset of `pending`'s first character in the part's output. */
  offset: number
  pending: string
}


const decodeReport = Schema.decodeUnknownOption(RecoveryReport)
/**
 * The one way the supervision layer reports what it did and what changed: to the append-only event
 * log (so the answer to "why?" survives a restart, and a client that dropped can resume), to the
 * live stream, and to the process log with its reason.
 *
 * Every state change (`part.updated`, `session.updated`) is a small marker row in the log (type and
 * id, no payload): a resumed stream replays it from the row as it now is, at its place. One writer
 * fiber appends in batches (one statement for all that waited) and delivers in id order, so ids
 * on the stream only grow, and a state change costs the publisher a queue offer, not a write.
 */
export class Events extends Effect.Service<Events>()("vigil/Events", {
  scoped: Effect.gen(function*() {
    const log = yield* EventLog
    const parts = yield* PartRepo
    const sessions = yield* SessionRepo
    // One queue per subscriber rather than a shared unbounded hub: the hub keeps every event until
    // its slowest subscriber takes it, so one client that never reads held them all.
    const subscribers = new Set<Subscriber>()
    /** The id of the last event delivered (or, at start, the log's newest): where a new subscriber starts. */
    let position = yield* log.head
    let lastRecovery: LiveEvent | undefined
    let closed = false
    let sinceLastPrune = 0
    const writes = yield* Queue.bounded<Write>(maxQueuedWrites)
    /** Open while a write that someone waits for (a supervision event, a flush) is queued: the window closes early. */
    const urgent = yield* Effect.makeLatch(false)

    const offer = (subscriber: Subscriber, sized: Sized) => {
      if (subscriber.ended) return
      const behind = Option.getOrElse(subscriber.queue.unsafeSize(), () => 0)
      if (sized.event?.type === "part.delta" && behind >= deltaLimits.skipBehind) return
      if (behind >= subscriberBuffer.events || subscriber.bytes + sized.bytes > subscriberBuffer.bytes) {
        subscriber.ended = true
        subscriber.queue.unsafeOffer({ id: null, event: overflowMarker, bytes: 0 })
        return
      }
      subscriber.bytes += sized.bytes
      subscriber.queue.unsafeOffer(sized)
    }

    const deliver = (id: number | null, event: LiveEvent) => {
      if (id !== null) position = Math.max(position, id)
      if (event.type === "recovery.completed") lastRecovery = event
      // A part's last output goes out before its end, and then it has no more.
      if (event.type === "part.updated" && isTerminal(event.part)) endDeltas(event.part.id)
      if (subscribers.size === 0) return
      const sized: Sized = { id, event, bytes: sizeOf(event) }
      for (const subscriber of subscribers) offer(subscriber, sized)
    }

    // --- the writer ----------------------------------------------------------------------------

    const writeBatch = (batch: ReadonlyArray<Extract<Write, { _tag: "Event" }>>) =>
      log.appendMany(batch.map((write) => write.input)).pipe(
        Effect.exit,
        Effect.flatMap((exit) =>
          Effect.suspend(() => {
            const done: Array<Effect.Effect<boolean>> = []
            batch.forEach((write, i) => {
              const id = Exit.isSuccess(exit) ? exit.value[i]! : null
              // A refused write: a state change still goes out live (without an id); a supervision
              // event's writer hears the failure, as when it wrote itself.
              if (id === null && write.done !== undefined) {
                done.push(Deferred.failCause(write.done, (exit as Exit.Failure<never, never>).cause))
                return
              }
              const event = write.live(id)
              if (event !== undefined) deliver(id, event)
              if (write.done !== undefined) done.push(Deferred.succeed(write.done, supervisionOf(id!, write.input)))
            })
            if (Exit.isFailure(exit)) done.push(Effect.logWarning("the event log refused a batch; it went out live without ids", exit.cause).pipe(Effect.as(true)))
            return Effect.all(done, { discard: true })
          })
        ),
        Effect.zipRight(prune(batch.length))
      )

    /** Every `pruneEvery` writes, the markers older than `stateRetention` ids go, a batch at a time. */
    const prune = (written: number) =>
      Effect.suspend(() => {
        sinceLastPrune += written
        if (sinceLastPrune < pruneEvery || position <= stateRetention) return Effect.void
        sinceLastPrune = 0
        return log.pruneMarkers(position - stateRetention, pruneBatch).pipe(
          Effect.catchAllCause((cause) => Effect.logWarning("could not prune the event log's state markers", cause)),
          Effect.asVoid
        )
      })

    const writer = Effect.gen(function*() {
      for (;;) {
        const first = yield* Queue.take(writes)
        // A state marker waits a moment for the ones that follow it (a part's start and end come
        // together), so the log takes them in one statement; a supervision event, whose writer
        // waits for its id, goes at once.
        if (first._tag === "Event" && first.done === undefined) {
          yield* Effect.raceFirst(Effect.sleep(batchWindow).pipe(Effect.withClock(wallClock)), urgent.await)
        }
        urgent.unsafeClose()
        const taken = [first, ...Chunk.toReadonlyArray(yield* Queue.takeUpTo(writes, maxBatch - 1))]
        let batch: Array<Extract<Write, { _tag: "Event" }>> = []
        for (const write of taken) {
          if (write._tag === "Event") {
            batch.push(write)
            continue
          }
          yield* writeBatch(batch)
          batch = []
          if (write._tag === "Stop") return
          yield* Deferred.succeed(write.done, undefined)
        }
        yield* writeBatch(batch)
      }
    }).pipe(Effect.catchAllCause((cause) => Effect.logError("the event writer stopped", cause)))

    const writerFiber = yield* Effect.forkScoped(writer)
    // Added after the fork, so it runs before the scope interrupts the writer: what was published
    // (the final states of a shutdown) is written and delivered first, then every stream ends.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closed = true
        yield* Queue.offer(writes, { _tag: "Stop" })
        yield* Fiber.await(writerFiber).pipe(Effect.timeout(Duration.seconds(5)), Effect.withClock(wallClock), Effect.ignore)
        endAll()
      })
    )

    /**
     * Queues a write for the writer. A queue with room takes it in this step (every state change
     * of every tool call comes here); a full one (a store slower than the publishers) makes the
     * publisher wait for room, as `Queue.offer` does. A write someone waits for opens the window.
     */
    const enqueue = (write: Write): Effect.Effect<void> =>
      Effect.suspend(() => {
        const opens = write._tag !== "Event" || write.done !== undefined
        if (writes.unsafeOffer(write)) {
          if (opens) urgent.unsafeOpen()
          return Effect.void
        }
        return Queue.offer(writes, write).pipe(Effect.zipRight(Effect.sync(() => opens && urgent.unsafeOpen())))
      })

    /** Publishes a state change; `part.updated`, `session.updated` and `recovery.completed` are logged first. */
    const publish = (event: LiveEvent): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (closed) return Effect.void
        switch (event.type) {
          case "part.updated":
          case "session.updated":
          case "recovery.completed":
            return Effect.clockWith((clock) => {
              const at = clock.unsafeCurrentTimeMillis()
              return enqueue({
                _tag: "Event",
                input: event.type === "part.updated"
                  ? { type: event.type, at, sessionId: event.part.sessionId, partId: event.part.id }
                  : event.type === "session.updated"
                  ? { type: event.type, at, sessionId: event.session.id }
                  : { type: event.type, at, data: event.report },
                live: () => event
              })
            })
          default:
            return Effect.sync(() => deliver(null, event))
        }
      })

    const record = Effect.fn("Events.record")(function*(input: Omit<EventInput, "at"> & { readonly at?: number }) {
      const at = input.at ?? (yield* Clock.currentTimeMillis)
      const full: EventInput = { ...input, at }
      yield* Effect.logWarning(input.type).pipe(
        Effect.annotateLogs({
          ...(input.sessionId ? { session: input.sessionId } : {}),
          ...(input.partId ? { part: input.partId } : {}),
          ...(input.reason ? { reason: describeReason(input.reason as ErrorReason) } : {}),
          ...(input.data !== undefined ? { data: JSON.stringify(input.data) } : {})
        })
      )
      if (closed) return supervisionOf(yield* log.append(full), full)
      const done = yield* Deferred.make<SupervisionEvent>()
      yield* enqueue({
        _tag: "Event",
        input: full,
        live: (id) => ({ type: liveTypeOf(input.type), event: supervisionOf(id!, full) }) as LiveEvent,
        done
      })
      return yield* Deferred.await(done)
    })

    /** Waits until everything published so far is written and delivered. */
    const flush = Effect.suspend(() => {
      if (closed) return Effect.void
      return Effect.flatMap(Deferred.make<void>(), (done) => enqueue({ _tag: "Barrier", done }).pipe(Effect.zipRight(Deferred.await(done))))
    })

    // --- live output ---------------------------------------------------------------------------

    const deltas = new Map<PartId, DeltaState>()
    /** Parts whose end went out: a late chunk (a background job's, after the drain) starts nothing. */
    const endedParts = new Set<PartId>()
    /**
     * The newest `endedKept` of them, oldest first from `endedNext`, in a ring: the oldest goes when a
     * part ends. Not the set's own order: reading a `Set`'s first entry after many deletes from its
     * front walks their holes (5-7 µs a part ended, measured).
     */
    const endedOrder: Array<PartId | undefined> = new Array(endedKept)
    let endedNext = 0
    const wake = yield* Effect.makeLatch(false)

    const sendDelta = (partId: PartId, state: DeltaState) => {
      if (state.pending === "") return
      const event: LiveEvent = { type: "part.delta", partId, sessionId: state.sessionId, offset: state.offset, text: state.pending }
      state.offset += state.pending.length
      state.pending = ""
      deliver(null, event)
    }

    function endDeltas(partId: PartId) {
      const state = deltas.get(partId)
      if (state !== undefined) {
        sendDelta(partId, state)
        deltas.delete(partId)
      }
      if (endedParts.has(partId)) return
      const oldest = endedOrder[endedNext]
      if (oldest !== undefined) endedParts.delete(oldest)
      endedOrder[endedNext] = partId
      endedNext = (endedNext + 1) % endedKept
      endedParts.add(partId)
    }

    /** A chunk of a running part's output; never waits, whoever reads. */
    const delta = (partId: PartId, sessionId: SessionId, text: string) =>
      Effect.sync(() => {
        if (closed || endedParts.has(partId) || text === "") return
        let state = deltas.get(partId)
        if (state === undefined) deltas.set(partId, state = { sessionId, offset: 0, pending: "" })
        if (subscribers.size === 0) {
          // Nobody to send it to: only the offset moves.
          state.offset += state.pending.length + text.length
          state.pending = ""
          return
        }
        state.pending += text
        if (state.pending.length > deltaLimits.chars) {
          let cut = state.pending.length - deltaLimits.chars
          // Not between the halves of a surrogate pair.
          const code = state.pending.charCodeAt(cut)
          if (code >= 0xdc00 && code <= 0xdfff) cut++
          state.offset += cut
          state.pending = state.pending.slice(cut)
        }
        wake.unsafeOpen()
      })

    yield* wake.await.pipe(
      Effect.zipRight(Effect.sleep(deltaLimits.interval)),
      Effect.zipRight(Effect.sync(() => {
        wake.unsafeClose()
        for (const [partId, state] of deltas) sendDelta(partId, state)
      })),
      Effect.forever,
      Effect.forkScoped
    )

    // --- subscriptions -------------------------------------------------------------------------

    const endAll = () => {
      for (const subscriber of subscribers) {
        if (subscriber.ended) continue
        subscriber.ended = true
        subscriber.queue.unsafeOffer({ id: null, event: null, bytes: 0 })
      }
    }

    let streamsEnded = false
    /**
     * Ends every stream once what was published so far reached it (a server's shutdown, after its
     * turns ended): the last states go out, then each stream ends. New subscriptions end at once.
     */
    const endStreams = flush.pipe(Effect.zipRight(Effect.sync(() => {
      for (const [partId, state] of deltas) sendDelta(partId, state)
      streamsEnded = true
      endAll()
    })))

    /** A row of the log as the live stream sends it; `undefined` for one whose part or session is gone. */
    const replayed = (
      row: SupervisionEvent,
      partsById: ReadonlyMap<string, Part>,
      sessionsById: ReadonlyMap<string, Session>
    ): LiveEvent | undefined => {
      switch (row.type) {
        case "part.updated": {
          const part = row.partId === null ? undefined : partsById.get(row.partId)
          return part === undefined ? undefined : { type: "part.updated", part }
        }
        case "session.updated": {
          const session = row.sessionId === null ? undefined : sessionsById.get(row.sessionId)
          return session === undefined ? undefined : { type: "session.updated", session }
        }
        case "recovery.completed":
          // The log holds the report `publish` wrote; one that does not decode (a foreign row) is left out.
          return Option.match(decodeReport(row.data), {
            onNone: () => undefined,
            onSome: (report) => ({ type: "recovery.completed", report })
          })
        default:
          return { type: liveTypeOf(row.type), event: row } as LiveEvent
      }
    }

    /**
     * The log after `since`, up to `until`, oldest first, a page at a time. A state marker is
     * replayed from its row as it is now: a part that changed twice since is sent twice in its
     * latest state (state updates only move forward, so a client applies both as one).
     */
    const replay = (since: number, until: number): Stream.Stream<Sequenced> =>
      Stream.paginateChunkEffect(since, (cursor) =>
        Effect.gen(function*() {
          const rows = (yield* log.after(cursor, replayPage)).filter((row) => row.id <= until)
          const partIds = new Set<PartId>()
          const sessionIds = new Set<SessionId>()
          for (const row of rows) {
            if (row.type === "part.updated" && row.partId !== null) partIds.add(row.partId)
            if (row.type === "session.updated" && row.sessionId !== null) sessionIds.add(row.sessionId)
          }
          const partsById = new Map<string, Part>()
          for (const id of partIds) {
            const part = yield* parts.get(id)
            if (Option.isSome(part)) partsById.set(id, part.value)
          }
          const sessionsById = new Map<string, Session>()
          if (sessionIds.size > 0) for (const session of yield* sessions.getMany([...sessionIds])) sessionsById.set(session.id, session)
          const out: Array<Sequenced> = []
          for (const row of rows) {
            const event = replayed(row, partsById, sessionsById)
            if (event !== undefined) out.push({ id: row.id, event })
          }
          const last = rows.at(-1)?.id
          const more = rows.length === replayPage && last !== undefined && last < until
          return [Chunk.unsafeFromArray(out), more ? Option.some(last) : Option.none()] as const
        }))

    /**
     * A subscription: taken first (so nothing published from now on is missed), then the replay of
     * what the log holds after `since` up to where the subscription started, then the live events.
     * Without `since`, it starts with the last recovery report, at the current position, so whoever
     * connects after start-up still hears how recovery went, and can resume from its id.
     */
    const open = (options: { readonly since?: number | undefined; readonly recovery?: boolean } = {}): Effect.Effect<
      { readonly position: number; readonly events: Stream.Stream<Sequenced> },
      never,
      Scope.Scope
    > =>
      Effect.acquireRelease(
        Effect.flatMap(Queue.unbounded<Sized>(), (queue) =>
          Effect.sync(() => {
            const subscriber: Subscriber = { queue, bytes: 0, ended: false }
            subscribers.add(subscriber)
            // Taken with the subscription, in one step: every later delivery has a greater id.
            const at = { position, recovery: lastRecovery }
            if (streamsEnded || closed) endAll()
            return { subscriber, ...at }
          })),
        ({ subscriber }) =>
          Effect.suspend(() => {
            subscribers.delete(subscriber)
            return Queue.shutdown(subscriber.queue)
          })
      ).pipe(
        Effect.map(({ position: start, recovery, subscriber }) => {
          const since = options.since
          const live: Stream.Stream<Sequenced> = Stream.fromQueue(subscriber.queue, { maxChunkSize: 1 }).pipe(
            Stream.map((sized) => {
              subscriber.bytes -= sized.bytes
              return sized
            }),
            Stream.takeWhile((sized) => sized.event !== null),
            Stream.filter((sized) => sized.id === null || sized.id > start),
            Stream.map((sized) => ({ id: sized.id, event: sized.event! })),
            Stream.takeUntil(({ event }) => event.type === "stream.overflow")
          )
          const head: Stream.Stream<Sequenced> = since === undefined
            ? recovery === undefined || options.recovery === false ? Stream.empty : Stream.make({ id: start, event: recovery })
            : Stream.concat(
              since < start - stateRetention
                ? Stream.make<Array<Sequenced>>({
                  id: null,
                  event: {
                    type: "stream.truncated",
                    before: start - stateRetention,
                    message: `state changes before id ${start - stateRetention} may have been pruned: re-read the sessions and parts`
                  }
                })
                : Stream.empty,
              since < start ? replay(since, start) : Stream.empty
            )
          // The overflow notice says the last id this stream really delivered (replayed or live).
          const events = Stream.concat(head, live).pipe(
            Stream.mapAccum(since ?? start, (delivered, item): readonly [number, Sequenced] =>
              item.event.type === "stream.overflow"
                ? [delivered, { id: delivered > 0 ? delivered : null, event: { ...item.event, lastId: delivered > 0 ? delivered : null } }]
                : [item.id ?? delivered, item]
            )
          )
          return { position: start, events }
        })
      )

    /**
     * A live subscription; each subscriber gets every event published after it subscribed, in
     * order, unless it falls `subscriberBuffer` behind: then `stream.overflow` is its last.
     */
    const subscribe = Effect.map(open({ recovery: false }), ({ events }) => Stream.map(events, (item) => item.event))

    return {
      publish,
      record,
      delta,
      flush,
      endStreams,
      subscribe,
      open,
      /** The live stream as an Effect `Stream`: the last recovery report first, then every event as it happens. */
      stream: Stream.unwrapScoped(Effect.map(open(), ({ events }) => events)),
      /** What the log holds after `id`, then the live stream: resume from the last id seen. */
      since: (id: number) => Stream.unwrapScoped(Effect.map(open({ since: id }), ({ events }) => events))
    } as const
  }),
  dependencies: []
}) {}
