import { HttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { describeReason } from "@vigil/domain"
import type { ModelRequest, ModelRetry } from "@vigil/runtime"
import { Metrics, SessionService } from "@vigil/runtime"
import { EventLog } from "@vigil/store"
import { Clock, Context, Effect, Fiber, Layer, Metric, TestClock } from "effect"
import { makeOpenAiCompatibleModel } from "../src/OpenAiCompatible.js"
import { ProviderHttpClient } from "../src/Providers.js"
import { retryDelayMillis } from "../src/Retry.js"
import type { Responder } from "./fakeOpenAi.js"
import { chunk, failing, fakeServer, startStream, streamed, textDelta, writeEvent } from "./fakeOpenAi.js"
import { providerConfig, providerRuntime } from "./support.js"

/** Real time, not the TestClock's: how long the loopback server and the client get to act. */
const realWait = (millis: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, millis)))

const waitFor = (condition: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let tries = 0; tries < 1000; tries++) {
      if (condition()) return yield* realWait(20) // and the fiber is asleep on its wait
      yield* realWait(10)
    }
    return yield* Effect.die(new Error(`timed out waiting for ${what}`))
  })

const withHeaders = (status: number, headers: Record<string, string>, body: string): Responder => (res) => {
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(body)
}

/** The connection is cut before a byte of the response: a failure before the first byte. */
const reset: Responder = (res) => {
  res.socket?.destroy()
}

const modelOn = (baseURL: string, options: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const client = Context.get(yield* Layer.build(ProviderHttpClient), HttpClient.HttpClient)
    return makeOpenAiCompatibleModel({ provider: providerConfig(baseURL, options).providers[0]!, model: "fake" }, client)
  })

const recording = (retries: Array<ModelRetry>, deadlineAt?: number): ModelRequest => ({
  messages: [{ role: "user", text: "hello" }],
  tools: [],
  onText: () => Effect.void,
  onRetry: (retry) => Effect.sync(() => retries.push(retry)),
  deadlineAt
})

describe("retries", () => {
  it("the wait: retry-after-ms, else retry-after (seconds or a date), else 2 s × 2ⁿ capped at 30 s", () => {
    assert.strictEqual(retryDelayMillis(1, { "retry-after-ms": "1500", "retry-after": "9" }, 0), 1500)
    assert.strictEqual(retryDelayMillis(1, { "retry-after": "3" }, 0), 3000)
    assert.strictEqual(retryDelayMillis(1, { "retry-after": new Date(10_000).toUTCString() }, 4_000), 6000)
    assert.deepStrictEqual([1, 2, 3, 4, 5, 6].map((n) => retryDelayMillis(n, {}, 0)), [2000, 4000, 8000, 16000, 30000, 30000])
  })

  it.scoped("429, 503, a cut connection and a 500 are retried on their waits, then the answer streams", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([
        withHeaders(429, { "retry-after-ms": "1500" }, JSON.stringify({ error: { message: "slow down" } })),
        withHeaders(503, { "retry-after": "3" }, "overloaded"),
        reset,
        failing(500, "boom", "text/plain"),
        streamed(textDelta("at last"), chunk({}, "stop"))
      ])
      const model = yield* modelOn(fake.baseURL)
      const retries: Array<ModelRetry> = []
      const call = yield* Effect.fork(model.generate(recording(retries)))
      yield* waitFor(() => retries.length === 1, "the first retry")
      yield* TestClock.adjust("1499 millis")
      yield* realWait(100)
      assert.strictEqual(fake.requests.length, 1, "not before the wait the provider asked for")
      yield* TestClock.adjust("1 millis")
      yield* waitFor(() => retries.length === 2, "the second retry")
      yield* TestClock.adjust("3 seconds")
      yield* waitFor(() => retries.length === 3, "the third retry")
      yield* TestClock.adjust("8 seconds")
      yield* waitFor(() => retries.length === 4, "the fourth retry")
      yield* TestClock.adjust("16 seconds")
      const response = yield* Fiber.join(call)
      assert.deepStrictEqual(response, { text: "at last", toolCalls: [] })
      assert.strictEqual(fake.requests.length, 5)
      assert.deepStrictEqual(retries.map((retry) => [retry.attempt, retry.delayMillis]), [[1, 1500], [2, 3000], [3, 8000], [4, 16000]])
      assert.include(retries[0]!.reason, "HTTP 429: slow down")
      assert.include(retries[1]!.reason, "HTTP 503: overloaded")
      assert.include(retries[2]!.reason, "cannot reach")
      assert.include(retries[3]!.reason, "HTTP 500: boom")
    }))

  it.scoped("bounded: past maxRetries the last error is the step's, saying how often it was tried", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([failing(500, "boom", "text/plain"), failing(502, "bad gateway", "text/plain")])
      const model = yield* modelOn(fake.baseURL, { maxRetries: 1 })
      const retries: Array<ModelRetry> = []
      const call = yield* Effect.fork(Effect.either(model.generate(recording(retries))))
      yield* waitFor(() => retries.length === 1, "the retry")
      yield* TestClock.adjust("2 seconds")
      const result = yield* Fiber.join(call)
      assert.strictEqual(result._tag, "Left")
      assert.strictEqual(result._tag === "Left" && result.left.message, "provider openai: HTTP 502: bad gateway (after 1 retry)")
      assert.strictEqual(fake.requests.length, 2)
    }))

  it.scoped("a wait that would pass the step's deadline is not begun; a 400 is not retried", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([
        withHeaders(429, { "retry-after": "10" }, JSON.stringify({ error: { message: "quota" } })),
        failing(400, JSON.stringify({ error: { message: "bad request" } }))
      ])
      const model = yield* modelOn(fake.baseURL)
      const retries: Array<ModelRetry> = []
      const now = yield* Clock.currentTimeMillis
      const late = yield* Effect.either(model.generate(recording(retries, now + 5_000)))
      assert.strictEqual(
        late._tag === "Left" && late.left.message,
        "provider openai: HTTP 429: quota (not retried: the wait of 10 s would pass the step's deadline, 5 s away)"
      )
      const refused = yield* Effect.either(model.generate(recording(retries)))
      assert.strictEqual(refused._tag === "Left" && refused.left.message, "provider openai: HTTP 400: bad request")
      assert.strictEqual(fake.requests.length, 2)
      assert.deepStrictEqual(retries, [])
    }))

  it.scoped("a stream that already gave output is never re-run", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([
        (res) => {
          startStream(res)
          writeEvent(res, textDelta("half"))
          setTimeout(() => res.socket?.destroy(), 20)
        },
        streamed(textDelta("again"), chunk({}, "stop"))
      ])
      const model = yield* modelOn(fake.baseURL)
      const retries: Array<ModelRetry> = []
      const result = yield* Effect.either(model.generate(recording(retries)))
      assert.strictEqual(result._tag, "Left")
      assert.strictEqual(fake.requests.length, 1)
      assert.deepStrictEqual(retries, [])
    }))

  it.scoped("through a session: each retry is in the event log, logged with its reason, and on the step's part", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([
        withHeaders(429, { "retry-after-ms": "1000" }, JSON.stringify({ error: { message: "rate limited" } })),
        withHeaders(429, { "retry-after-ms": "1000" }, JSON.stringify({ error: { message: "still rate limited" } }))
      ])
      yield* Effect.gen(function*() {
        const sessions = yield* SessionService
        const session = yield* sessions.create({})
        const counted = (yield* Metric.value(Metrics.modelRetries)).count
        const turn = yield* Effect.fork(sessions.runTurn(session.id, { text: "hello", model: "openai/fake" }))
        yield* waitFor(() => fake.requests.length === 1, "the first request")
        yield* realWait(200)
        yield* TestClock.adjust("1 second")
        const result = yield* Fiber.join(turn)
        assert.strictEqual(result._tag, "Failed")
        const part = (yield* sessions.parts(session.id)).find((part) => part.kind === "model")!
        assert.strictEqual(
          describeReason(part.error!),
          "model openai/fake: provider openai: HTTP 429: still rate limited (after 1 retry)"
        )
        assert.strictEqual(part.output, "[retry 1 in 1s: provider openai: HTTP 429: rate limited]\n")
        const logged = yield* (yield* EventLog).list({ type: "model.retry" })
        assert.strictEqual(logged.length, 1)
        assert.strictEqual(logged[0]!.partId, part.id)
        assert.deepInclude(logged[0]!.data as object, { attempt: 1, reason: "provider openai: HTTP 429: rate limited", delayMs: 1000 })
        // And counted for `/metrics` (vigil_model_retries_total).
        assert.strictEqual((yield* Metric.value(Metrics.modelRetries)).count - counted, 1)
      }).pipe(Effect.provide(providerRuntime({ config: providerConfig(fake.baseURL, { maxRetries: 1 }) })))
    }))
})
