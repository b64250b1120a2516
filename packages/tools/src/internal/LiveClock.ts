import type { Effect as E } from "effect"
import { Clock, Effect } from "effect"

/**
 * The clock for waits on real processes (a pipe draining, a signal taking effect). They must not
 * stop when a test swaps in `TestClock`: a hard stop frozen until someone adjusts a test clock is
 * exactly the kind of stuck tool vigil exists to end.
 */
const liveClock: Clock.Clock = Clock.make()

/** Puts the caller's clock back around one of the caller's own callbacks. */
export type RestoreClock = <A, Err, R>(effect: E.Effect<A, Err, R>) => E.Effect<A, Err, R>

/**
 * Runs `body` on the live clock. The caller's callbacks (output, process records, escalation
 * steps) go through `restore`, so the timestamps they write still come from the caller's clock:
 * a session's activity under `TestClock` stays on `TestClock` time.
 */
export const onLiveClock = <A, Err, R>(body: (restore: RestoreClock) => E.Effect<A, Err, R>): E.Effect<A, Err, R> =>
  Effect.flatMap(Effect.clock, (caller) => {
    const restore: RestoreClock = (effect) => Effect.withClock(effect, caller)
    return Effect.withClock(body(restore), liveClock)
  })
