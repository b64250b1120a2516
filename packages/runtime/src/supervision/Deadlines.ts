import type { Scope } from "effect"
import { Cause, Duration, Effect } from "effect"

/** One deadline in the queue. */
export interface Deadline<A> {
  readonly at: number
  readonly item: A
  /** Its place in the heap; -1 once it is out (it came due, or was removed). */
  index: number
}

export interface Deadlines<A> {
  /** Adds a deadline at `at` (epoch ms on the Effect clock). Synchronous: no Effect step. */
  readonly add: (at: number, item: A) => Deadline<A>
  /** Takes a deadline out; a no-op once it came due or was removed. Synchronous. */
  readonly remove: (deadline: Deadline<A>) => void
  /** How many deadlines are waiting. */
  readonly size: () => number
}

/**
 * The deadlines of every running part, watched by one fiber: a binary heap ordered by instant,
 * and a watcher that sleeps until the earliest (on the Effect clock, so TestClock drives it) and
 * hands each that comes due to `onDue`. A deadline is an entry, not a fiber per part: a part
 * that ends before its deadline (nearly every part) takes its entry out again, in O(log n) and
 * without an Effect step, and 10,000 parts waiting on their deadlines are 10,000 entries and one
 * sleeping fiber. The watcher is woken only when a deadline comes in before the one it sleeps to.
 * The watcher runs in the given scope; `onDue` must not wait long (a stop forks its work).
 */
export const make = <A>(onDue: (item: A) => Effect.Effect<void>): Effect.Effect<Deadlines<A>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const heap: Array<Deadline<A>> = []
    /** The instant the watcher sleeps to; undefined while it waits with nothing to wait for. */
    let armedAt: number | undefined = undefined
    /** An earlier deadline came in since the watcher last looked. */
    let woken = false
    let wake: (() => void) | undefined = undefined

    const swap = (i: number, j: number) => {
      const a = heap[i]!
      const b = heap[j]!
      heap[i] = b
      heap[j] = a
      b.index = i
      a.index = j
    }
    const up = (i: number) => {
      while (i > 0) {
        const parent = (i - 1) >> 1
        if (heap[parent]!.at <= heap[i]!.at) return
        swap(i, parent)
        i = parent
      }
    }
    const down = (i: number) => {
      for (;;) {
        const left = 2 * i + 1
        if (left >= heap.length) return
        const right = left + 1
        const least = right < heap.length && heap[right]!.at < heap[left]!.at ? right : left
        if (heap[i]!.at <= heap[least]!.at) return
        swap(i, least)
        i = least
      }
    }

    const remove = (deadline: Deadline<A>) => {
      const i = deadline.index
      if (i < 0) return
      deadline.index = -1
      const last = heap.pop()!
      if (last === deadline) return
      heap[i] = last
      last.index = i
      down(i)
      up(last.index)
    }

    const add = (at: number, item: A): Deadline<A> => {
      const deadline: Deadline<A> = { at, item, index: heap.length }
      heap.push(deadline)
      up(deadline.index)
      if (armedAt === undefined || at < armedAt) {
        woken = true
        armedAt = at
        const resume = wake
        wake = undefined
        resume?.()
      }
      return deadline
    }

    const earlierCameIn = Effect.async<void>((resume) => {
      if (woken) return resume(Effect.void)
      wake = () => resume(Effect.void)
      return Effect.sync(() => {
        wake = undefined
      })
    })

    /** One look: hands over what is due, then sleeps to the next deadline or until an earlier one comes in. */
    const look = Effect.suspend(() => {
      woken = false
      const now = clock.unsafeCurrentTimeMillis()
      const due: Array<A> = []
      while (heap.length > 0 && heap[0]!.at <= now) {
        const first = heap[0]!
        remove(first)
        due.push(first.item)
      }
      armedAt = heap.length > 0 ? heap[0]!.at : undefined
      const wait = armedAt === undefined
        ? earlierCameIn
        : Effect.raceFirst(clock.sleep(Duration.millis(armedAt - now)), earlierCameIn)
      return due.length === 0 ? wait : Effect.zipRight(Effect.forEach(due, handOver, { discard: true }), wait)
    })
    const handOver = (item: A) =>
      onDue(item).pipe(Effect.catchAllCause((cause) => Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("a deadline's stop failed", cause)))

    // Nothing but the scope's end stops the watcher: were it to die, no deadline would fire again
    // (the watchdog would still find those parts, much later).
    const survive = (cause: Cause.Cause<never>) =>
      Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : Effect.logError("the deadline watcher failed; it goes on", cause)
    yield* Effect.forkScoped(Effect.forever(Effect.catchAllCause(look, survive)))
    return { add, remove, size: () => heap.length }
  })
