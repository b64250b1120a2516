import type { HttpBody } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Events } from "@vigil/runtime"
import { EventLog } from "@vigil/store"
import { Deferred, Duration, Effect, Fiber, Layer, Ref, Stream, TestClock } from "effect"
import { eventStreamResponse, StreamsClosing } from "../src/EventStream.js"

const NoEventLog = Layer.succeed(
  EventLog,
  EventLog.make({ append: () => Effect.succeed(1), list: () => Effect.succeed([]) })
)

const TestLayer = Layer.mergeAll(Events.Default, StreamsClosing.layer).pipe(Layer.provide(NoEventLog))

const report = {
  deadOwners: [],
  orphanedParts: 0,
  sessionsFreed: 0,
  processesKilled: 0,
  partIds: [],
  sessionIds: [],
  tookMs: 1,
  dryRun: false
}

describe("GET /event", () => {
  it.effect("frames each event as `event: <type>` + JSON data with a type, and sends a keep-alive every 15 s", () =>
    Effect.gen(function*() {
      const response = yield* eventStreamResponse
      assert.strictEqual(response.headers["content-type"] ?? (response.body as HttpBody.Stream).contentType, "text/event-stream")
      const chunks = yield* Ref.make<ReadonlyArray<string>>([])
      const decoder = new TextDecoder()
      const reader = yield* (response.body as HttpBody.Stream).stream.pipe(
        Stream.runForEach((chunk) => Ref.update(chunks, (all) => [...all, decoder.decode(chunk)])),
        Effect.fork
      )
      const text = Ref.get(chunks).pipe(Effect.map((all) => all.join("")))
      const waitFor = (needle: string) =>
        text.pipe(Effect.tap(() => Effect.yieldNow()), Effect.repeat({ until: (all) => all.includes(needle) }))

      yield* waitFor(": connected\n\n")
      const events = yield* Events
      yield* events.publish({ type: "recovery.completed", report })
      const framed = yield* waitFor("event: recovery.completed")
      assert.include(framed, `event: recovery.completed\ndata: ${JSON.stringify({ type: "recovery.completed", report })}\n\n`)

      assert.notInclude(yield* text, "keep-alive")
      yield* TestClock.adjust(Duration.seconds(14))
      yield* Effect.yieldNow()
      assert.notInclude(yield* text, "keep-alive")
      yield* TestClock.adjust(Duration.seconds(1))
      const alive = yield* waitFor(": keep-alive\n\n")
      assert.strictEqual(alive.split(": keep-alive").length - 1, 1)
      yield* TestClock.adjust(Duration.seconds(15))
      yield* text.pipe(Effect.tap(() => Effect.yieldNow()), Effect.repeat({ until: (all) => all.split(": keep-alive").length - 1 === 2 }))

      // The server stopping ends the stream, so its connection can close.
      yield* Deferred.succeed(yield* StreamsClosing, undefined)
      yield* Fiber.join(reader)
    }).pipe(Effect.provide(TestLayer)))
})
