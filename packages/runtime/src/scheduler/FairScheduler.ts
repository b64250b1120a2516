import type { Fiber } from "effect"
import { Layer, Scheduler } from "effect"

/**
 * The scheduler the server (and the benchmark) runs its fibers on: tasks run from microtasks, as
 * with Effect's default, but a turn of them that has held the thread for more than `sliceMillis`
 * goes on from `setImmediate`, so Node reaches its timers and I/O phases between slices.
 *
 * Why the default is not enough: supervised work hands off from fiber to fiber through Deferreds
 * and joins, and better-sqlite3 is synchronous, so a burst of tool calls never awaits a macrotask.
 * The default `MixedScheduler(2048)` falls back to `setTimeout` only after 2,048 consecutive
 * re-drains of one runner, and (in effect 3.22) it keeps one runner per fiber: each resumed fiber
 * drains its continuation and goes idle, so every count starts again at 0 and the fallback never
 * comes. Measured (bench, figure 6): a 50 ms deadline fired ~2 s late, after a 2 s burst of no-op
 * tools, and a `setTimeout(10)` did not run until the burst ended; the lease heartbeat and HTTP
 * starve the same way. Here the clock, not a count, ends a turn, and one queue holds every fiber's
 * tasks (in priority order, first in first out within a priority, as the default).
 *
 * What it costs: node's I/O callbacks can run between any two fiber tasks, also between the first
 * steps of two fibers forked together, which the default runs in one go of microtasks. Code that
 * starts I/O in one fiber and listens for its events in another then misses an event that comes
 * in between (node drops an event nobody listens to). `@effect/platform-node`'s node:http client
 * is such code (it writes the request in one fiber and listens for the response in a sibling):
 * under this scheduler it lost 2 to 11 responses in 100 from a provider answering at once, so the
 * providers run on its undici client (provider's `ProviderHttpClient`). The rule for the code on
 * it: attach a listener in the same synchronous step that starts the I/O, or use an API that
 * keeps what arrives (a promise, a paused stream). Yielding less often would not fix it, only
 * make it rarer, and bring the starvation back.
 */
export class FairScheduler implements Scheduler.Scheduler {
  private readonly tasks = new Scheduler.PriorityBuckets()
  private running = false
  /** When the current turn (the run of tasks since Node last reached its check phase) began. */
  private turnStartedAt = 0
  /** A `setImmediate` is pending that marks the end of the current turn when it runs. */
  private turnOpen = false

  constructor(
    /** How long one turn of fiber tasks may hold the thread before timers and I/O get theirs. */
    readonly sliceMillis = 4
  ) {}

  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return Scheduler.defaultShouldYield(fiber)
  }

  scheduleTask(task: Scheduler.Task, priority: number): void {
    this.tasks.scheduleTask(task, priority)
    if (this.running) return
    this.running = true
    if (this.turnOpen && performance.now() - this.turnStartedAt >= this.sliceMillis) setImmediate(this.drain)
    else queueMicrotask(this.drain)
  }

  private readonly endTurn = () => {
    this.turnOpen = false
  }

  private readonly drain = () => {
    if (!this.turnOpen) {
      this.turnOpen = true
      this.turnStartedAt = performance.now()
      setImmediate(this.endTurn)
    }
    for (;;) {
      const buckets = this.tasks.buckets
      if (buckets.length === 0) {
        this.running = false
        return
      }
      this.tasks.buckets = []
      for (let b = 0; b < buckets.length; b++) {
        const [priority, toRun] = buckets[b]!
        for (let i = 0; i < toRun.length; i++) {
          toRun[i]!()
          if (performance.now() - this.turnStartedAt >= this.sliceMillis) {
            this.requeue(buckets, b, priority, toRun, i + 1)
            // Queued after `endTurn`, so the next turn starts in Node's next loop iteration,
            // after its timers and its I/O poll.
            setImmediate(this.drain)
            return
          }
        }
      }
    }
  }

  /** Puts the tasks a turn did not reach back in front of the ones scheduled during it. */
  private requeue(
    buckets: Array<[number, Array<Scheduler.Task>]>,
    bucket: number,
    priority: number,
    toRun: Array<Scheduler.Task>,
    from: number
  ) {
    const newer = this.tasks.buckets
    this.tasks.buckets = []
    for (let i = from; i < toRun.length; i++) this.tasks.scheduleTask(toRun[i]!, priority)
    for (let b = bucket + 1; b < buckets.length; b++) {
      const [p, rest] = buckets[b]!
      for (const task of rest) this.tasks.scheduleTask(task, p)
    }
    for (const [p, rest] of newer) for (const task of rest) this.tasks.scheduleTask(task, p)
  }
}

/** One scheduler per process: every fiber of the server shares the turn budget. */
export const fairScheduler: Scheduler.Scheduler = new FairScheduler()

/** Installs the fair scheduler for everything built and run inside this layer's scope. */
export const FairSchedulerLive: Layer.Layer<never> = Layer.setScheduler(fairScheduler)
