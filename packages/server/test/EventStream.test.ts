import type { HttpBody } from "@effect/platform"
import { HttpServerRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Events } from "@vigil/runtime"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Duration, Effect, Fiber, Layer, Ref, Stream, TestClock } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { eventStreamResponse, StreamsClosing } from "../src/EventStream.js"

const TestLayer = () =>
  StreamsClosing.layer.pipe(
    Layer.provideMerge(Events.Default),
    Layer.provideMerge(SqliteStoreLive(join(mkdtempSync(join(tmpdir(), "vigil-sse-")), "vigil.db"))),
    Layer.merge(Layer.succeed(HttpServerRequest.HttpServerRequest, HttpServerRequest.fromWeb(new Request("http://localhost/event"))))
  )

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

      yield* waitFor(": connected\n")
      const events = yield* Events
      yield* events.publish({ type: "recovery.completed", report })
      const framed = yield* waitFor("event: recovery.completed")
      assert.match(framed, /^: connected\nretry: 1000\n\n/)
      assert.match(framed, new RegExp(`id: \\d+\nevent: recovery.completed\ndata: ${JSON.stringify({ type: "recovery.completed", report }).replace(/[[\]{}]/g, "\\$&")}\n\n`))

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
      yield* events.endStreams
      yield* Fiber.join(reader)
    }).pipe(Effect.provide(TestLayer())))
})
