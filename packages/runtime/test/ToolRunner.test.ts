import { assert, describe, it } from "@effect/vitest"
import { AbortIncomplete, SessionCancelled, ToolFailed, ToolTimeout, WatchdogStuck } from "@vigil/domain"
import { EventLog, PartRepo } from "@vigil/store"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Duration, Effect, Fiber, Layer, Option, TestClock } from "effect"
import { SessionService } from "../src/agent/SessionService.js"
import { PendingWrites } from "../src/supervision/PendingWrites.js"
import { ToolRunner } from "../src/supervision/ToolRunner.js"
import { RecoveryComplete } from "../src/recovery/StartupRecovery.js"
import { allTestTools, getPart, tempDb, testRuntime, testTools } from "./support.js"

const runtime = (settings: Parameters<typeof testRuntime>[0] = {}) => testRuntime({ tools: allTestTools, ...settings })

/** The real store, whose terminal part writes die (not a refusal the store reports: a defect). */
const dyingTerminalWrites = (file: string) =>
  Layer.effect(
    PartRepo,
    PartRepo.pipe(Effect.map((real) =>
      PartRepo.make({
        ...real,
        complete: () => Effect.die(new Error("the terminal write died")),
        fail: () => Effect.die(new Error("the terminal write died"))
      })
    ))
  ).pipe(Layer.provideMerge(SqliteStoreLive(file))) as unknown as ReturnType<typeof SqliteStoreLive>

/**
 * The real store, whose part inserts land and then wait for `acknowledge` before they return: a
 * group commit's caller waiting for its batch's commit, its write already in.
 */
const slowAcknowledgement = (acknowledge: Effect.Latch) => (file: string) =>
  Layer.effect(
    PartRepo,
    PartRepo.pipe(Effect.map((real) => PartRepo.make({ ...real, insert: (part) => real.insert(part).pipe(Effect.zipLeft(acknowledge.await)) })))
  ).pipe(Layer.provideMerge(SqliteStoreLive(file))) as unknown as ReturnType<typeof SqliteStoreLive>

/** Runs one tool call through the session service (the path `POST /session/:id/tool` takes). */
const startTool = (tool: string, input: unknown, timeout?: number) =>
  Effect.gen(function*() {
    const sessions = yield* SessionService
    const session = yield* sessions.create()
    const run = yield* sessions.runTool(session.id, {
      tool,
      input,
      ...(timeout !== undefined ? { timeout: Duration.millis(timeout) } : {})
    })
    return { ...run, sessionId: session.id }
  })

describe("ToolRunner", () => {
  it.effect("the deadline fires at exactly the configured instant, not before", () =>
    Effect.gen(function*() {
      const { partId } = yield* startTool("forever", {}, 1_000)
      const running = yield* getPart(partId)
      assert.strictEqual(running.status, "running")
      assert.strictEqual(running.deadlineAt! - running.startedAt!, 1_000)
      yield* TestClock.adjust(999)
      assert.strictEqual((yield* getPart(partId)).status, "running")
      yield* TestClock.adjust(1)
      const ended = yield* getPart(partId)
      assert.strictEqual(ended.status, "error")
      assert.deepStrictEqual(ended.error, new ToolTimeout({ timeout: 1_000 }))
      assert.strictEqual(ended.endedAt! - ended.startedAt!, 1_000)
    }).pipe(Effect.provide(runtime())))

  it.effect("the call's own timeout is capped by tool_timeout", () =>
    Effect.gen(function*() {
      const { partId } = yield* startTool("forever", {}, 60_000)
      yield* TestClock.adjust(4_999)
      assert.strictEqual((yield* getPart(partId)).status, "running")
      yield* TestClock.adjust(1)
      assert.deepStrictEqual((yield* getPart(partId)).error, new ToolTimeout({ timeout: 5_000 }))
    }).pipe(Effect.provide(runtime({ settings: { toolTimeout: Option.some(Duration.seconds(5)) } }))))

  it.effect("with no call timeout, tool_timeout is the deadline; a lower call timeout wins", () =>
    Effect.gen(function*() {
      const own = yield* startTool("forever", {})
      const lower = yield* startTool("forever", {}, 2_000)
      yield* TestClock.adjust(2_000)
      assert.deepStrictEqual((yield* getPart(lower.partId)).error, new ToolTimeout({ timeout: 2_000 }))
      assert.strictEqual((yield* getPart(own.partId)).status, "running")
      yield* TestClock.adjust(8_000)
      assert.deepStrictEqual((yield* getPart(own.partId)).error, new ToolTimeout({ timeout: 10_000 }))
    }).pipe(Effect.provide(runtime())))

  it.effect("a finalizer that never finishes still ends the part AbortIncomplete at deadline + grace", () =>
    Effect.gen(function*() {
      const { done, partId, sessionId } = yield* startTool("wedged_finalizer", {}, 1_000)
      yield* TestClock.adjust(1_000)
      assert.strictEqual((yield* getPart(partId)).status, "running")
      yield* TestClock.adjust(999)
      assert.strictEqual((yield* getPart(partId)).status, "running")
      yield* TestClock.adjust(1)
      const ended = yield* getPart(partId)
      assert.deepStrictEqual(ended.error, new AbortIncomplete({ grace: 1_000, cause: "tool timed out after 1s" }))
      assert.strictEqual(ended.endedAt! - ended.startedAt!, 2_000)
      assert.strictEqual(yield* (yield* ToolRunner).leakedFibers, 1)
      yield* done
      // The session is freed: it takes new work.
      assert.strictEqual((yield* (yield* SessionService).get(sessionId)).status, "idle")
    }).pipe(Effect.provide(runtime())))

  it.effect("an uninterruptible effect likewise ends AbortIncomplete at deadline + grace", () =>
    Effect.gen(function*() {
      const { partId } = yield* startTool("uninterruptible", {}, 500)
      yield* TestClock.adjust(1_499)
      assert.strictEqual((yield* getPart(partId)).status, "running")
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* getPart(partId)).error?._tag, "AbortIncomplete")
      assert.strictEqual(yield* (yield* ToolRunner).leakedFibers, 1)
    }).pipe(Effect.provide(runtime())))

  it.effect("a completed tool keeps its output; failures and defects are ToolFailed", () =>
    Effect.gen(function*() {
      const ok = yield* startTool("sleep", { ms: 100 })
      const failed = yield* startTool("fail", { message: "no such file" })
      const crashed = yield* startTool("crash", {})
      yield* TestClock.adjust(100)
      yield* ok.done
      yield* failed.done
      yield* crashed.done
      const okPart = yield* getPart(ok.partId)
      assert.strictEqual(okPart.status, "completed")
      assert.strictEqual(okPart.output, "slept 100")
      assert.deepStrictEqual((yield* getPart(failed.partId)).error, new ToolFailed({ message: "no such file" }))
      assert.deepStrictEqual((yield* getPart(crashed.partId)).error, new ToolFailed({ message: "the tool crashed: boom" }))
    }).pipe(Effect.provide(runtime())))

  it.effect("a cancel ends the part with its reason and keeps the output so far", () =>
    Effect.gen(function*() {
      const { partId, sessionId } = yield* startTool("sleep", { ms: 5_000 })
      yield* TestClock.adjust(10)
      const sessions = yield* SessionService
      const after = yield* sessions.abort(sessionId, new SessionCancelled({ by: "test" }))
      assert.strictEqual(after.status, "cancelled")
      const part = yield* getPart(partId)
      assert.strictEqual(part.status, "error")
      assert.deepStrictEqual(part.error?._tag, "SessionCancelled")
      assert.strictEqual(part.output, "sleeping 5000\n")
    }).pipe(Effect.provide(runtime())))

  it.effect("a completion that arrives after a force-error is a late completion, not a rewrite", () =>
    Effect.gen(function*() {
      const { done, partId } = yield* startTool("sleep", { ms: 1_000 })
      const parts = yield* PartRepo
      assert.isTrue(yield* parts.fail(partId, { reason: new WatchdogStuck({ runningFor: 1, threshold: 1 }), at: 0 }))
      yield* TestClock.adjust(1_000)
      yield* done
      const part = yield* getPart(partId)
      assert.strictEqual(part.status, "error")
      assert.strictEqual(part.error?._tag, "WatchdogStuck")
      const late = yield* (yield* EventLog).list({ type: "part.late_completion" })
      assert.strictEqual(late.length, 1)
      assert.strictEqual(late[0]!.partId, partId)
    }).pipe(Effect.provide(runtime())))

  it.effect("bad tool input is refused before anything runs", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      const error = yield* Effect.flip(sessions.runTool(session.id, { tool: "sleep", input: { ms: "soon" } }))
      assert.strictEqual(error._tag, "InvalidToolInput")
      assert.include(error.message, "ms")
      assert.strictEqual((yield* sessions.parts(session.id)).length, 0)
      assert.strictEqual((yield* sessions.get(session.id)).status, "idle")
    }).pipe(Effect.provide(runtime())))

  it.effect("a terminal write that dies still tells whoever awaits the part how it ended, for a result and for a stop", () =>
    Effect.gen(function*() {
      const runner = yield* ToolRunner
      const session = yield* (yield* SessionService).create()
      const completed = yield* runner.runTool({ sessionId: session.id, tool: testTools.sleep, input: { ms: 10 } })
      const timedOut = yield* runner.runTool({ sessionId: session.id, tool: testTools.forever, input: {}, timeout: Duration.millis(1_000) })
      const waits = yield* Effect.fork(Effect.all([completed.await, timedOut.await]))
      yield* TestClock.adjust(1_000)
      const outcomes = yield* Fiber.poll(waits)
      assert.isTrue(Option.isSome(outcomes), "both awaits returned")
      assert.deepStrictEqual(yield* Fiber.join(waits), [
        { _tag: "Completed", value: "slept 10", output: "slept 10" },
        { _tag: "Failed", reason: new ToolTimeout({ timeout: 1_000 }), output: null }
      ])
      // Neither end is in the store: both are held, to be retried.
      assert.strictEqual((yield* getPart(completed.partId)).status, "running")
      assert.strictEqual((yield* getPart(timedOut.partId)).status, "running")
      assert.strictEqual((yield* (yield* PendingWrites).health).pendingWrites, 2)
      assert.deepStrictEqual(yield* runner.running, [])
    }).pipe(Effect.provide(runtime({ store: dyingTerminalWrites }))))

  it.effect("a cancel claimed before the part's fiber has started ends the part, and its body never runs", () =>
    Effect.gen(function*() {
      const runner = yield* ToolRunner
      const session = yield* (yield* SessionService).create()
      let ran = false
      const noticed = { ...testTools.forever, name: "noticed", run: () => Effect.sync(() => (ran = true)).pipe(Effect.zipRight(Effect.never)) }
      // The fiber is forked, not yet run: nothing yields between the start and the cancel.
      const handle = yield* runner.runTool({ sessionId: session.id, tool: noticed, input: {} })
      assert.isTrue(yield* runner.cancel(handle.partId, new SessionCancelled({ by: "test" })))
      assert.deepStrictEqual(yield* handle.await, { _tag: "Failed", reason: new SessionCancelled({ by: "test" }), output: null })
      assert.deepStrictEqual((yield* getPart(handle.partId)).error, new SessionCancelled({ by: "test" }))
      assert.isFalse(ran)
      assert.deepStrictEqual(yield* runner.running, [])
    }).pipe(Effect.provide(runtime())))

  it.effect("a caller interrupted while its part's `running` row is written leaves no part without a fiber to end it", () => {
    const acknowledge = Effect.runSync(Effect.makeLatch(false))
    return Effect.gen(function*() {
      const runner = yield* ToolRunner
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      const caller = yield* Effect.fork(runner.runTool({ sessionId: session.id, tool: testTools.forever, input: {} }))
      // The row is in the store; the caller waits for its acknowledgement.
      let written = yield* sessions.parts(session.id)
      while (written.length === 0) {
        yield* Effect.yieldNow()
        written = yield* sessions.parts(session.id)
      }
      const interrupted = yield* Effect.fork(Fiber.interrupt(caller))
      yield* Effect.yieldNow()
      yield* acknowledge.open
      yield* Fiber.join(interrupted)
      const partId = written[0]!.id
      // The part has a fiber here, so a cancel (a turn's end, the shutdown) ends it.
      assert.isTrue(yield* runner.isRunningHere(partId))
      assert.isTrue(yield* runner.cancel(partId, new SessionCancelled({ by: "test" })))
      assert.deepStrictEqual((yield* getPart(partId)).error, new SessionCancelled({ by: "test" }))
    }).pipe(Effect.provide(runtime({ store: slowAcknowledgement(acknowledge) })))
  })

  it.effect("a tool whose run throws instead of returning an effect ends ToolFailed at once, as a crash", () =>
    Effect.gen(function*() {
      const runner = yield* ToolRunner
      const session = yield* (yield* SessionService).create()
      const throwing = {
        ...testTools.forever,
        name: "throwing",
        run: (): Effect.Effect<string> => {
          throw new Error("not an effect")
        }
      }
      const handle = yield* runner.runTool({ sessionId: session.id, tool: throwing, input: {} })
      const outcome = yield* handle.await
      assert.deepStrictEqual(outcome, { _tag: "Failed", reason: new ToolFailed({ message: "the tool crashed: not an effect" }), output: null })
      assert.deepStrictEqual((yield* getPart(handle.partId)).error, new ToolFailed({ message: "the tool crashed: not an effect" }))
      assert.deepStrictEqual(yield* runner.running, [])
    }).pipe(Effect.provide(runtime())))

  it.live("the shutdown stops every running part, and each end is written before the store closes", () => {
    const file = tempDb()
    return Effect.gen(function*() {
      const started = yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(runtime({ file }))
        return yield* Effect.gen(function*() {
          const session = yield* (yield* SessionService).create()
          const runner = yield* ToolRunner
          const parts = yield* Effect.forEach(
            [testTools.forever, testTools.wedgedFinalizer, testTools.forever],
            (tool) => runner.runTool({ sessionId: session.id, tool, input: {} })
          )
          // Let the bodies start.
          yield* Effect.sleep("20 millis")
          return parts.map((part) => part.partId)
        }).pipe(Effect.provide(context))
      }))
      // The next start finds them ended by the shutdown, none left for its recovery.
      yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(runtime({ file }))
        yield* Effect.gen(function*() {
          assert.strictEqual((yield* RecoveryComplete).report.orphanedParts, 0)
          const [forever, wedged, other] = yield* Effect.forEach(started, getPart)
          assert.deepStrictEqual(forever!.error, new SessionCancelled({ by: "shutdown" }))
          assert.deepStrictEqual(other!.error, new SessionCancelled({ by: "shutdown" }))
          // Its abort handler never ends: abandoned after the grace, still ended.
          assert.strictEqual(wedged!.error?._tag, "AbortIncomplete")
        }).pipe(Effect.provide(context))
      }))
    })
  }, 30_000)
})
