import { assert, describe, it } from "@effect/vitest"
import { PartRepo } from "@vigil/store"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Effect, Layer, Schema } from "effect"
import { historyOf } from "../src/agent/History.js"
import type { LanguageModelShape, Message } from "../src/agent/LanguageModel.js"
import { scriptModel } from "../src/agent/ScriptModel.js"
import { SessionService } from "../src/agent/SessionService.js"
import { allTestTools, testRuntime } from "./support.js"

const script = (...steps: ReadonlyArray<unknown>) => JSON.stringify(steps)

const echo = {
  name: "echo",
  description: "answers its text at once",
  input: Schema.Struct({ text: Schema.String, repeat: Schema.optional(Schema.Number) }),
  run: (input: { readonly text: string; readonly repeat?: number }) => Effect.succeed(input.text.repeat(input.repeat ?? 1))
}

describe("a turn's history", () => {
  it.effect("is read once per turn, and every step's messages are what a re-read of the session would give", () => {
    const requests: Array<ReadonlyArray<Message>> = []
    const model: LanguageModelShape = {
      name: "recorder",
      generate: (request) => Effect.suspend(() => {
        requests.push(request.messages)
        return scriptModel.generate(request)
      })
    }
    let reads = 0
    const counting = (file: string) =>
      Layer.effect(
        PartRepo,
        PartRepo.pipe(Effect.map((real) =>
          PartRepo.make({ ...real, bySession: (id) => Effect.suspend(() => (reads++, real.bySession(id))) })
        ))
      ).pipe(Layer.provideMerge(SqliteStoreLive(file))) as unknown as ReturnType<typeof SqliteStoreLive>
    return Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      // Earlier history: a turn of its own.
      yield* sessions.runTurn(session.id, { text: script({ tool: "echo", input: { text: "before" } }, { text: "first turn" }), model: "recorder" })
      const steps: Array<unknown> = [{ text: "starting" }]
      for (let i = 0; i < 10; i++) steps.push({ tool: "echo", input: { text: `echo ${i}` } })
      steps.push(
        { tool: "fail", input: { message: "it broke" } },
        { tool: "crash", input: {} },
        { tool: "no_such_tool", input: {} },
        // Beyond the store's output cap: the in-memory history must cut it as the store does.
        { tool: "echo", input: { text: "y", repeat: 70 * 1024 } },
        { text: "done" }
      )
      const firstOfSecond = requests.length
      reads = 0
      const result = yield* sessions.runTurn(session.id, { text: script(...steps), model: "recorder" })
      assert.deepStrictEqual(result, { _tag: "Completed", text: "done" })
      assert.strictEqual(reads, 1, "the session's parts are read once for the whole turn")
      const parts = yield* sessions.parts(session.id)
      const modelSteps = parts.flatMap((part, index) => (part.kind === "model" ? [index] : []))
      const seen = requests.slice(firstOfSecond)
      const second = modelSteps.slice(modelSteps.length - seen.length)
      assert.strictEqual(seen.length, 15)
      seen.forEach((messages, step) => {
        assert.deepStrictEqual(messages, historyOf(parts.slice(0, second[step]!)), `step ${step}`)
      })
      const last = seen[seen.length - 1]!
      const big = last[last.length - 1]!
      assert.include(big.role === "tool" ? big.output : "", "[output truncated: ")
    }).pipe(Effect.provide(testRuntime({ tools: [...allTestTools, echo], models: [model], store: counting })))
  })

  it.effect("a step's parallel calls go back as one assistant message with both, then their results; later steps stay apart", () => {
    const requests: Array<ReadonlyArray<Message>> = []
    const answers = [
      { text: "", toolCalls: [{ id: "A", name: "echo", input: { text: "a" } }, { id: "B", name: "echo", input: { text: "b" } }] },
      { text: "", toolCalls: [{ id: "C", name: "echo", input: { text: "c" } }] },
      { text: "done", toolCalls: [] }
    ]
    const model: LanguageModelShape = {
      name: "parallel",
      generate: (request) => Effect.sync(() => answers[requests.push(request.messages) - 1]!)
    }
    return Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      assert.deepStrictEqual(yield* sessions.runTurn(session.id, { text: "go", model: "parallel" }), { _tag: "Completed", text: "done" })
      const result = (id: string, text: string): Message => ({ role: "tool", callId: id, name: "echo", output: text, isError: false })
      const call = (id: string, text: string) => ({ id, name: "echo", input: { text } })
      const expected: ReadonlyArray<Message> = [
        { role: "user", text: "go" },
        { role: "assistant", text: "", toolCalls: [call("A", "a"), call("B", "b")] },
        result("A", "a"),
        result("B", "b"),
        { role: "assistant", text: "", toolCalls: [call("C", "c")] },
        result("C", "c")
      ]
      assert.deepStrictEqual(requests[2], expected)
      // A re-read of the session gives the same.
      const parts = yield* sessions.parts(session.id)
      const lastModel = parts.map((part) => part.kind).lastIndexOf("model")
      assert.deepStrictEqual(historyOf(parts.slice(0, lastModel)), expected)
    }).pipe(Effect.provide(testRuntime({ tools: [...allTestTools, echo], models: [model] })))
  })
})
