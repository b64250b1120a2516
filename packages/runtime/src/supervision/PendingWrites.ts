import type { PartId, SessionId } from "@vigil/domain"
import { Cause, Clock, Data, Duration, Effect, Metric, Queue } from "effect"
import { Events } from "../events/Events.js"
import { InstanceLease } from "../recovery/InstanceLease.js"
import * as Metrics from "../Metrics.js"

/**
 * A write the store refused (a full disk, a read-only file, a lost connection). The repositories
 * turn SQL errors into defects; a write whose loss would leave a part or a session stuck is run
 * through `PendingWrites.attempt`, which gives this typed failure back, so its caller must decide
 * what to do without the write: in practice, go on in memory and `hold` it.
 */
export class StoreWriteFailed extends Data.TaggedError("StoreWriteFailed")<{
  readonly what: string
  readonly message: string
}> {}

/** What `/health` says of the store. */
export interface StoreHealth {
  readonly status: "ok" | "degraded"
  /** Writes held in memory, waiting for the store to take them. */
  readonly pendingWrites: number
  /** Held writes given up because the bound was reached (their parts are then left to recovery). */
  readonly droppedWrites: number
  readonly lastError: string | null
  readonly since: number | null
}

interface Held {
  readonly key: string
  readonly what: string
  readonly sessionId: SessionId | null
  readonly partId: PartId | null
  readonly write: Effect.Effect<void, StoreWriteFailed>
  readonly heldAt: number
  attempts: number
}

/** At most this many writes are held; each holds at most a capped output (64 KiB): ≤ 64 MiB. */
export const maxPendingWrites = 1_000
const firstRetry = Duration.millis(200)
const maxRetry = Duration.seconds(30)

const describe = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.squash(cause)
  const text = failure instanceof Error ? `${failure.message}${failure.cause instanceof Error ? `: ${failure.cause.message}` : ""}` : String(failure)
  return text.slice(0, 500)
}

/**
 * Terminal writes (a part's end, a session's end of turn) that the store refused, held in memory
 * (bounded) and retried in order with exponential backoff until it takes them. Meanwhile the
 * store is `degraded` on `/health`. A held write is guarded like any terminal write: if someone
 * else ended the part in between, the retry changes nothing. If the process dies with writes held,
 * their parts stay `running` under a dead owner, and the next start's recovery ends them
 * (`OrphanedByCrash`, listed in its `recovery.orphans_rescued` event).
 */
/**
 * Handles a store's refusal of a write: a typed failure or a defect. An interruption is not a
 * refusal and goes on as one (an interrupted-only cause holds no failure).
 */
export const onRefusal = <B, E2, R2>(handle: (cause: Cause.Cause<unknown>) => Effect.Effect<B, E2, R2>) =>
<A, E, R>(write: Effect.Effect<A, E, R>): Effect.Effect<A | B, E2, R | R2> =>
  Effect.catchAllCause(write, (cause) => Cause.isInterruptedOnly(cause) ? Effect.failCause(cause as Cause.Cause<never>) : handle(cause))

export class PendingWrites extends Effect.Service<PendingWrites>()("vigil/PendingWrites", {
  scoped: Effect.gen(function*() {
    const events = yield* Events
    const lease = yield* InstanceLease
    const held = new Map<string, Held>()
    let dropped = 0
    let lastError: string | null = null
    let since: number | null = null
    const wake = yield* Queue.sliding<void>(1)

    /** Runs a write; a store that refuses it (a typed failure or a defect) is a `StoreWriteFailed`. */
    const attempt = <A, E>(what: string, write: Effect.Effect<A, E>): Effect.Effect<A, StoreWriteFailed> =>
      write.pipe(onRefusal((cause) => Effect.fail(new StoreWriteFailed({ what, message: describe(cause) }))))

    const hold = Effect.fnUntraced(function*(entry: {
      readonly key: string
      readonly what: string
      readonly sessionId?: SessionId | null
      readonly partId?: PartId | null
      readonly write: Effect.Effect<void, StoreWriteFailed>
      readonly error: StoreWriteFailed
    }) {
      const now = yield* Clock.currentTimeMillis
      lastError = `${entry.error.what}: ${entry.error.message}`
      since ??= now
      // A newer write for the same thing (a session's status) replaces the older one.
      held.delete(entry.key)
      if (held.size >= maxPendingWrites) {
        const [oldestKey, oldest] = held.entries().next().value!
        held.delete(oldestKey)
        dropped++
        yield* Effect.logError("a held write was given up: too many writes are waiting for the store", { what: oldest.what })
      }
      held.set(entry.key, {
        key: entry.key,
        what: entry.what,
        sessionId: entry.sessionId ?? null,
        partId: entry.partId ?? null,
        write: entry.write,
        heldAt: now,
        attempts: 1
      })
      yield* Effect.logError(`the store refused a write; it is held in memory and retried: ${entry.what}`, entry.error.message)
      yield* Queue.offer(wake, undefined)
    })

    /** Tries every held write, oldest first, and stops at the first the store still refuses. */
    const flush = Effect.gen(function*() {
      for (const entry of [...held.values()]) {
        entry.attempts++
        yield* Metric.increment(Metrics.retries)
        yield* entry.write
        // Unless a newer write for the same key came in meanwhile (it is tried next time).
        if (held.get(entry.key) === entry) held.delete(entry.key)
        const now = yield* Clock.currentTimeMillis
        // Best effort: the log says the write was late, and for how long it was held.
        yield* events.record({
          type: "store.write_recovered",
          instanceId: lease.id,
          sessionId: entry.sessionId,
          partId: entry.partId,
          data: { what: entry.what, heldForMs: now - entry.heldAt, attempts: entry.attempts }
        }).pipe(Effect.catchAllCause(() => Effect.void))
      }
      if (held.size === 0) {
        lastError = null
        since = null
      }
    })

    const retryLoop = Effect.gen(function*() {
      let delay = firstRetry
      while (true) {
        if (held.size === 0) {
          delay = firstRetry
          yield* Queue.take(wake)
          continue
        }
        yield* Effect.sleep(delay)
        const result = yield* Effect.either(flush)
        if (result._tag === "Left") {
          lastError = `${result.left.what}: ${result.left.message}`
          delay = Duration.min(Duration.times(delay, 2), maxRetry)
        } else {
          delay = firstRetry
        }
      }
    }).pipe(
      Effect.catchAllCause((cause) => Effect.logError("the held-writes retry loop failed", cause)),
      Effect.annotateLogs({ module: "PendingWrites" })
    )
    yield* Effect.forkScoped(retryLoop)
    // At shutdown, one last try; what is still refused is lost with the process, and said so
    // (the next start's recovery ends those parts as orphans).
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        if (held.size === 0) return
        yield* Effect.either(flush)
        if (held.size === 0) return
        yield* Effect.logError(`shutting down with ${held.size} writes the store refused; the next start's recovery ends their parts`, {
          writes: [...held.values()].slice(0, 100).map((entry) => entry.what)
        })
      }).pipe(Effect.timeout(Duration.seconds(5)), Effect.ignore)
    )

    return {
      attempt,
      hold,
      /** Whether a write for this key is held (a session whose end of turn is not written yet). */
      isHeld: (key: string) => Effect.sync(() => held.has(key)),
      /** Tries the held writes now (a claim that finds its session still `busy` in the store). */
      flushNow: Effect.either(flush).pipe(Effect.asVoid),
      health: Effect.sync((): StoreHealth => ({
        status: held.size > 0 || lastError !== null ? "degraded" : "ok",
        pendingWrites: held.size,
        droppedWrites: dropped,
        lastError,
        since
      }))
    } as const
  })
}) {}
