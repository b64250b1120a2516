import { HttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import type { Part } from "@vigil/domain"
import { AbortIncomplete, describeReason, ToolTimeout } from "@vigil/domain"
import { SessionService } from "@vigil/runtime"
import { Context, Duration, Effect, Fiber, Layer, Option, Schedule } from "effect"
import { makeOpenAiCompatibleModel } from "../src/OpenAiCompatible.js"
import { ProviderHttpClient, ProvidersLayer } from "../src/Providers.js"
import type { Responder } from "./fakeOpenAi.js"
import {
  chunk,
  closedPort,
  failing,
  fakeServer,
  silent,
  startStream,
  streamed,
  textDelta,
  toolDelta,
  writeEvent
} from "./fakeOpenAi.js"
import { providerConfig, providerRuntime, runOneTurn, testKey } from "./support.js"

/** The one model step of a turn that failed, and the text of its error. */
const failedModelPart = (parts: ReadonlyArray<Part>) => {
  const models = parts.filter((part) => part.kind === "model")
  const part = models[models.length - 1]!
  assert.strictEqual(part.status, "error")
  return part
}

const waitUntil = (condition: () => boolean, within: Duration.DurationInput) =>
  Effect.suspend(() => (condition() ? Effect.void : Effect.fail("not yet" as const))).pipe(
    Effect.retry({ schedule: Schedule.spaced(Duration.millis(10)) }),
    Effect.timeout(within),
    Effect.orDie
  )

describe("OpenAI-compatible provider", () => {
  it.scopedLive("a streamed answer with a tool call runs through the agent loop to the final text", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([
        streamed(
          chunk({ role: "assistant", content: "" }),
          textDelta("Let me "),
          textDelta("check."),
          toolDelta(0, { id: "call_abc", name: "echo", arguments: "" }),
          toolDelta(0, { arguments: "{\"te" }),
          toolDelta(0, { arguments: "xt\": \"hi\"}" }),
          chunk({}, "tool_calls")
        ),
        streamed(textDelta("All "), textDelta("done."), chunk({}, "stop"))
      ])
      const { parts, result, session } = yield* runOneTurn("say hi through echo").pipe(
        Effect.provide(providerRuntime({ config: providerConfig(fake.baseURL) }))
      )
      assert.deepStrictEqual(result, { _tag: "Completed", text: "All done." })
      assert.strictEqual(session.status, "idle")

      assert.strictEqual(fake.requests.length, 2)
      const [first, second] = fake.requests
      assert.strictEqual(first!.path, "/v1/chat/completions")
      assert.strictEqual(first!.headers.authorization, `Bearer ${testKey}`)
      assert.strictEqual(first!.body.model, "fake")
      assert.strictEqual(first!.body.stream, true)
      assert.deepStrictEqual(first!.body.messages, [{ role: "user", content: "say hi through echo" }])
      const echo = first!.body.tools?.find((tool) => tool.function.name === "echo")
      assert.isDefined(echo)
      assert.strictEqual(echo!.type, "function")
      assert.deepInclude(echo!.function.parameters as object, { type: "object", required: ["text"] })

      // The second request carries the call and its result, tied by the provider's own call id.
      assert.deepStrictEqual(second!.body.messages, [
        { role: "user", content: "say hi through echo" },
        {
          role: "assistant",
          content: "Let me check.",
          tool_calls: [{ id: "call_abc", type: "function", function: { name: "echo", arguments: "{\"text\":\"hi\"}" } }]
        },
        { role: "tool", tool_call_id: "call_abc", content: "echo: hi" }
      ])

      assert.deepStrictEqual(
        parts.map((part) => [part.kind, part.tool, part.status, part.output]),
        [
          ["prompt", "", "completed", "say hi through echo"],
          ["model", "openai/fake", "completed", "Let me check.\n→ echo({\"text\":\"hi\"})"],
          ["text", "", "completed", "Let me check."],
          ["tool", "echo", "completed", "echo: hi"],
          ["model", "openai/fake", "completed", "All done."],
          ["text", "", "completed", "All done."]
        ]
      )
      assert.strictEqual(parts.find((part) => part.kind === "tool")!.callId, "call_abc")
    }))

  it.scopedLive("a stream that stops mid-way and never closes ends by the inactivity timeout", () =>
    Effect.gen(function*() {
      const stall: Responder = (res) => {
        startStream(res)
        writeEvent(res, textDelta("partial "))
      }
      const fake = yield* fakeServer([stall, silent])
      const layer = providerRuntime({ config: providerConfig(fake.baseURL, { inactivityTimeout: 300 }) })
      const started = Date.now()
      const midStream = yield* runOneTurn("hello").pipe(Effect.provide(layer))
      const took = Date.now() - started
      assert.isBelow(took, 3_000)
      assert.isAtLeast(took, 300)
      const expected = "model openai/fake: provider openai: the provider sent nothing for 300 ms"
      assert.strictEqual(midStream.result._tag, "Failed")
      assert.strictEqual(midStream.session.status, "error")
      assert.include(describeReason(midStream.session.cancelReason!), expected)
      const part = failedModelPart(midStream.parts)
      assert.include(describeReason(part.error!), expected)
      assert.strictEqual(part.output, "partial ")
      // The request was dropped, not left open.
      yield* waitUntil(() => fake.disconnects() >= 1, "1 second")

      // A server that never sends the response head is silent too.
      const beforeHead = yield* runOneTurn("hello").pipe(Effect.provide(layer))
      assert.include(describeReason(failedModelPart(beforeHead.parts).error!), expected)
      yield* waitUntil(() => fake.disconnects() >= 2, "1 second")
    }))

  it.scopedLive("a server that ignores the disconnect does not keep the session past the deadline", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([silent])
      const layer = providerRuntime({
        config: providerConfig(fake.baseURL),
        settings: { toolTimeout: Option.some(Duration.millis(500)), abortGrace: Duration.millis(300) }
      })
      yield* Effect.gen(function*() {
        const sessions = yield* SessionService
        const session = yield* sessions.create({})
        const turn = yield* Effect.fork(sessions.runTurn(session.id, { text: "hello", model: "openai/fake" }))
        yield* Effect.sleep("1500 millis")
        assert.notStrictEqual((yield* sessions.get(session.id)).status, "busy")
        const result = yield* Fiber.join(turn)
        assert.strictEqual(result._tag, "Failed")
        const part = failedModelPart(yield* sessions.parts(session.id))
        // The abort reached the socket, so the timeout itself is the recorded reason.
        assert.deepStrictEqual(part.error, new ToolTimeout({ timeout: 500 }))
        assert.strictEqual(fake.disconnects(), 1)
      }).pipe(Effect.provide(layer))
    }))

  it.scopedLive("a client that ignores cancellation is abandoned after the abort grace (AbortIncomplete)", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([silent])
      // The worst client: its request cannot be interrupted at all.
      const deafClient = Layer.effect(
        HttpClient.HttpClient,
        Effect.map(HttpClient.HttpClient, (client) => HttpClient.transform(client, (effect) => Effect.uninterruptible(effect)))
      ).pipe(Layer.provide(ProviderHttpClient))
      const config = providerConfig(fake.baseURL)
      const layer = providerRuntime({
        config,
        models: ProvidersLayer(config).pipe(Layer.provide(deafClient)),
        settings: { toolTimeout: Option.some(Duration.millis(500)), abortGrace: Duration.millis(300) }
      })
      yield* Effect.gen(function*() {
        const sessions = yield* SessionService
        const session = yield* sessions.create({})
        const turn = yield* Effect.fork(sessions.runTurn(session.id, { text: "hello", model: "openai/fake" }))
        yield* Effect.sleep("1500 millis")
        const after = yield* sessions.get(session.id)
        assert.strictEqual(after.status, "error")
        assert.strictEqual(after.cancelReason?._tag, "AbortIncomplete")
        const result = yield* Fiber.join(turn)
        assert.strictEqual(result._tag, "Failed")
        const part = failedModelPart(yield* sessions.parts(session.id))
        assert.deepStrictEqual(part.error, new AbortIncomplete({ grace: 300, cause: "tool timed out after 500ms" }))
        // The request really was left open: this is the grace path, not a clean abort.
        assert.strictEqual(fake.disconnects(), 0)
      }).pipe(Effect.provide(layer))
    }))

  it.scopedLive("every chunk is progress: a tool call's fragments and reasoning reach onText as empty chunks", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([
        streamed(
          chunk({ reasoning_content: "thinking..." }),
          textDelta("On it."),
          toolDelta(0, { id: "call_1", name: "echo", arguments: "{\"text\"" }),
          toolDelta(0, { arguments: ": \"hi\"}" }),
          chunk({}, "tool_calls")
        )
      ])
      const client = Context.get(yield* Layer.build(ProviderHttpClient), HttpClient.HttpClient)
      const model = makeOpenAiCompatibleModel({ provider: providerConfig(fake.baseURL).providers[0]!, model: "fake" }, client)
      const seen: Array<string> = []
      const response = yield* model.generate({
        messages: [{ role: "user", text: "hello" }],
        tools: [],
        onText: (text) => Effect.sync(() => seen.push(text))
      })
      assert.deepStrictEqual(response, { text: "On it.", toolCalls: [{ id: "call_1", name: "echo", input: { text: "hi" } }] })
      assert.deepStrictEqual(seen, ["", "On it.", "", "", ""])
    }))

  describe("errors name the status or the problem", () => {
    const cases: ReadonlyArray<readonly [string, Responder, string]> = [
      ["HTTP 500 with a text body", failing(500, "upstream exploded\n", "text/plain"), "provider openai: HTTP 500: upstream exploded"],
      [
        "HTTP 429 with an OpenAI error body",
        failing(429, JSON.stringify({ error: { message: "Rate limit reached for requests", type: "requests", code: "rate_limit_exceeded" } })),
        "provider openai: HTTP 429: Rate limit reached for requests"
      ],
      [
        "a chunk that is not JSON",
        (res) => {
          startStream(res)
          writeEvent(res, textDelta("ok so far"))
          writeEvent(res, "{not json")
          res.end()
        },
        "provider openai: malformed chunk (not a JSON object): {not json"
      ],
      [
        "tool call arguments that are not JSON",
        streamed(toolDelta(0, { id: "call_1", name: "echo", arguments: "{\"text\": " }), chunk({}, "tool_calls")),
        "provider openai: the arguments of tool call echo (call_1) are not valid JSON: {\"text\":"
      ],
      [
        "an error sent inside the stream",
        (res) => {
          startStream(res)
          writeEvent(res, { error: { message: "model overloaded" } })
          res.end()
        },
        "provider openai: the provider reported an error: model overloaded"
      ],
      [
        "a stream that ends without [DONE]",
        (res) => {
          startStream(res)
          writeEvent(res, textDelta("half an ans"))
          res.end()
        },
        "provider openai: the stream ended before the answer was complete (no [DONE])"
      ]
    ]
    for (const [name, responder, expected] of cases) {
      it.scopedLive(name, () =>
        Effect.gen(function*() {
          const fake = yield* fakeServer([responder])
          // Retried, a 429 or a 500 would end the same after the waits (test/Retries.test.ts).
          const { parts, result, session } = yield* runOneTurn("hello").pipe(
            Effect.provide(providerRuntime({ config: providerConfig(fake.baseURL, { maxRetries: 0 }) }))
          )
          assert.strictEqual(result._tag, "Failed")
          assert.strictEqual(session.status, "error")
          assert.strictEqual(describeReason(session.cancelReason!), `model openai/fake: ${expected}`)
          assert.strictEqual(describeReason(failedModelPart(parts).error!), `model openai/fake: ${expected}`)
        }))
    }

    it.scopedLive("a 401 that echoes the key: the key is not in the error", () =>
      Effect.gen(function*() {
        const fake = yield* fakeServer([
          failing(401, JSON.stringify({ error: { message: `Incorrect API key provided: ${testKey}.`, code: "invalid_api_key" } }))
        ])
        const { parts, session } = yield* runOneTurn("hello").pipe(
          Effect.provide(providerRuntime({ config: providerConfig(fake.baseURL) }))
        )
        const message = describeReason(failedModelPart(parts).error!)
        assert.strictEqual(message, "model openai/fake: provider openai: HTTP 401: Incorrect API key provided: <redacted>.")
        assert.notInclude(message, testKey)
        assert.notInclude(JSON.stringify(session), testKey)
        assert.notInclude(JSON.stringify(parts), testKey)
      }))

    it.scopedLive("a 401 that echoes a shortened key: no fragment of 8 characters or more is stored", () =>
      Effect.gen(function*() {
        // How OpenAI shows a wrong key: a prefix, stars, the last four.
        const shortened = `${testKey.slice(0, 11)}****${testKey.slice(-4)}`
        const fake = yield* fakeServer([
          failing(401, JSON.stringify({ error: { message: `Incorrect API key provided: ${shortened}.`, code: "invalid_api_key" } }))
        ])
        const { parts, session } = yield* runOneTurn("hello").pipe(
          Effect.provide(providerRuntime({ config: providerConfig(fake.baseURL) }))
        )
        const expected = `model openai/fake: provider openai: HTTP 401: Incorrect API key provided: <redacted>****${testKey.slice(-4)}.`
        assert.strictEqual(describeReason(failedModelPart(parts).error!), expected)
        assert.strictEqual(describeReason(session.cancelReason!), expected)
        for (const stored of [JSON.stringify(session), JSON.stringify(parts)]) {
          assert.notInclude(stored, testKey.slice(0, 8))
          assert.notInclude(stored, testKey.slice(3, 11))
        }
      }))

    it.scopedLive("a refused connection", () =>
      Effect.gen(function*() {
        const port = yield* closedPort
        const { parts, session } = yield* runOneTurn("hello").pipe(
          Effect.provide(providerRuntime({ config: providerConfig(`http://127.0.0.1:${port}/v1/`, { maxRetries: 0 }) }))
        )
        const expected = `model openai/fake: provider openai: cannot reach http://127.0.0.1:${port}/v1: connection refused`
        assert.strictEqual(describeReason(session.cancelReason!), expected)
        assert.strictEqual(describeReason(failedModelPart(parts).error!), expected)
      }))
  })
})
