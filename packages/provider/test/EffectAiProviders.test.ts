import { assert, describe, it } from "@effect/vitest"
import { describeReason, ToolTimeout } from "@vigil/domain"
import { Duration, Effect, Either, Option, Redacted } from "effect"
import type { ServerResponse } from "node:http"
import type { ProviderConfig } from "../src/ProviderConfig.js"
import { parseProviders } from "../src/ProviderConfig.js"
import type { Responder } from "./fakeOpenAi.js"
import { failing, fakeServer, silent } from "./fakeOpenAi.js"
import { providerRuntime, runOneTurn, testKey } from "./support.js"

/** One server-sent event as Anthropic's and OpenAI's APIs write them: a named event, its JSON. */
const send = (res: ServerResponse, event: string, data: Record<string, unknown>) =>
  res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...data })}\n\n`)

const sse = (write: (res: ServerResponse) => void): Responder => (res) => {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
  write(res)
  res.end()
}

// --- Anthropic Messages -------------------------------------------------------------------

const messageStart = (res: ServerResponse) =>
  send(res, "message_start", {
    message: {
      id: "msg_1",
      type: "message",
      role: "assistant",
      model: "claude-sonnet-4-5",
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 12, output_tokens: 1 }
    }
  })

const messageEnd = (res: ServerResponse, stopReason: string) => {
  send(res, "message_delta", { delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: 20 } })
  send(res, "message_stop", {})
}

const anthropicToolCall = sse((res) => {
  messageStart(res)
  send(res, "content_block_start", { index: 0, content_block: { type: "text", text: "" } })
  send(res, "content_block_delta", { index: 0, delta: { type: "text_delta", text: "Let me " } })
  send(res, "content_block_delta", { index: 0, delta: { type: "text_delta", text: "check." } })
  send(res, "content_block_stop", { index: 0 })
  send(res, "content_block_start", { index: 1, content_block: { type: "tool_use", id: "toolu_A", name: "echo", input: {} } })
  send(res, "content_block_delta", { index: 1, delta: { type: "input_json_delta", partial_json: "{\"text\": " } })
  send(res, "content_block_delta", { index: 1, delta: { type: "input_json_delta", partial_json: "\"hi\"}" } })
  send(res, "content_block_stop", { index: 1 })
  messageEnd(res, "tool_use")
})

const anthropicText = (text: string) =>
  sse((res) => {
    messageStart(res)
    send(res, "content_block_start", { index: 0, content_block: { type: "text", text: "" } })
    send(res, "content_block_delta", { index: 0, delta: { type: "text_delta", text } })
    send(res, "content_block_stop", { index: 0 })
    messageEnd(res, "end_turn")
  })

const config = (file: unknown, env: Record<string, string> = {}): ProviderConfig =>
  Either.getOrThrowWith(parseProviders(file, env), (error) => new Error(error.message))

/** The fake's root: Anthropic's client adds `/v1/messages` itself. */
const rootOf = (baseURL: string) => baseURL.replace(/\/v1$/, "")

describe("Anthropic through @effect/ai-anthropic", () => {
  it("opencode's built-in: ANTHROPIC_API_KEY in the environment and model anthropic/<name>, or options.apiKey alone", () => {
    const fromEnv = config({ model: "anthropic/claude-sonnet-4-5" }, { ANTHROPIC_API_KEY: testKey })
    const anthropic = fromEnv.providers.find((provider) => provider.id === "anthropic")!
    assert.strictEqual(anthropic.api, "anthropic")
    assert.strictEqual(anthropic.baseURL, "https://api.anthropic.com")
    assert.strictEqual(Redacted.value(Option.getOrThrow(anthropic.apiKey)), testKey)
    assert.strictEqual(fromEnv.defaultModel, "anthropic/claude-sonnet-4-5")
    const fromFile = config({ provider: { anthropic: { options: { apiKey: testKey } } }, model: "anthropic/claude-sonnet-4-5" })
    assert.strictEqual(fromFile.providers[0]!.api, "anthropic")
    assert.strictEqual(Redacted.value(Option.getOrThrow(fromFile.providers[0]!.apiKey)), testKey)
    // An `openai` with a baseURL stays the chat-completions client (local servers); without one it is OpenAI's Responses API.
    assert.strictEqual(config({ provider: { openai: { options: { baseURL: "http://127.0.0.1:8080/v1" } } } }).providers[0]!.api, "chat-completions")
    assert.strictEqual(config({}, { OPENAI_API_KEY: testKey }).providers[0]!.api, "openai-responses")
  })

  it.scopedLive("a streamed tool call runs through the agent loop; the call and its result go back as Messages blocks", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([anthropicToolCall, anthropicText("All done.")])
      const { parts, result } = yield* runOneTurn("say hi through echo", "anthropic/sonnet").pipe(
        Effect.provide(providerRuntime({
          config: config({
            provider: {
              anthropic: {
                options: { apiKey: testKey, baseURL: rootOf(fake.baseURL), headers: { "X-Title": "vigil" } },
                models: { sonnet: { id: "claude-sonnet-4-5" } }
              }
            }
          })
        }))
      )
      assert.deepStrictEqual(result, { _tag: "Completed", text: "All done." })
      assert.deepStrictEqual(
        parts.map((part) => [part.kind, part.status, part.output]),
        [
          ["prompt", "completed", "say hi through echo"],
          ["model", "completed", "Let me check.\n→ echo({\"text\":\"hi\"})"],
          ["text", "completed", "Let me check."],
          ["tool", "completed", "echo: hi"],
          ["model", "completed", "All done."],
          ["text", "completed", "All done."]
        ]
      )
      const [first, second] = fake.requests
      assert.strictEqual(first!.path, "/v1/messages")
      assert.strictEqual(first!.headers["x-api-key"], testKey)
      assert.strictEqual(first!.headers["x-title"], "vigil")
      const body = first!.body as unknown as { model: string; stream: boolean; tools: Array<{ name: string; input_schema: unknown }> }
      assert.strictEqual(body.model, "claude-sonnet-4-5")
      assert.strictEqual(body.stream, true)
      assert.deepInclude(body.tools.find((tool) => tool.name === "echo")!.input_schema as object, { type: "object", required: ["text"] })
      const messages = JSON.stringify(second!.body.messages)
      assert.include(messages, "\"type\":\"tool_use\",\"id\":\"toolu_A\"")
      assert.include(messages, "\"type\":\"tool_result\",\"tool_use_id\":\"toolu_A\"")
      assert.include(messages, "echo: hi")
    }))

  it.scopedLive("errors: a 529 in Anthropic's words, and a 401 that echoes the key shows no key", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([
        failing(529, JSON.stringify({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })),
        failing(401, JSON.stringify({ type: "error", error: { type: "authentication_error", message: `invalid x-api-key ${testKey}` } })),
        // An error event inside the stream, after the message began: the step's error, never re-run.
        sse((res) => {
          messageStart(res)
          send(res, "error", { error: { type: "overloaded_error", message: "Overloaded mid-stream" } })
        })
      ])
      const layer = providerRuntime({
        config: config({ provider: { anthropic: { options: { apiKey: testKey, baseURL: rootOf(fake.baseURL), maxRetries: 0 } } } })
      })
      for (const expected of ["HTTP 529: Overloaded", "HTTP 401: invalid x-api-key <redacted>", "Overloaded mid-stream"]) {
        const { parts, session } = yield* runOneTurn("hello", "anthropic/claude-sonnet-4-5").pipe(Effect.provide(layer))
        const model = parts.find((part) => part.kind === "model")!
        assert.include(describeReason(model.error!), `model anthropic/claude-sonnet-4-5: provider anthropic: `)
        assert.include(describeReason(model.error!), expected)
        assert.notInclude(JSON.stringify([parts, session]), testKey)
      }
    }))
})

describe("the adapter keeps vigil's supervision", () => {
  it.scopedLive("the step's deadline aborts the request (the socket is closed) and frees the session", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([silent])
      const layer = providerRuntime({
        config: config({ provider: { anthropic: { options: { apiKey: testKey, baseURL: rootOf(fake.baseURL) } } } }),
        settings: { toolTimeout: Option.some(Duration.millis(500)), abortGrace: Duration.millis(300) }
      })
      const { parts, session } = yield* runOneTurn("hello", "anthropic/claude-sonnet-4-5").pipe(Effect.provide(layer))
      assert.strictEqual(session.status, "error")
      assert.deepStrictEqual(parts.find((part) => part.kind === "model")!.error, new ToolTimeout({ timeout: 500 }))
      for (let i = 0; i < 100 && fake.disconnects() === 0; i++) yield* Effect.sleep("10 millis")
      assert.strictEqual(fake.disconnects(), 1)
    }))

  it.scopedLive("a 529 asking for retry-after-ms is retried once, on its wait; a stream that goes quiet fails by the inactivity timeout", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([
        (res) => {
          res.writeHead(529, { "content-type": "application/json", "retry-after-ms": "50" })
            .end(JSON.stringify({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } }))
        },
        anthropicText("after the retry"),
        // Begins, then sends nothing and never ends.
        (res) => {
          res.writeHead(200, { "content-type": "text/event-stream" })
          messageStart(res)
        }
      ])
      const layer = providerRuntime({
        config: config({ provider: { anthropic: { options: { apiKey: testKey, baseURL: rootOf(fake.baseURL), chunkTimeout: 300 } } } })
      })
      const retried = yield* runOneTurn("hello", "anthropic/claude-sonnet-4-5").pipe(Effect.provide(layer))
      assert.deepStrictEqual(retried.result, { _tag: "Completed", text: "after the retry" })
      assert.strictEqual(fake.requests.length, 2)
      const started = Date.now()
      const quiet = yield* runOneTurn("hello", "anthropic/claude-sonnet-4-5").pipe(Effect.provide(layer))
      assert.isBelow(Date.now() - started, 5_000)
      const model = quiet.parts.find((part) => part.kind === "model")!
      assert.strictEqual(
        describeReason(model.error!),
        "model anthropic/claude-sonnet-4-5: provider anthropic: the provider sent nothing for 300 ms (provider.anthropic.options.chunkTimeout)"
      )
      // Not re-run: it had begun.
      assert.strictEqual(fake.requests.length, 3)
    }))
})

// --- OpenAI Responses ---------------------------------------------------------------------

const responseShell = { id: "resp_1", object: "response", created_at: 0, model: "gpt-5", output: [], status: "in_progress" }

const openAiToolCall = sse((res) => {
  send(res, "response.created", { sequence_number: 0, response: responseShell })
  const item = { type: "function_call", id: "fc_1", call_id: "call_R", name: "echo", arguments: "", status: "in_progress" }
  send(res, "response.output_item.added", { sequence_number: 1, output_index: 0, item })
  send(res, "response.function_call_arguments.delta", { sequence_number: 2, output_index: 0, item_id: "fc_1", delta: "{\"text\":\"hi\"}" })
  send(res, "response.output_item.done", {
    sequence_number: 3,
    output_index: 0,
    item: { ...item, arguments: "{\"text\":\"hi\"}", status: "completed" }
  })
  send(res, "response.completed", {
    sequence_number: 4,
    response: { ...responseShell, status: "completed", usage: { input_tokens: 5, output_tokens: 5, total_tokens: 10 } }
  })
})

const openAiText = (text: string) =>
  sse((res) => {
    send(res, "response.created", { sequence_number: 0, response: responseShell })
    const item = { type: "message", id: "msg_1", role: "assistant", status: "in_progress", content: [] }
    send(res, "response.output_item.added", { sequence_number: 1, output_index: 0, item })
    send(res, "response.output_text.delta", { sequence_number: 2, output_index: 0, content_index: 0, item_id: "msg_1", delta: text })
    send(res, "response.output_item.done", {
      sequence_number: 3,
      output_index: 0,
      item: { ...item, status: "completed", content: [{ type: "output_text", text, annotations: [] }] }
    })
    send(res, "response.completed", {
      sequence_number: 4,
      response: { ...responseShell, status: "completed", usage: { input_tokens: 5, output_tokens: 5, total_tokens: 10 } }
    })
  })

describe("OpenAI through @effect/ai-openai (the Responses API)", () => {
  it.scopedLive("a streamed function call runs through the agent loop; its output goes back as function_call_output", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([openAiToolCall, openAiText("All done.")])
      const { parts, result } = yield* runOneTurn("say hi through echo", "openai/gpt-5").pipe(
        Effect.provide(providerRuntime({
          config: config({ provider: { openai: { npm: "@ai-sdk/openai", options: { apiKey: testKey, baseURL: fake.baseURL } } } })
        }))
      )
      assert.deepStrictEqual(result, { _tag: "Completed", text: "All done." })
      assert.strictEqual(parts.find((part) => part.kind === "tool")!.output, "echo: hi")
      const [first, second] = fake.requests
      assert.strictEqual(first!.path, "/v1/responses")
      assert.strictEqual(first!.headers.authorization, `Bearer ${testKey}`)
      assert.strictEqual(first!.body.model, "gpt-5")
      const input = JSON.stringify((second!.body as unknown as { input: unknown }).input)
      assert.include(input, "\"type\":\"function_call_output\",\"call_id\":\"call_R\"")
      assert.include(input, "echo: hi")
    }))

  it.scopedLive("an error in OpenAI's words; the key is not in it", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([
        failing(429, JSON.stringify({ error: { message: `Rate limit reached for ${testKey}`, type: "requests", code: "rate_limit_exceeded" } }))
      ])
      const { parts } = yield* runOneTurn("hello", "openai/gpt-5").pipe(
        Effect.provide(providerRuntime({
          config: config({ provider: { openai: { npm: "@ai-sdk/openai", options: { apiKey: testKey, baseURL: fake.baseURL, maxRetries: 0 } } } })
        }))
      )
      const model = parts.find((part) => part.kind === "model")!
      assert.strictEqual(describeReason(model.error!), "model openai/gpt-5: provider openai: HTTP 429: Rate limit reached for <redacted>")
      assert.notInclude(JSON.stringify(parts), testKey)
    }))
})
