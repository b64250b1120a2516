import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { SessionCancelled, SessionId } from "@vigil/domain"
import { Clock, Duration, Effect, Layer, Option } from "effect"
import type { LanguageModelShape } from "../src/agent/LanguageModel.js"
import { InstanceLease } from "../src/recovery/InstanceLease.js"
import { SessionService } from "../src/agent/SessionService.js"
import { RecoveryComplete } from "../src/recovery/StartupRecovery.js"
import { Watchdog } from "../src/supervision/Watchdog.js"
import { chainSessionId, seedChain } from "./chains.js"
import { allTestTools, tempDb, testRuntime } from "./support.js"

const script = (...steps: ReadonlyArray<unknown>) => JSON.stringify(steps)

const runtime = (options: Parameters<typeof testRuntime>[0] = {}) => testRuntime({ tools: allTestTools, ...options })

const counts = (table: "sessions" | "parts") =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql.unsafe<{ status: string; n: number }>(`SELECT status, COUNT(*) AS n FROM vigil_${table} GROUP BY status`)
    return Object.fromEntries(rows.map((row) => [row.status, Number(row.n)]))
  })

/** Calls `task` until that is refused (the depth bound), then asks; answers once it has a result. */
const deepModel: LanguageModelShape = {
  name: "deep",
  generate: (request) =>
    Effect.sync(() => {
      const last = request.messages[request.messages.length - 1]
      if (last?.role === "user") return { text: "", toolCalls: [{ id: "call_task", name: "task", input: { prompt: "deeper" } }] }
      if (last?.role === "tool" && last.name === "task" && last.isError) {
        return { text: "", toolCalls: [{ id: "call_ask", name: "ask", input: { question: "go on?" } }] }
      }
      return { text: "done", toolCalls: [] }
    })
}

/** Beyond the 12,000 levels at which the recursive subtree walk overflowed the stack. */
const deep = 20_000

describe("deep, cyclic and recursive session trees", () => {
  it.effect(`a chain ${deep.toLocaleString("en-US")} sessions deep: a watchdog scan finds nothing stuck, and an abort of the root ends it all`, () =>
    Effect.gen(function*() {
      const lease = yield* InstanceLease
      yield* seedChain({ depth: deep, ownerId: lease.id, now: yield* Clock.currentTimeMillis })
      const scan = yield* (yield* Watchdog).scan
      assert.strictEqual(scan.stuckParts, 0)
      const reason = new SessionCancelled({ by: "test" })
      const root = yield* (yield* SessionService).abort(SessionId.make(chainSessionId(0)), reason)
      assert.strictEqual(root.status, "cancelled")
      assert.deepStrictEqual(yield* counts("sessions"), { cancelled: deep })
      assert.deepStrictEqual(yield* counts("parts"), { error: deep })
      const sql = yield* SqlClient.SqlClient
      const leaf = yield* sql`SELECT cancel_reason FROM vigil_sessions WHERE id = ${chainSessionId(deep - 1)}`
      assert.deepStrictEqual(JSON.parse(String(leaf[0]!["cancelReason"] ?? leaf[0]!["cancel_reason"])), { _tag: "SessionCancelled", by: "test" })
    }).pipe(Effect.provide(runtime({ settings: { taskTimeout: Option.some(Duration.hours(2)) } }))), 120_000)

  it.effect("a cycle in the parent links (which creation cannot make) does not hang a scan or an abort", () =>
    Effect.gen(function*() {
      const lease = yield* InstanceLease
      yield* seedChain({ depth: 3, ownerId: lease.id, now: yield* Clock.currentTimeMillis })
      const sql = yield* SqlClient.SqlClient
      yield* sql`UPDATE vigil_sessions SET parent_id = ${chainSessionId(2)} WHERE id = ${chainSessionId(0)}`
      assert.strictEqual((yield* (yield* Watchdog).scan).stuckParts, 0)
      yield* (yield* SessionService).abort(SessionId.make(chainSessionId(1)), new SessionCancelled({ by: "test" }))
      assert.deepStrictEqual(yield* counts("sessions"), { cancelled: 3 })
      assert.deepStrictEqual(yield* counts("parts"), { error: 3 })
    }).pipe(Effect.provide(runtime({ settings: { taskTimeout: Option.some(Duration.hours(2)) } }))))

  it.effect("a task past experimental.max_task_depth ends ToolFailed with a message the model sees; the turn goes on", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const root = yield* sessions.create()
      const tooDeep = script({ text: "never runs" })
      const grandchild = script({ tool: "task", input: { prompt: tooDeep } }, { text: "grandchild done" })
      const child = script({ tool: "task", input: { prompt: grandchild } }, { text: "child done" })
      const result = yield* sessions.runTurn(root.id, { text: script({ tool: "task", input: { prompt: child } }, { text: "root done" }) })
      assert.deepStrictEqual(result, { _tag: "Completed", text: "root done" })
      const all = yield* sessions.list()
      assert.strictEqual(all.length, 3, "root, child and grandchild; no third level")
      const leaf = all.find((session) => session.title !== "" && all.every((other) => other.parentId !== session.id))!
      const refused = (yield* sessions.parts(leaf.id)).find((part) => part.tool === "task")!
      assert.strictEqual(refused.status, "error")
      assert.strictEqual(refused.error?._tag, "ToolFailed")
      assert.include(refused.error?._tag === "ToolFailed" ? refused.error.message : "", "experimental.max_task_depth (2)")
      // The grandchild's model saw the refusal and finished its turn.
      assert.include((yield* sessions.parts(leaf.id)).map((part) => part.output).join("\n"), "grandchild done")
    }).pipe(Effect.provide(runtime({ settings: { maxTaskDepth: 2 } }))))

  it.live("a tree of 300 real turns (each waiting on its task, the leaf on an ask) ends at once on the abort of its root", () => {
    const model = deepModel
    const levels = 300
    return Effect.gen(function*() {
      const sessions = yield* SessionService
      const root = yield* sessions.create()
      yield* sessions.prompt(root.id, { text: "go", model: "deep" })
      let waiting = 0
      for (let i = 0; i < 600 && waiting === 0; i++) {
        yield* Effect.sleep("50 millis")
        waiting = (yield* counts("sessions"))["waiting"] ?? 0
      }
      assert.strictEqual(waiting, 1, "the leaf waits on its ask")
      assert.strictEqual((yield* counts("sessions"))["busy"], levels)
      const reason = new SessionCancelled({ by: "test" })
      const ended = yield* sessions.abort(root.id, reason)
      assert.strictEqual(ended.status, "cancelled")
      assert.deepStrictEqual(yield* counts("sessions"), { cancelled: levels + 1 })
      const parts = yield* counts("parts")
      assert.isUndefined(parts["running"])
      assert.isUndefined(parts["pending"])
      for (const session of yield* sessions.list({ limit: 1_000 })) {
        assert.deepStrictEqual(session.cancelReason, reason, `session ${session.title}`)
        assert.isFalse(yield* sessions.isTurnRunningHere(session.id))
      }
    }).pipe(Effect.provide(runtime({ models: [model], settings: { maxTaskDepth: levels } })))
  }, 120_000)

  it.live("the shutdown of a tree of 200 real turns ends each one once (no walk per level), all recorded", () => {
    const levels = 200
    const file = tempDb()
    return Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(runtime({ file, models: [deepModel], settings: { maxTaskDepth: levels } }))
        yield* Effect.gen(function*() {
          const sessions = yield* SessionService
          const root = yield* sessions.create()
          yield* sessions.prompt(root.id, { text: "go", model: "deep" })
          for (let i = 0; i < 600 && ((yield* counts("sessions"))["waiting"] ?? 0) === 0; i++) yield* Effect.sleep("50 millis")
          assert.strictEqual((yield* counts("sessions"))["busy"], levels)
        }).pipe(Effect.provide(context))
      }))
      // What the shutdown left, read by the next start (its recovery finds nothing to rescue).
      yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(runtime({ file }))
        yield* Effect.gen(function*() {
          assert.strictEqual((yield* RecoveryComplete).report.orphanedParts, 0)
          assert.deepStrictEqual(yield* counts("sessions"), { cancelled: levels + 1 })
          const parts = yield* counts("parts")
          assert.isUndefined(parts["running"])
          for (const session of yield* (yield* SessionService).list({ limit: 1_000 })) {
            assert.deepStrictEqual(session.cancelReason, new SessionCancelled({ by: "shutdown" }))
          }
        }).pipe(Effect.provide(context))
      }))
    })
  }, 120_000)

  it.effect("a model that always calls task stops at the default depth bound (8 levels)", () => {
    // Calls `task` until the result of its call comes back, then answers with that result.
    const recursive: LanguageModelShape = {
      name: "recursive",
      generate: (request) =>
        Effect.sync(() => {
          const last = request.messages[request.messages.length - 1]
          return last?.role === "tool"
            ? { text: `below: ${last.output.slice(0, 200)}`, toolCalls: [] }
            : { text: "", toolCalls: [{ id: `call_${request.messages.length}`, name: "task", input: { prompt: "again" } }] }
        })
    }
    return Effect.gen(function*() {
      const sessions = yield* SessionService
      const root = yield* sessions.create()
      const result = yield* sessions.runTurn(root.id, { text: "go", model: "recursive" })
      assert.strictEqual(result._tag, "Completed")
      assert.strictEqual((yield* sessions.list()).length, 9, "the root and 8 levels of sub-agents")
      assert.include(result._tag === "Completed" ? result.text : "", "below: below:")
    }).pipe(Effect.provide(runtime({ models: [recursive] })))
  })
})
