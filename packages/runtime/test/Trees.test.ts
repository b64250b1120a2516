import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { SessionCancelled, SessionId } from "@vigil/domain"
import { Clock, Duration, Effect, Option } from "effect"
import type { LanguageModelShape } from "../src/LanguageModel.js"
import { InstanceLease } from "../src/InstanceLease.js"
import { SessionService } from "../src/SessionService.js"
import { Watchdog } from "../src/Watchdog.js"
import { chainSessionId, seedChain } from "./chains.js"
import { allTestTools, testRuntime } from "./support.js"

const script = (...steps: ReadonlyArray<unknown>) => JSON.stringify(steps)

const runtime = (options: Parameters<typeof testRuntime>[0] = {}) => testRuntime({ tools: allTestTools, ...options })

const counts = (table: "sessions" | "parts") =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql.unsafe<{ status: string; n: number }>(`SELECT status, COUNT(*) AS n FROM ${table} GROUP BY status`)
    return Object.fromEntries(rows.map((row) => [row.status, Number(row.n)]))
  })

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
      const leaf = yield* sql`SELECT cancel_reason FROM sessions WHERE id = ${chainSessionId(deep - 1)}`
      assert.deepStrictEqual(JSON.parse(String(leaf[0]!["cancelReason"] ?? leaf[0]!["cancel_reason"])), { _tag: "SessionCancelled", by: "test" })
    }).pipe(Effect.provide(runtime({ settings: { taskTimeout: Option.some(Duration.hours(2)) } }))), 120_000)

  it.effect("a cycle in the parent links (which creation cannot make) does not hang a scan or an abort", () =>
    Effect.gen(function*() {
      const lease = yield* InstanceLease
      yield* seedChain({ depth: 3, ownerId: lease.id, now: yield* Clock.currentTimeMillis })
      const sql = yield* SqlClient.SqlClient
      yield* sql`UPDATE sessions SET parent_id = ${chainSessionId(2)} WHERE id = ${chainSessionId(0)}`
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
