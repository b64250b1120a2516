import { HttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { AbortIncomplete, ToolTimeout } from "@vigil/domain"
import type { LanguageModels } from "@vigil/runtime"
import { ModelError, SessionService } from "@vigil/runtime"
import { Cause, Chunk, Context, Duration, Effect, Exit, Fiber, Layer, Option, Schedule, TestClock, TestServices } from "effect"
import type { ServerResponse } from "node:http"
import { makeOpenAiCompatibleModel } from "../src/OpenAiCompatible.js"
import { ProviderHttpClient, ProvidersLayer } from "../src/Providers.js"
import type { Responder } from "./fakeOpenAi.js"
import { chunk, fakeServer, silent, startStream, textDelta, writeEvent } from "./fakeOpenAi.js"
import { providerConfig, providerRuntime } from "./support.js"

/**
 * The time rules of a provider call, on the TestClock: the fake server and the HTTP between are
 * real, the deadlines are virtual, so each boundary is checked exactly (not a moment before, at
 * once at it). Waiting for the real I/O to arrive is done on the live clock.
 */

/** Polls `check` on the live clock (the test clock stands still) until it holds, for at most 5 s. */
const eventually = (check: Effect.Effect<boolean>, what: string) =>
  TestServices.provideWithLive(
    Effect.flatMap(check, (ok) => (ok ? Effect.void : Effect.fail(`not yet: ${what}`))),
    (effect) => effect.pipe(Effect.retry({ schedule: Schedule.spaced(Duration.millis(5)) }), Effect.timeout("5 seconds"))
  ).pipe(Effect.orDie)

/** Gives the fibers woken by a clock move a moment of real time to act, when the test expects nothing to happen. */
const settle = TestServices.provideLive(Effect.sleep(Duration.millis(50)))

/** Timers scheduled to fire at `at` (virtual ms); TestClock keeps fired and cancelled ones too, so it is a count. */
const sleepsAt = (at: number) => Effect.map(TestClock.sleeps(), Chunk.filter((instant) => instant === at)).pipe(Effect.map(Chunk.size))

const joinLive = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  TestServices.provideWithLive(Fiber.await(fiber), Effect.timeout("5 seconds")).pipe(Effect.orDie)

/** A stream the test writes to itself: the response is kept, and nothing more is sent until the test says so. */
const heldOpen = () => {
  const held: { res: ServerResponse | undefined } = { res: undefined }
  const responder: Responder = (res) => {
    startStream(res)
    held.res = res
  }
  return { held, responder }
}

describe("provider deadlines, on the TestClock", () => {
  it.scoped("inactivity: silence for the timeout fails the call, not a moment before; each chunk starts it again", () =>
    Effect.gen(function*() {
      const { held, responder } = heldOpen()
      const fake = yield* fakeServer([responder])
      const settings = providerConfig(fake.baseURL, { inactivityTimeout: 300 }).providers[0]!
      const client = Context.get(yield* Layer.build(ProviderHttpClient), HttpClient.HttpClient)
      const model = makeOpenAiCompatibleModel({ provider: settings, model: "fake" }, client)

      const texts: Array<string> = []
      /** How many timers were due 300 ms after the last text came: one more is the wait for the next chunk. */
      let timersAtText = 0
      const dueAfterSilence = Effect.flatMap(TestClock.currentTimeMillis, (now) => sleepsAt(now + 300))
      const call = yield* Effect.fork(
        model.generate({
          messages: [{ role: "user", text: "hello" }],
          tools: [],
          onText: (text) =>
            Effect.map(dueAfterSilence, (count) => {
              timersAtText = count
              texts.push(text)
            })
        })
      )
      const nextChunk = (text: string, count: number) =>
        Effect.gen(function*() {
          writeEvent(held.res!, textDelta(text))
          yield* eventually(Effect.sync(() => texts.length === count), `text ${count} to arrive`)
          yield* eventually(Effect.map(dueAfterSilence, (due) => due > timersAtText), "the stream to wait for the next chunk")
        })
      yield* eventually(Effect.sync(() => held.res !== undefined), "the request to reach the fake")
      yield* nextChunk("partial ", 1)

      // 200 ms of silence, then a chunk: the silence starts over.
      yield* TestClock.adjust(Duration.millis(200))
      yield* settle
      assert.isTrue(Option.isNone(yield* Fiber.poll(call)), "still streaming after 200 ms of silence")
      yield* nextChunk("more ", 2)
      yield* TestClock.adjust(Duration.millis(299))
      yield* settle
      // 499 ms since the call started, 299 since the last chunk: not inactive.
      assert.isTrue(Option.isNone(yield* Fiber.poll(call)), "still streaming 299 ms after the last chunk")

      yield* TestClock.adjust(Duration.millis(1))
      const exit = yield* joinLive(call)
      const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
      assert.isTrue(Option.isSome(failure), `failed with a ModelError: ${String(exit)}`)
      assert.instanceOf(Option.getOrThrow(failure), ModelError)
      assert.strictEqual(
        Option.getOrThrow(failure).message,
        "provider openai: the provider sent nothing for 300 ms (provider.openai.options.inactivityTimeout)"
      )
      assert.deepStrictEqual(texts, ["partial ", "more "])
      // The request is dropped, not left open on the server.
      yield* eventually(Effect.sync(() => fake.disconnects() === 1), "the client to hang up")
    }))

  it.scoped("inactivity: a chunk stream that ends in time completes, however long it took in all", () =>
    Effect.gen(function*() {
      const { held, responder } = heldOpen()
      const fake = yield* fakeServer([responder])
      const settings = providerConfig(fake.baseURL, { inactivityTimeout: 300 }).providers[0]!
      const client = Context.get(yield* Layer.build(ProviderHttpClient), HttpClient.HttpClient)
      const model = makeOpenAiCompatibleModel({ provider: settings, model: "fake" }, client)
      const texts: Array<string> = []
      const call = yield* Effect.fork(
        model.generate({ messages: [{ role: "user", text: "hello" }], tools: [], onText: (text) => Effect.sync(() => texts.push(text)) })
      )
      yield* eventually(Effect.sync(() => held.res !== undefined), "the request to reach the fake")
      for (let index = 0; index < 5; index++) {
        writeEvent(held.res!, textDelta(`${index}`))
        yield* eventually(Effect.sync(() => texts.length === index + 1), `chunk ${index}`)
        yield* TestClock.adjust(Duration.millis(250))
      }
      writeEvent(held.res!, chunk({}, "stop"))
      writeEvent(held.res!, "[DONE]")
      held.res!.end()
      const exit = yield* joinLive(call)
      assert.strictEqual(exit._tag, "Success", String(exit))
      if (exit._tag === "Success") assert.deepStrictEqual(exit.value, { text: "01234", toolCalls: [] })
    }))

  it.scoped("inactivity: a server that never sends the response head is silent too", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([silent])
      const settings = providerConfig(fake.baseURL, { inactivityTimeout: 300 }).providers[0]!
      const client = Context.get(yield* Layer.build(ProviderHttpClient), HttpClient.HttpClient)
      const model = makeOpenAiCompatibleModel({ provider: settings, model: "fake" }, client)
      const call = yield* Effect.fork(model.generate({ messages: [{ role: "user", text: "hello" }], tools: [], onText: () => Effect.void }))
      yield* eventually(Effect.sync(() => fake.requests.length === 1), "the request to reach the fake")
      yield* eventually(Effect.map(sleepsAt(300), (n) => n > 0), "the wait for the response head")
      yield* TestClock.adjust(Duration.millis(299))
      yield* settle
      assert.isTrue(Option.isNone(yield* Fiber.poll(call)), "still waiting 299 ms in")
      yield* TestClock.adjust(Duration.millis(1))
      const exit = yield* joinLive(call)
      const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
      assert.strictEqual(
        Option.getOrUndefined(failure)?.message,
        "provider openai: the provider sent nothing for 300 ms (provider.openai.options.inactivityTimeout)"
      )
      yield* eventually(Effect.sync(() => fake.disconnects() === 1), "the client to hang up")
    }))

  /**
   * The step's deadline and the abort grace, through the whole supervision layer: the model step
   * is a part with `tool_timeout` 500 ms, and the abort grace is 300 ms.
   */
  const deadlineRuntime = (baseURL: string, models?: Layer.Layer<LanguageModels>) =>
    providerRuntime({
      config: providerConfig(baseURL, { inactivityTimeout: false }),
      settings: { toolTimeout: Option.some(Duration.millis(500)), abortGrace: Duration.millis(300) },
      ...(models !== undefined ? { models } : {})
    })

  const startTurn = Effect.gen(function*() {
    const sessions = yield* SessionService
    const session = yield* sessions.create({})
    const turn = yield* Effect.fork(sessions.runTurn(session.id, { text: "hello", model: "openai/fake" }))
    const status = Effect.map(sessions.get(session.id), (current) => current.status).pipe(Effect.orDie)
    return { sessions, session, turn, status }
  })

  it.scoped("a server that ignores the disconnect: the session is free at the step's deadline, without the grace", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([silent])
      yield* Effect.gen(function*() {
        const { session, sessions, status, turn } = yield* startTurn
        yield* eventually(Effect.sync(() => fake.requests.length === 1), "the request to reach the fake")
        yield* eventually(Effect.map(sleepsAt(500), (n) => n > 0), "the step's deadline to be set")

        yield* TestClock.adjust(Duration.millis(499))
        yield* settle
        assert.strictEqual(yield* status, "busy")
        assert.strictEqual(fake.disconnects(), 0)

        // At the deadline the request is aborted; the clock never reaches the end of the grace (800).
        yield* TestClock.adjust(Duration.millis(1))
        const exit = yield* joinLive(turn)
        assert.deepStrictEqual(Exit.isSuccess(exit) ? exit.value : exit, { _tag: "Failed", reason: new ToolTimeout({ timeout: 500 }) })
        assert.strictEqual(yield* status, "error")
        assert.strictEqual(yield* TestClock.currentTimeMillis, 500)
        const model = (yield* sessions.parts(session.id)).find((part) => part.kind === "model")!
        assert.deepStrictEqual([model.status, model.error], ["error", new ToolTimeout({ timeout: 500 })])
        // The fake kept its end open; the client hung up.
        yield* eventually(Effect.sync(() => fake.disconnects() === 1), "the client to hang up")
      }).pipe(Effect.provide(deadlineRuntime(fake.baseURL)))
    }))

  it.scoped("a client that ignores cancellation: the session is free at deadline + grace, not a moment before (AbortIncomplete)", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([silent])
      // The worst client: its request cannot be interrupted at all.
      const deafClient = Layer.effect(
        HttpClient.HttpClient,
        Effect.map(HttpClient.HttpClient, (client) => HttpClient.transform(client, (effect) => Effect.uninterruptible(effect)))
      ).pipe(Layer.provide(ProviderHttpClient))
      const config = providerConfig(fake.baseURL, { inactivityTimeout: false })
      yield* Effect.gen(function*() {
        const { session, sessions, status, turn } = yield* startTurn
        yield* eventually(Effect.sync(() => fake.requests.length === 1), "the request to reach the fake")
        yield* eventually(Effect.map(sleepsAt(500), (n) => n > 0), "the step's deadline to be set")

        yield* TestClock.adjust(Duration.millis(500))
        // The deadline fired and the interrupt was sent; the runner now waits out the grace.
        yield* eventually(Effect.map(sleepsAt(800), (n) => n > 0), "the abort grace to start")
        assert.strictEqual(yield* status, "busy")
        yield* TestClock.adjust(Duration.millis(299))
        yield* settle
        assert.strictEqual(yield* status, "busy", "still within the grace")

        yield* TestClock.adjust(Duration.millis(1))
        const exit = yield* joinLive(turn)
        const abandoned = new AbortIncomplete({ grace: 300, cause: "tool timed out after 500ms" })
        assert.deepStrictEqual(Exit.isSuccess(exit) ? exit.value : exit, { _tag: "Failed", reason: abandoned })
        assert.strictEqual(yield* status, "error")
        const model = (yield* sessions.parts(session.id)).find((part) => part.kind === "model")!
        assert.deepStrictEqual([model.status, model.error], ["error", abandoned])
        // The request really was left open: this is the grace path, not a clean abort.
        assert.strictEqual(fake.disconnects(), 0)
      }).pipe(Effect.provide(deadlineRuntime(fake.baseURL, ProvidersLayer(config).pipe(Layer.provide(deafClient)))))
    }))
})
