import { assert, describe, it } from "@effect/vitest"
import type { Settings as SettingsShape } from "@vigil/domain"
import { IdleCancelled } from "@vigil/domain"
import { EventLog } from "@vigil/store"
import { Duration, Effect, Fiber, Option, TestClock } from "effect"
import { SessionService } from "../src/agent/SessionService.js"
import { allTestTools, testRuntime } from "./support.js"

const script = (...steps: ReadonlyArray<unknown>) => JSON.stringify(steps)

const runtime = (settings: Partial<SettingsShape> = {}) =>
  testRuntime({
    tools: allTestTools,
    settings: {
      watchdogInterval: Option.some(Duration.seconds(1)),
      idleTimeout: Option.some(Duration.seconds(30)),
      // Deadlines off, so only the idle rule can end anything here.
      toolTimeout: Option.none(),
      taskTimeout: Option.none(),
      ...settings
    }
  })

const idleEvents = EventLog.pipe(Effect.flatMap((log) => log.list({ type: "idle.cancelled" })))

describe("IdleMonitor", () => {
  it.effect("a busy session with no activity: untouched at the threshold, cancelled within one interval past it", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      const run = yield* sessions.runTool(session.id, { tool: "forever", input: {} })
      yield* TestClock.adjust(30_000)
      assert.strictEqual((yield* sessions.get(session.id)).status, "busy")
      yield* TestClock.adjust(1_000)
      const after = yield* sessions.get(session.id)
      assert.strictEqual(after.status, "cancelled")
      assert.deepStrictEqual(after.cancelReason, new IdleCancelled({ idleFor: 31_000, threshold: 30_000 }))
      const part = (yield* sessions.parts(session.id)).find((p) => p.id === run.partId)!
      assert.deepStrictEqual(part.error, new IdleCancelled({ idleFor: 31_000, threshold: 30_000 }))
      const logged = yield* idleEvents
      assert.strictEqual(logged.length, 1)
      assert.deepStrictEqual(logged[0]!.reason, new IdleCancelled({ idleFor: 31_000, threshold: 30_000 }))
    }).pipe(Effect.provide(runtime())))

  it.effect("progress keeps a session alive", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      const steps = Array.from({ length: 6 }, () => ({ tool: "sleep", input: { ms: 20_000 } }))
      const fiber = yield* Effect.fork(sessions.runTurn(session.id, { text: script(...steps, { text: "done" }) }))
      for (let i = 0; i < 121; i++) yield* TestClock.adjust(1_000)
      assert.deepStrictEqual(yield* Fiber.join(fiber), { _tag: "Completed", text: "done" })
      assert.strictEqual((yield* idleEvents).length, 0)
    }).pipe(Effect.provide(runtime())))

  it.effect("an idle waiting child is cancelled, its parent's task ends with that error, and the parent goes on", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const root = yield* sessions.create()
      const child = script({ tool: "ask", input: { question: "nobody will answer" } })
      const fiber = yield* Effect.fork(sessions.runTurn(root.id, { text: script({ tool: "task", input: { prompt: child } }, { text: "parent goes on" }) }))
      yield* TestClock.adjust(0)
      const waiting = (yield* sessions.list()).find((session) => session.parentId === root.id)!
      assert.strictEqual((yield* sessions.get(waiting.id)).status, "waiting")
      for (let i = 0; i < 31; i++) yield* TestClock.adjust(1_000)
      assert.deepStrictEqual(yield* Fiber.join(fiber), { _tag: "Completed", text: "parent goes on" })
      const cancelled = yield* sessions.get(waiting.id)
      assert.strictEqual(cancelled.status, "cancelled")
      assert.strictEqual(cancelled.cancelReason?._tag, "IdleCancelled")
      const task = (yield* sessions.parts(root.id)).find((part) => part.tool === "task")!
      assert.strictEqual(task.error?._tag, "IdleCancelled")
      assert.strictEqual((yield* sessions.get(root.id)).status, "idle")
      // Only the leaf was cancelled.
      assert.deepStrictEqual((yield* idleEvents).map((event) => event.sessionId), [waiting.id])
    }).pipe(Effect.provide(runtime())))

  it.effect("a session at rest for 10× idle_timeout is untouched", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      yield* sessions.runTurn(session.id, { text: script({ text: "hello" }) })
      for (let i = 0; i < 30; i++) yield* TestClock.adjust(10_000)
      const after = yield* sessions.get(session.id)
      assert.strictEqual(after.status, "idle")
      assert.strictEqual((yield* idleEvents).length, 0)
    }).pipe(Effect.provide(runtime())))

  it.effect("with idle_timeout off, a silent busy session is never cancelled", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      yield* sessions.runTool(session.id, { tool: "forever", input: {} })
      for (let i = 0; i < 30; i++) yield* TestClock.adjust(10_000)
      assert.strictEqual((yield* sessions.get(session.id)).status, "busy")
      assert.strictEqual((yield* idleEvents).length, 0)
    }).pipe(Effect.provide(runtime({ idleTimeout: Option.none() }))))
})
