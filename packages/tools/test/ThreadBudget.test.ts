import { assert, describe, it } from "@effect/vitest"
import { PartId, SessionId } from "@vigil/domain"
import { Effect, Option } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { makeFileTools } from "../src/Files.js"
import { ThreadBudget } from "../src/ThreadBudget.js"
import type { ToolContext } from "../src/Tool.js"

/** An operation that holds its slot until the test settles it (a read stalled on a hung mount). */
const stalled = () => {
  let settle!: () => void
  const promise = new Promise<void>((resolve) => (settle = resolve))
  return { task: () => promise, settle }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 10))

describe("ThreadBudget", () => {
  it("holds a slot until the operation ends, even when its caller gave up; a waiting caller that gives up is dropped", async () => {
    const budget = new ThreadBudget(2)
    const [a, b] = [stalled(), stalled()]
    const gaveUp = new AbortController()
    void budget.run(a.task, gaveUp.signal)
    void budget.run(b.task)
    gaveUp.abort()
    assert.strictEqual(budget.inUse, 2, "an abandoned operation still holds its thread")

    let thirdRan = false
    const third = budget.run(async () => {
      thirdRan = true
    })
    const dropped = new AbortController()
    let fourthRan = false
    const fourth = budget.run(async () => {
      fourthRan = true
    }, dropped.signal).then(() => "ran", (error: Error) => error.message)
    dropped.abort(new Error("interrupted"))
    await tick()
    assert.isFalse(thirdRan, "no third thread is taken while two are held")
    assert.strictEqual(await fourth, "interrupted")

    a.settle()
    await third
    assert.isTrue(thirdRan)
    b.settle()
    await tick()
    assert.isFalse(fourthRan, "a dropped caller never runs")
    assert.strictEqual(budget.inUse, 0)
  })
})

describe("file tools on a full budget", () => {
  it.live("a call waiting for a file thread ends at once on interruption, takes none, and runs once one is free", () =>
    Effect.gen(function*() {
      const root = mkdtempSync(join(tmpdir(), "vigil-budget-"))
      writeFileSync(join(root, "a.txt"), "content")
      const budget = new ThreadBudget(2)
      const hung = [stalled(), stalled()]
      for (const op of hung) void budget.run(op.task)
      const tools = makeFileTools({ threads: budget })
      const context: ToolContext = {
        partId: PartId.make("prt_budget"),
        sessionId: SessionId.make("ses_budget"),
        root,
        output: () => Effect.void,
        recordProcess: () => Effect.void,
        event: () => Effect.void
      }
      const started = performance.now()
      const waited = yield* Effect.timeout(tools.read.run({ path: "a.txt" }, context), "200 millis").pipe(Effect.option)
      assert.isTrue(Option.isNone(waited))
      assert.isBelow(performance.now() - started, 5_000, "the interruption did not wait for a thread")
      assert.strictEqual(budget.inUse, 2)
      hung[0]!.settle()
      assert.strictEqual(yield* tools.read.run({ path: "a.txt" }, context), "content")
      hung[1]!.settle()
    }))
})
