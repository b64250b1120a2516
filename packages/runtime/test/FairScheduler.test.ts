import { assert, describe, it } from "@effect/vitest"
import type { SessionId } from "@vigil/domain"
import { ToolTimeout } from "@vigil/domain"
import type { Scheduler } from "effect"
import { Duration, Effect, FiberRef, Schema } from "effect"
import { fairScheduler, FairSchedulerLive } from "../src/scheduler/FairScheduler.js"
import { SessionService } from "../src/agent/SessionService.js"
import { ToolRunner } from "../src/supervision/ToolRunner.js"
import { getPart, testRuntime, testTools } from "./support.js"

const noop = { name: "noop", description: "does nothing", input: Schema.Struct({}), run: () => Effect.succeed("") }

// Long enough that "on time" and "after the burst" stay far apart on a loaded CI machine (the
// bounds below allow for other test files sharing the two cores).
const burstMillis = 1_500

/**
 * Eight workers run no-op tool calls back to back on a real SQLite file (no step of that awaits a
 * macrotask) for `burstMillis`, stopping by `performance.now()` since no timer may fire; meanwhile
 * a plain `setTimeout(10)` and a tool with a 50 ms deadline wait for the event loop.
 */
const burst = Effect.gen(function*() {
  const runner = yield* ToolRunner
  const sessions = yield* SessionService
  const workers: Array<SessionId> = []
  for (let i = 0; i < 8; i++) workers.push((yield* sessions.create()).id)
  const deadlined = (yield* sessions.create()).id
  const started = performance.now()
  let timerFiredAt: number | undefined
  const timer = setTimeout(() => (timerFiredAt = performance.now() - started), 10)
  const forever = yield* runner.runTool({ sessionId: deadlined, tool: testTools.forever, input: {}, timeout: Duration.millis(50) })
  let lifecycles = 0
  yield* Effect.forEach(
    workers,
    (sessionId) =>
      runner.runTool({ sessionId, tool: noop, input: {} }).pipe(
        Effect.flatMap((handle) => handle.await),
        Effect.tap((outcome) => Effect.sync(() => outcome._tag === "Completed" && lifecycles++)),
        Effect.repeat({ while: () => performance.now() - started < burstMillis })
      ),
    { concurrency: "unbounded", discard: true }
  )
  const timerDuringBurst = timerFiredAt
  clearTimeout(timer)
  const deadline = yield* forever.await
  const part = yield* getPart(forever.partId)
  return { timerDuringBurst, deadline, lifecycles, lateness: part.endedAt! - part.deadlineAt! }
})

const onScheduler = (scheduler: Scheduler.Scheduler | undefined) =>
  (scheduler === undefined ? burst : Effect.withScheduler(burst, scheduler)).pipe(
    Effect.provide(testRuntime({ tools: [noop, testTools.forever] }))
  )

describe("FairScheduler (real clock, real SQLite file)", () => {
  it.live("during a burst of no-op tool calls, a setTimeout(10) fires and a 50 ms deadline ends its tool on time", () =>
    Effect.gen(function*() {
      const result = yield* onScheduler(fairScheduler)
      assert.isAbove(result.lifecycles, 100, "the burst ran")
      assert.isDefined(result.timerDuringBurst, "the timer fired during the burst")
      assert.isBelow(result.timerDuringBurst!, 250)
      assert.strictEqual(result.deadline._tag, "Failed")
      if (result.deadline._tag === "Failed") assert.deepStrictEqual(result.deadline.reason, new ToolTimeout({ timeout: 50 }))
      // Recorded as ended well before the burst is over (it would be ~burstMillis late otherwise).
      assert.isBelow(result.lateness, 500)
    }), 20_000)

  // Why the scheduler exists: the same burst on Effect's default scheduler gives the event loop
  // no turn until it ends. If this starts failing, the default has learnt to yield.
  it.live("on Effect's default scheduler the same burst starves the timer until it ends", () =>
    Effect.gen(function*() {
      const result = yield* onScheduler(undefined)
      assert.isAbove(result.lifecycles, 100, "the burst ran")
      assert.isUndefined(result.timerDuringBurst)
      assert.isAbove(result.lateness, burstMillis / 2)
    }), 20_000)

  it.effect("FairSchedulerLive installs the scheduler for what runs inside it", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* FiberRef.get(FiberRef.currentScheduler), fairScheduler)
    }).pipe(Effect.provide(FairSchedulerLive)))
})
