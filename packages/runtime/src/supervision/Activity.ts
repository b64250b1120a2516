import type { SessionId } from "@vigil/domain"
import { SessionRepo } from "@vigil/store"
import { Duration, Effect } from "effect"

/** How often one session's progress is written; the idle rule works in minutes, not milliseconds. */
const writeEvery = Duration.seconds(1)
const writeEveryMillis = Duration.toMillis(writeEvery)

/**
 * Progress (model chunks, tool output, a part's start and end, replies) moves a session's
 * `lastActivityAt`, written at most once per `writeEvery` per session: a touch within that time of
 * the last write is held here and written by a trailing write (one transaction for every session
 * held), so the row lags the truth by at most `writeEvery` and a chatty tool or a burst of tool
 * calls is not a write per chunk or per call (sequential no-op calls spent a sixth of their time on
 * this write when every start and end wrote it). What acts on a session's activity (the idle monitor,
 * the watchdog) reads `latest`, the row's value or the held one, whichever is newer, so no rule
 * ever sees this instance's sessions idler than they are. Held activity is written at shutdown too.
 * Never called by anything periodic: a heartbeat must not keep a wedged session "active".
 */
export class Activity extends Effect.Service<Activity>()("vigil/Activity", {
  scoped: Effect.gen(function*() {
    const sessions = yield* SessionRepo
    /** Each session's activity as last written (a touch at or before it changes nothing). */
    const written = new Map<SessionId, number>()
    /** Activity newer than what was written, for the trailing write. */
    const held = new Map<SessionId, number>()
    const due = yield* Effect.makeLatch(false)

    const hold = (sessionId: SessionId, at: number) => {
      if ((held.get(sessionId) ?? 0) < at) held.set(sessionId, at)
      due.unsafeOpen()
    }

    // Called at each start and end of every part and per chunk of output: one step when it holds.
    const touch = (sessionId: SessionId): Effect.Effect<void> =>
      Effect.clockWith((clock) => {
        const now = clock.unsafeCurrentTimeMillis()
        const last = written.get(sessionId)
        if (last !== undefined && now <= last) return Effect.void
        if (last !== undefined && now - last < writeEveryMillis) {
          hold(sessionId, now)
          return Effect.void
        }
        written.set(sessionId, now)
        held.delete(sessionId)
        return sessions.touch([sessionId], now)
      })

    /** Writes what is held, the sessions side by side (their writes share a transaction); a refused write is held again. */
    const writeHeld = Effect.suspend(() => {
      if (held.size === 0) return Effect.void
      const batch = [...held]
      held.clear()
      for (const [id, at] of batch) written.set(id, at)
      return Effect.forEach(batch, ([id, at]) => sessions.touch([id], at), { concurrency: "unbounded", discard: true }).pipe(
        Effect.catchAllCause((cause) => {
          for (const [id, at] of batch) hold(id, at)
          return Effect.logWarning("could not write sessions' recent activity; it is tried again", cause)
        })
      )
    })

    yield* due.await.pipe(
      Effect.zipRight(Effect.sleep(writeEvery)),
      Effect.zipRight(Effect.sync(() => due.unsafeClose())),
      Effect.zipRight(writeHeld),
      Effect.forever,
      Effect.annotateLogs({ module: "Activity" }),
      Effect.forkScoped
    )
    // After the fork, so it runs first at shutdown: nothing held is left unwritten.
    yield* Effect.addFinalizer(() => writeHeld)

    /** A session's latest activity: `recorded` (its row's) or what is held for it, whichever is newer. */
    const latest = (sessionId: SessionId, recorded: number): number => Math.max(recorded, held.get(sessionId) ?? 0)

    /** A session at rest: its end wrote its activity, so nothing of it is kept. */
    const forget = (sessionId: SessionId) =>
      Effect.sync(() => {
        written.delete(sessionId)
        held.delete(sessionId)
      })

    return { touch, latest, forget } as const
  })
}) {}
