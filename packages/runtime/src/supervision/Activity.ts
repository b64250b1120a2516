import type { SessionId } from "@vigil/domain"
import { SessionRepo } from "@vigil/store"
import { Effect } from "effect"

/** How often one session's progress is written; the idle rule works in minutes, not milliseconds. */
const writeEveryMillis = 1_000

/**
 * Progress (model chunks, tool output, transitions, replies) moves a session's `lastActivityAt`.
 * Writes are throttled per session so a chatty tool does not turn into a write per chunk. Even a
 * forced touch (a state change) skips the write when this session was already written at this
 * very millisecond or later: the write only moves the value forward, so it would change nothing
 * (a tool call's start and end are often in the same millisecond).
 * Never called by anything periodic: a heartbeat must not keep a wedged session "active".
 */
export class Activity extends Effect.Service<Activity>()("vigil/Activity", {
  effect: Effect.gen(function*() {
    const sessions = yield* SessionRepo
    const lastWritten = new Map<SessionId, number>()

    // Called at each start and end of every part (and per chunk of output): one step when it skips.
    const touch = (sessionId: SessionId, options: { readonly force?: boolean } = {}): Effect.Effect<void> =>
      Effect.clockWith((clock) => {
        const now = clock.unsafeCurrentTimeMillis()
        const last = lastWritten.get(sessionId)
        if (last !== undefined && (now <= last || (!options.force && now - last < writeEveryMillis))) return Effect.void
        lastWritten.set(sessionId, now)
        return sessions.touch([sessionId], now)
      })

    const forget = (sessionId: SessionId) => Effect.sync(() => lastWritten.delete(sessionId))

    return { touch, forget } as const
  })
}) {}
