import { assert, describe, it } from "@effect/vitest"
import { SqliteStoreLive } from "@vigil/store"
import { Chunk, Effect, Fiber, Layer, Stream } from "effect"
import { Events, subscriberBuffer } from "../src/Events.js"
import { tempDb } from "./support.js"

const layer = () => Events.Default.pipe(Layer.provide(SqliteStoreLive(tempDb())))

const report = (n: number) => ({ type: "recovery.completed", report: { n } }) as const

describe("Events", () => {
  it.scoped("a subscriber that falls behind by the buffer gets stream.overflow as its last event; one that reads gets all", () =>
    Effect.gen(function*() {
      const events = yield* Events
      const stalled = yield* events.subscribe
      const reading = yield* events.subscribe
      const all = yield* Effect.fork(Stream.runCollect(Stream.take(reading, 5_000)))
      for (let i = 0; i < 5_000; i++) {
        yield* events.publish(report(i))
        if (i % 50 === 0) yield* Effect.yieldNow()
      }
      const got = Chunk.toReadonlyArray(yield* Fiber.join(all))
      assert.deepStrictEqual(got.map((e) => (e.type === "recovery.completed" ? (e.report as { n: number }).n : -1)), [...Array(5_000).keys()])
      // The stalled one took nothing while 5,000 were published: it holds the first events, then the end.
      const kept = Chunk.toReadonlyArray(yield* Stream.runCollect(stalled))
      assert.strictEqual(kept.length, subscriberBuffer.events + 1)
      assert.deepStrictEqual(kept.at(-1), {
        type: "stream.overflow",
        limit: subscriberBuffer.events,
        message: `this stream fell behind by more than ${subscriberBuffer.events} events or 8 MiB and was ended; reconnect to resume`,
        // The last it delivered is the 4,096th: the rest is in the log, after that id.
        lastId: subscriberBuffer.events
      })
      assert.deepStrictEqual(kept[0], report(0))
    }).pipe(Effect.provide(layer())))
  it.scoped("big events overflow by bytes before the event count: a stalled subscriber holds at most 8 MiB of them", () =>
    Effect.gen(function*() {
      const events = yield* Events
      const stalled = yield* events.subscribe
      const big = "x".repeat(1024 * 1024)
      for (let i = 0; i < 20; i++) yield* events.publish({ type: "recovery.completed", report: { i, big } })
      const kept = Chunk.toReadonlyArray(yield* Stream.runCollect(stalled))
      // 1 MiB and a few bytes each: 7 fit in 8 MiB, the 8th does not.
      assert.strictEqual(kept.length, 8)
      assert.strictEqual(kept.at(-1)?.type, "stream.overflow")
    }).pipe(Effect.provide(layer())))
})
