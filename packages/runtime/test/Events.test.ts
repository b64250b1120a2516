import { assert, describe, it } from "@effect/vitest"
import { makeInstanceId, makeSessionId, newPart, Part, PartId, Session } from "@vigil/domain"
import { EventLog } from "@vigil/store"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Chunk, Duration, Effect, Fiber, Layer, Option, Stream, TestClock } from "effect"
import type { LiveEvent } from "../src/events/Events.js"
import { deltaLimits, endedKept, Events, stateRetention, subscriberBuffer } from "../src/events/Events.js"
import { recoveryReport, tempDb } from "./support.js"

const layer = () => Events.Default.pipe(Layer.provideMerge(SqliteStoreLive(tempDb())))

const report = (n: number) => ({ type: "recovery.completed", report: recoveryReport({ tookMs: n }) }) as const

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
      assert.deepStrictEqual(got.map((e) => (e.type === "recovery.completed" ? e.report.tookMs : -1)), [...Array(5_000).keys()])
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
      for (let i = 0; i < 20; i++) yield* events.publish({ type: "recovery.completed", report: recoveryReport({ tookMs: i, partIds: [PartId.make(big)] }) })
      const kept = Chunk.toReadonlyArray(yield* Stream.runCollect(stalled))
      // 1 MiB and a few bytes each: 7 fit in 8 MiB, the 8th does not.
      assert.strictEqual(kept.length, 8)
      assert.strictEqual(kept.at(-1)?.type, "stream.overflow")
    }).pipe(Effect.provide(layer())))

  it.scoped("deltas are batched for 50 ms, at most 16 KiB each (the offset says what was skipped), and a part's last ones go out before its end", () =>
    Effect.gen(function*() {
      const events = yield* Events
      const live = yield* events.subscribe
      const got: Array<LiveEvent> = []
      yield* Effect.fork(Stream.runForEach(live, (event) => Effect.sync(() => got.push(event))))
      const part = newPart({ sessionId: makeSessionId(), kind: "tool", tool: "bash", input: {}, status: "running", ownerId: makeInstanceId(), createdAt: 0 })
      yield* events.delta(part.id, part.sessionId, "a")
      yield* events.delta(part.id, part.sessionId, "b")
      yield* TestClock.adjust(Duration.millis(49))
      assert.deepStrictEqual(got, [])
      yield* TestClock.adjust(Duration.millis(1))
      yield* Effect.yieldNow().pipe(Effect.repeat({ until: () => got.length > 0 }))
      assert.deepStrictEqual(got, [{ type: "part.delta", partId: part.id, sessionId: part.sessionId, offset: 0, text: "ab" }])
      // 40 KiB within one batch: the newest 16 KiB go, at the offset where they start.
      yield* events.delta(part.id, part.sessionId, "x".repeat(24 * 1024) + "y".repeat(deltaLimits.chars))
      yield* TestClock.adjust(deltaLimits.interval)
      yield* Effect.yieldNow().pipe(Effect.repeat({ until: () => got.length > 1 }))
      assert.deepStrictEqual(got[1], { type: "part.delta", partId: part.id, sessionId: part.sessionId, offset: 2 + 24 * 1024, text: "y".repeat(deltaLimits.chars) })
      // The end flushes what is pending at once, before the final state; later chunks go nowhere.
      yield* events.delta(part.id, part.sessionId, "last")
      yield* events.publish({ type: "part.updated", part: new Part({ ...part, status: "completed", output: "done", endedAt: 1 }, true) })
      yield* Effect.yieldNow().pipe(Effect.repeat({ until: () => got.length > 3 }))
      assert.deepStrictEqual(got[2], { type: "part.delta", partId: part.id, sessionId: part.sessionId, offset: 2 + 40 * 1024, text: "last" })
      assert.strictEqual(got[3]!.type, "part.updated")
      yield* events.delta(part.id, part.sessionId, "late")
      yield* TestClock.adjust(Duration.seconds(1))
      yield* events.flush
      assert.strictEqual(got.length, 4)
    }).pipe(Effect.provide(layer())))

  it.scoped("the ended parts remembered against late chunks are bounded: the oldest is forgotten when one more than the bound ends", () =>
    Effect.gen(function*() {
      const events = yield* Events
      const live = yield* events.subscribe
      const got: Array<LiveEvent> = []
      yield* Effect.fork(Stream.runForEach(live, (event) => Effect.sync(() => got.push(event))))
      const parts = Array.from({ length: endedKept + 1 }, () =>
        newPart({ sessionId: makeSessionId(), kind: "tool", tool: "bash", input: {}, status: "running", ownerId: makeInstanceId(), createdAt: 0 }))
      for (const [i, part] of parts.entries()) {
        yield* events.publish({ type: "part.updated", part: new Part({ ...part, status: "completed", output: "", endedAt: 1 }, true) })
        if (i % 50 === 0) yield* Effect.yieldNow()
      }
      yield* events.flush
      yield* Effect.yieldNow().pipe(Effect.repeat({ until: () => got.length === parts.length }))
      // The first part ended bound + 1 parts ago: forgotten, so its late chunk is sent as any running
      // part's would be; the second is still remembered, and its late chunk goes nowhere.
      yield* events.delta(parts[0]!.id, parts[0]!.sessionId, "late 0")
      yield* events.delta(parts[1]!.id, parts[1]!.sessionId, "late 1")
      yield* TestClock.adjust(deltaLimits.interval)
      yield* events.flush
      // Bounded: with nothing forgotten no delta comes, and the assertion says so.
      yield* Effect.yieldNow().pipe(Effect.repeat({ until: () => got.length > parts.length, times: 1_000 }))
      yield* TestClock.adjust(Duration.seconds(1))
      yield* events.flush
      assert.deepStrictEqual(got.slice(parts.length), [
        { type: "part.delta", partId: parts[0]!.id, sessionId: parts[0]!.sessionId, offset: 0, text: "late 0" }
      ])
    }).pipe(Effect.provide(layer())))

  it.scoped("a subscriber already 256 events behind gets no deltas, so output never pushes it into overflow", () =>
    Effect.gen(function*() {
      const events = yield* Events
      const stalled = yield* events.subscribe
      for (let i = 0; i < deltaLimits.skipBehind; i++) yield* events.publish(report(i))
      yield* events.flush
      const part = newPart({ sessionId: makeSessionId(), kind: "tool", tool: "bash", input: {}, status: "running", ownerId: makeInstanceId(), createdAt: 0 })
      for (let i = 0; i < 100; i++) {
        yield* events.delta(part.id, part.sessionId, `line ${i}\n`)
        yield* TestClock.adjust(deltaLimits.interval)
      }
      yield* events.endStreams
      const kept = Chunk.toReadonlyArray(yield* Stream.runCollect(stalled))
      assert.strictEqual(kept.length, deltaLimits.skipBehind)
      assert.isTrue(kept.every((event) => event.type === "recovery.completed"))
    }).pipe(Effect.provide(layer())))

  it.scoped("the Stream API: a late subscriber gets the last recovery report first; since(id) replays the log after id, then goes on live", () =>
    Effect.gen(function*() {
      const events = yield* Events
      yield* events.publish(report(1))
      const first = yield* events.record({ type: "watchdog.stuck_part", data: { n: 1 } })
      const second = yield* events.record({ type: "idle.cancelled", data: { n: 2 } })
      // Published before anyone subscribed, and still the first thing a subscriber hears.
      const head = yield* Stream.runHead(events.stream)
      assert.deepStrictEqual(Option.map(head, (item) => item.event), Option.some(report(1)))
      assert.strictEqual(Option.getOrThrow(head).id, second.id, "at the current position")

      const resumed = yield* Effect.fork(Stream.runCollect(Stream.take(events.since(first.id), 2)))
      yield* Effect.yieldNow()
      const third = yield* events.record({ type: "part.timeout", data: { n: 3 } })
      const items = Chunk.toReadonlyArray(yield* Fiber.join(resumed))
      assert.deepStrictEqual(items.map((item) => item.id), [second.id, third.id])
      assert.deepStrictEqual(items.map((item) => item.event.type), ["idle.cancelled", "supervision"])
    }).pipe(Effect.provide(layer())))

  it.scoped("a replay reads the log a page at a time: 1,200 events after an id come back each once, in order, then the live ones", () =>
    Effect.gen(function*() {
      const events = yield* Events
      const ids: Array<number> = []
      for (let i = 0; i < 1_200; i++) ids.push((yield* events.record({ type: "test.event", data: { i } })).id)
      const resumed = yield* Effect.fork(Stream.runCollect(Stream.take(events.since(ids[0]! - 1), 1_201)))
      yield* Effect.yieldNow()
      const live = yield* events.record({ type: "test.event", data: { i: "live" } })
      const got = Chunk.toReadonlyArray(yield* Fiber.join(resumed)).map((item) => item.id)
      assert.deepStrictEqual(got, [...ids, live.id])
    }).pipe(Effect.provide(layer())))

  it.scoped("state markers older than the newest 100,000 ids are pruned, and a stream resumed from before them starts with stream.truncated", () =>
    Effect.gen(function*() {
      const events = yield* Events
      const log = yield* EventLog
      const kept = yield* events.record({ type: "watchdog.stuck_part", data: { kept: true } })
      const session = new Session({
        id: makeSessionId(),
        parentId: null,
        parentPartId: null,
        title: "",
        status: "idle",
        cancelReason: null,
        lastActivityAt: 0,
        ownerId: makeInstanceId(),
        createdAt: 0
      })
      for (let i = 0; i < stateRetention + 12_000; i++) yield* events.publish({ type: "session.updated", session })
      yield* events.flush
      const oldest = yield* log.after(0, 2)
      // The supervision event stays; the markers before the window went.
      assert.strictEqual(oldest[0]!.id, kept.id)
      assert.isAbove(oldest[1]!.id, 10_000)
      const first = yield* Stream.runHead(events.since(0))
      assert.strictEqual(Option.getOrThrow(first).event.type, "stream.truncated")
    }).pipe(Effect.provide(layer())), 60_000)
})
