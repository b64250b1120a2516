import { assert, describe, it } from "@effect/vitest"
import { IdleCancelled } from "@vigil/domain"
import { Context, Duration, Effect, Layer, Option, TestClock } from "effect"
import { SessionService } from "../src/agent/SessionService.js"
import { Activity } from "../src/supervision/Activity.js"
import { allTestTools, tempDb, testRuntime } from "./support.js"

const recorded = (id: Parameters<SessionService["get"]>[0]) =>
  SessionService.pipe(Effect.flatMap((sessions) => sessions.get(id)), Effect.map((session) => session.lastActivityAt))

describe("Activity", () => {
  it.effect("a touch within a second of the last write is held, then written by the trailing write", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const activity = yield* Activity
      const session = yield* sessions.create()
      yield* TestClock.adjust(5_000)
      yield* activity.touch(session.id)
      assert.strictEqual(yield* recorded(session.id), 5_000, "the first touch is written at once")
      yield* TestClock.adjust(300)
      yield* activity.touch(session.id)
      yield* TestClock.adjust(300)
      yield* activity.touch(session.id)
      assert.strictEqual(yield* recorded(session.id), 5_000, "within the second: held, not written")
      assert.strictEqual(activity.latest(session.id, 5_000), 5_600, "but what acts on activity sees it")
      // The trailing write comes a second after the first held touch (5,300), with the newest.
      yield* TestClock.adjust(600)
      assert.strictEqual(yield* recorded(session.id), 5_000)
      yield* TestClock.adjust(100)
      assert.strictEqual(yield* recorded(session.id), 5_600)
      assert.strictEqual(activity.latest(session.id, 5_600), 5_600)
      // A second later the next touch is written at once again.
      yield* TestClock.adjust(1_000)
      yield* activity.touch(session.id)
      assert.strictEqual(yield* recorded(session.id), 7_300)
    }).pipe(Effect.provide(testRuntime())))

  it.effect("what is held when the runtime stops is written at its shutdown", () =>
    Effect.gen(function*() {
      const file = tempDb()
      const id = yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(testRuntime({ file }))
        const sessions = Context.get(context, SessionService)
        const activity = Context.get(context, Activity)
        const session = yield* sessions.create()
        yield* TestClock.adjust(5_000)
        yield* activity.touch(session.id)
        yield* TestClock.adjust(300)
        yield* activity.touch(session.id)
        assert.strictEqual((yield* sessions.get(session.id)).lastActivityAt, 5_000)
        return session.id
      }))
      assert.strictEqual(yield* recorded(id).pipe(Effect.provide(testRuntime({ file }))), 5_300)
    }))

  it.effect("the idle monitor counts held activity: a session whose row is older than idle_timeout but that moved since is left alone", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const activity = yield* Activity
      const session = yield* sessions.create()
      yield* sessions.runTool(session.id, { tool: "forever", input: {} })
      yield* TestClock.adjust(600)
      yield* activity.touch(session.id)
      // 900 ms after the row's activity, past idle_timeout (800 ms); 300 ms after the held one.
      yield* TestClock.adjust(300)
      assert.strictEqual(yield* recorded(session.id), 0)
      assert.strictEqual((yield* sessions.get(session.id)).status, "busy")
      // Idle past the threshold from the held activity: cancelled, and measured from it.
      yield* TestClock.adjust(600)
      const after = yield* sessions.get(session.id)
      assert.strictEqual(after.status, "cancelled")
      assert.deepStrictEqual(after.cancelReason, new IdleCancelled({ idleFor: 900, threshold: 800 }))
    }).pipe(Effect.provide(testRuntime({
      tools: allTestTools,
      settings: {
        watchdogInterval: Option.some(Duration.millis(100)),
        idleTimeout: Option.some(Duration.millis(800)),
        toolTimeout: Option.none(),
        taskTimeout: Option.none()
      }
    }))))
})
