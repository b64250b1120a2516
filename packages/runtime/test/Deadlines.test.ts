import { assert, describe, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import * as Deadlines from "../src/supervision/Deadlines.js"

/** A queue whose watcher writes down what came due, and when (TestClock time). */
const recording = Effect.gen(function*() {
  const fired: Array<readonly [string, number]> = []
  const deadlines = yield* Deadlines.make((item: string) =>
    Effect.clockWith((clock) => Effect.sync(() => fired.push([item, clock.unsafeCurrentTimeMillis()])))
  )
  return { deadlines, fired }
})

describe("Deadlines", () => {
  it.scoped("each deadline comes due at its instant, in order, whatever order they came in", () =>
    Effect.gen(function*() {
      const { deadlines, fired } = yield* recording
      for (const [item, at] of [["c", 300], ["a", 100], ["d", 300], ["b", 200]] as const) deadlines.add(at, item)
      yield* TestClock.adjust(99)
      assert.deepStrictEqual(fired, [])
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(fired, [["a", 100]])
      yield* TestClock.adjust(200)
      assert.deepStrictEqual(fired.map(([item]) => item).sort(), ["a", "b", "c", "d"])
      assert.deepStrictEqual(fired.slice(0, 2), [["a", 100], ["b", 200]])
      assert.strictEqual(deadlines.size(), 0)
    }))

  it.scoped("a deadline earlier than the one the watcher sleeps to wakes it", () =>
    Effect.gen(function*() {
      const { deadlines, fired } = yield* recording
      deadlines.add(10_000, "late")
      // Let the watcher go to sleep on the late one first.
      yield* TestClock.adjust(1)
      deadlines.add(500, "early")
      yield* TestClock.adjust(499)
      assert.deepStrictEqual(fired, [["early", 500]])
    }))

  it.scoped("a removed deadline never comes due; removing twice, or after it came due, changes nothing", () =>
    Effect.gen(function*() {
      const { deadlines, fired } = yield* recording
      const entries = Array.from({ length: 100 }, (_, i) => deadlines.add(1_000 + (i * 37) % 100, `p${i}`))
      // Out of the middle of the heap, not only its top: every other one.
      for (const entry of entries.filter((_, i) => i % 2 === 0)) deadlines.remove(entry)
      deadlines.remove(entries[0]!)
      assert.strictEqual(deadlines.size(), 50)
      yield* TestClock.adjust(1_100)
      assert.deepStrictEqual(fired.map(([item]) => item).sort(), entries.filter((_, i) => i % 2 === 1).map((entry) => entry.item).sort())
      // Came due in order of their instants.
      const instants = fired.map(([, at]) => at)
      assert.deepStrictEqual(instants, [...instants].sort((a, b) => a - b))
      for (const [item, at] of fired) assert.strictEqual(at, entries.find((entry) => entry.item === item)!.at)
      deadlines.remove(entries[1]!)
      assert.strictEqual(deadlines.size(), 0)
    }))

  it.scoped("a stop that fails is logged and the watcher goes on", () =>
    Effect.gen(function*() {
      const fired: Array<string> = []
      const deadlines = yield* Deadlines.make((item: string) =>
        item === "bad" ? Effect.die(new Error("the stop failed")) : Effect.sync(() => void fired.push(item))
      )
      deadlines.add(100, "bad")
      deadlines.add(200, "good")
      yield* TestClock.adjust(200)
      assert.deepStrictEqual(fired, ["good"])
    }))
})
