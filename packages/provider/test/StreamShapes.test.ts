import { assert, describe, it } from "@effect/vitest"
import { describeReason } from "@vigil/domain"
import { Effect } from "effect"
import type { Responder } from "./fakeOpenAi.js"
import { chunk, failing, fakeServer, startStream, streamed, textDelta, writeEvent } from "./fakeOpenAi.js"
import { providerConfig, providerRuntime, runOneTurn } from "./support.js"

/** A tool call fragment as a server writes it, whole (name, id and arguments in one chunk). */
const call = (index: number, id: string, args: unknown) =>
  chunk({ tool_calls: [{ index, id, type: "function", function: { name: "echo", arguments: args } }] })

const turnOn = (responders: ReadonlyArray<Responder>) =>
  Effect.gen(function*() {
    const fake = yield* fakeServer(responders)
    const turn = yield* runOneTurn("echo twice").pipe(
      Effect.provide(providerRuntime({ config: providerConfig(fake.baseURL, { maxRetries: 0 }) }))
    )
    return { fake, ...turn }
  })

describe("stream shapes real servers send", () => {
  it.scopedLive("two parallel calls both at index 0 stay two calls, and go back as one assistant message", () =>
    Effect.gen(function*() {
      const { fake, parts, result } = yield* turnOn([
        streamed(
          chunk({ tool_calls: [{ index: 0, id: "call_A", type: "function", function: { name: "echo", arguments: "" } }] }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: "{\"text\":\"a\"}" } }] }),
          chunk({ tool_calls: [{ index: 0, id: "call_B", type: "function", function: { name: "echo", arguments: "{\"text\"" } }] }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: ":\"b\"}" } }] }),
          chunk({}, "tool_calls")
        ),
        streamed(textDelta("done"), chunk({}, "stop"))
      ])
      assert.deepStrictEqual(result, { _tag: "Completed", text: "done" })
      const tools = parts.filter((part) => part.kind === "tool")
      assert.deepStrictEqual(tools.map((part) => [part.callId, part.input, part.output]), [
        ["call_A", { text: "a" }, "echo: a"],
        ["call_B", { text: "b" }, "echo: b"]
      ])
      assert.deepStrictEqual(fake.requests[1]!.body.messages, [
        { role: "user", content: "echo twice" },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            { id: "call_A", type: "function", function: { name: "echo", arguments: "{\"text\":\"a\"}" } },
            { id: "call_B", type: "function", function: { name: "echo", arguments: "{\"text\":\"b\"}" } }
          ]
        },
        { role: "tool", tool_call_id: "call_A", content: "echo: a" },
        { role: "tool", tool_call_id: "call_B", content: "echo: b" }
      ])
    }))

  it.scopedLive("arguments sent as a JSON object are the call's input", () =>
    Effect.gen(function*() {
      const { parts, result } = yield* turnOn([
        streamed(call(0, "call_obj", { text: "from an object" }), chunk({}, "tool_calls")),
        streamed(textDelta("ok"), chunk({}, "stop"))
      ])
      assert.strictEqual(result._tag, "Completed")
      const tool = parts.find((part) => part.kind === "tool")!
      assert.deepStrictEqual(tool.input, { text: "from an object" })
      assert.strictEqual(tool.output, "echo: from an object")
    }))

  it.scopedLive("one JSON chunk over several data: lines is joined with a newline, as SSE has it", () =>
    Effect.gen(function*() {
      const split: Responder = (res) => {
        startStream(res)
        const json = JSON.stringify(textDelta("split answer"), null, 2).split("\n")
        res.write(json.map((line) => `data: ${line}\n`).join("") + "\n")
        // And a server that leaves out the blank line between events.
        res.write(`data: ${JSON.stringify(textDelta(", then more"))}\n`)
        res.write(`data: ${JSON.stringify(chunk({}, "stop"))}\n`)
        res.write("data: [DONE]\n\n")
        res.end()
      }
      const { result } = yield* turnOn([split])
      assert.deepStrictEqual(result, { _tag: "Completed", text: "split answer, then more" })
    }))

  it.scopedLive("a mock's crash ({ error: \"TypeError\", message }) shows the provider's message", () =>
    Effect.gen(function*() {
      const { parts } = yield* turnOn([
        failing(500, JSON.stringify({ error: "TypeError", message: "Cannot read properties of undefined (reading 'map')" }))
      ])
      const model = parts.find((part) => part.kind === "model")!
      assert.strictEqual(
        describeReason(model.error!),
        "model openai/fake: provider openai: HTTP 500: TypeError: Cannot read properties of undefined (reading 'map')"
      )
    }))

  it.scopedLive("a chunk that stays malformed is still an error", () =>
    Effect.gen(function*() {
      const { parts } = yield* turnOn([(res) => {
        startStream(res)
        writeEvent(res, "{\"choices\": [")
        res.end()
      }])
      assert.include(describeReason(parts.find((part) => part.kind === "model")!.error!), "malformed chunk (not a JSON object)")
    }))
})
