import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option } from "effect"
import { OneShot } from "../src/supervision/OneShot.js"

describe("OneShot (a part's end, told once)", () => {
  it.effect("every waiter hears the value told first; a later tell changes nothing; a late waiter hears it at once", () =>
    Effect.gen(function*() {
      const end = new OneShot<string>()
      const waiters = yield* Effect.forEach([1, 2, 3], () => Effect.fork(end.await))
      yield* Effect.yieldNow()
      for (const waiter of waiters) assert.isTrue(Option.isNone(yield* Fiber.poll(waiter)), "nothing told yet")
      assert.isTrue(yield* end.tell("completed"))
      assert.isFalse(yield* end.tell("cancelled"))
      for (const waiter of waiters) assert.strictEqual(yield* Fiber.join(waiter), "completed")
      assert.strictEqual(yield* end.await, "completed")
    }))

  it.effect("an interrupted waiter stops waiting; the others still hear the value", () =>
    Effect.gen(function*() {
      const end = new OneShot<number>()
      const [first, second] = yield* Effect.forEach([1, 2], () => Effect.fork(end.await))
      yield* Effect.yieldNow()
      assert.isTrue(Exit.isInterrupted(yield* Fiber.interrupt(first!)))
      end.unsafeTell(7)
      assert.strictEqual(yield* Fiber.join(second!), 7)
    }))
})
