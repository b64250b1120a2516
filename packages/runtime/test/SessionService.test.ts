import { assert, describe, it } from "@effect/vitest"
import type { SessionId } from "@vigil/domain"
import { AbortIncomplete, SessionCancelled, ToolTimeout } from "@vigil/domain"
import { Duration, Effect, Fiber, Option, TestClock } from "effect"
import type { LanguageModelShape, Message } from "../src/agent/LanguageModel.js"
import { scriptModel } from "../src/agent/ScriptModel.js"
import { SessionService } from "../src/agent/SessionService.js"
import { ToolRunner } from "../src/supervision/ToolRunner.js"
import { isAlive } from "./processes.js"
import { allTestTools, testRuntime } from "./support.js"

const script = (...steps: ReadonlyArray<unknown>) => JSON.stringify(steps)

/** A model that records what it was given and then behaves as the script model. */
const recorder = () => {
  const requests: Array<ReadonlyArray<Message>> = []
  const model: LanguageModelShape = {
    name: "recorder",
    generate: (request) => Effect.suspend(() => {
      requests.push(request.messages)
      return scriptModel.generate(request)
    })
  }
  return { model, requests }
}

/** Every tool call in a model's input has its result right there. */
const assertEveryCallAnswered = (messages: ReadonlyArray<Message>) => {
  const calls = messages.flatMap((message) => (message.role === "assistant" ? message.toolCalls.map((call) => call.id) : []))
  const results = new Set(messages.flatMap((message) => (message.role === "tool" ? [message.callId] : [])))
  for (const call of calls) assert.isTrue(results.has(call), `tool call ${call} has no result`)
  return calls.length
}

const runtime = (options: Parameters<typeof testRuntime>[0] = {}) => testRuntime({ tools: allTestTools, ...options })

const childOf = (id: SessionId) =>
  SessionService.pipe(
    Effect.flatMap((sessions) => sessions.list()),
    Effect.map((all) => Option.fromNullable(all.find((session) => session.parentId === id)))
  )

describe("SessionService", () => {
  it.effect("a scripted turn with tools, text and a task two levels deep runs to the end", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const root = yield* sessions.create({ title: "root" })
      const grandchildScript = script({ tool: "sleep", input: { ms: 20 } }, { text: "grandchild done" })
      const childScript = script({ text: "child starts" }, { tool: "task", input: { prompt: grandchildScript } }, { text: "child done" })
      const fiber = yield* Effect.fork(
        sessions.runTurn(root.id, {
          text: script({ text: "root starts" }, { tool: "sleep", input: { ms: 10 } }, { tool: "task", input: { prompt: childScript } }, {
            text: "root done"
          })
        })
      )
      yield* TestClock.adjust(10)
      yield* TestClock.adjust(20)
      const result = yield* Fiber.join(fiber)
      assert.deepStrictEqual(result, { _tag: "Completed", text: "root done" })

      const rootParts = yield* sessions.parts(root.id)
      assert.deepStrictEqual(
        rootParts.filter((part) => part.kind !== "model").map((part) => [part.kind, part.tool, part.status, part.output]),
        [
          ["prompt", "", "completed", rootParts[0]!.output],
          ["text", "", "completed", "root starts"],
          ["tool", "sleep", "completed", "slept 10"],
          ["tool", "task", "completed", "child done"],
          ["text", "", "completed", "root done"]
        ]
      )
      const child = Option.getOrThrow(yield* childOf(root.id))
      const task = rootParts.find((part) => part.tool === "task")!
      assert.strictEqual(child.parentPartId, task.id)
      assert.strictEqual(task.childSessionId, child.id)
      const grandchild = Option.getOrThrow(yield* childOf(child.id))
      const grandParts = yield* sessions.parts(grandchild.id)
      assert.deepStrictEqual(grandParts.filter((part) => part.kind === "tool").map((part) => part.output), ["slept 20"])
      for (const id of [root.id, child.id, grandchild.id]) assert.strictEqual((yield* sessions.get(id)).status, "idle")
    }).pipe(Effect.provide(runtime())))

  it.live("abort of a parent mid-way ends a grandchild's running shell (by pid) and all three sessions", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const root = yield* sessions.create({ title: "root" })
      const grandchild = script({ tool: "bash", input: { command: "sleep 300" } })
      const child = script({ tool: "task", input: { prompt: grandchild } })
      yield* sessions.prompt(root.id, { text: script({ tool: "task", input: { prompt: child } }) })
      let shellPid: number | null = null
      let leaf: SessionId | undefined
      for (let i = 0; i < 250 && shellPid === null; i++) {
        yield* Effect.sleep("20 millis")
        for (const session of yield* sessions.list()) {
          const bash = (yield* sessions.parts(session.id)).find((part) => part.tool === "bash")
          if (bash?.pid != null) {
            shellPid = bash.pid
            leaf = session.id
          }
        }
      }
      assert.isNotNull(shellPid, "the grandchild's shell started")
      assert.isTrue(isAlive(shellPid!))
      const after = yield* sessions.abort(root.id, new SessionCancelled({ by: "test" }))
      assert.strictEqual(after.status, "cancelled")
      assert.isFalse(isAlive(shellPid!), "the grandchild's shell is gone once abort returns")
      const all = yield* sessions.list()
      assert.strictEqual(all.length, 3)
      for (const session of all) {
        assert.strictEqual(session.status, "cancelled", `session ${session.title}`)
        assert.deepStrictEqual(session.cancelReason, new SessionCancelled({ by: "test" }))
        for (const part of yield* sessions.parts(session.id)) assert.include(["completed", "error"], part.status)
      }
      const bash = (yield* sessions.parts(leaf!)).find((part) => part.tool === "bash")!
      assert.strictEqual(bash.error?._tag, "SessionCancelled")
      // Aborting an ended session is a no-op.
      const again = yield* sessions.abort(root.id, new SessionCancelled({ by: "someone else" }))
      assert.deepStrictEqual(again.cancelReason, new SessionCancelled({ by: "test" }))
    }).pipe(Effect.provide(runtime())))

  it.effect("ask waits for a reply, and the reply resumes the turn", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      const fiber = yield* Effect.fork(sessions.runTurn(session.id, { text: script({ tool: "ask", input: { question: "deploy?" } }, { text: "deploying" }) }))
      yield* TestClock.adjust(0)
      assert.strictEqual((yield* sessions.get(session.id)).status, "waiting")
      const ask = (yield* sessions.parts(session.id)).find((part) => part.tool === "ask")!
      assert.strictEqual(ask.status, "running")
      const wrong = yield* Effect.flip(sessions.reply(session.id, "req_unknown", "yes"))
      assert.strictEqual(wrong._tag, "RequestNotFound")
      yield* sessions.reply(session.id, ask.id, "yes")
      assert.deepStrictEqual(yield* Fiber.join(fiber), { _tag: "Completed", text: "deploying" })
      const answered = (yield* sessions.parts(session.id)).find((part) => part.id === ask.id)!
      assert.strictEqual(answered.output, "yes")
      assert.strictEqual((yield* sessions.get(session.id)).status, "idle")
    }).pipe(Effect.provide(runtime())))

  it.effect("a hang step ends within deadline + grace and frees the session", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      const fiber = yield* Effect.fork(sessions.runTurn(session.id, { text: script({ text: "thinking" }, { hang: true }) }))
      yield* TestClock.adjust(10_999)
      assert.strictEqual((yield* sessions.get(session.id)).status, "busy")
      yield* TestClock.adjust(1)
      const result = yield* Fiber.join(fiber)
      assert.strictEqual(result._tag, "Failed")
      assert.deepStrictEqual(
        result._tag === "Failed" ? result.reason : undefined,
        new AbortIncomplete({ grace: 1_000, cause: "tool timed out after 10s" })
      )
      const after = yield* sessions.get(session.id)
      assert.strictEqual(after.status, "error")
      assert.strictEqual(after.cancelReason?._tag, "AbortIncomplete")
      assert.strictEqual(yield* (yield* ToolRunner).leakedFibers, 1)
    }).pipe(Effect.provide(runtime())))

  it.effect("an invalid script fails the turn with a message naming the problem", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      const notJson = yield* sessions.runTurn(session.id, { text: "hello there" })
      assert.strictEqual(notJson._tag, "Failed")
      assert.include(notJson._tag === "Failed" && notJson.reason._tag === "ToolFailed" ? notJson.reason.message : "", "not a valid script")
      const badStep = yield* sessions.runTurn(session.id, { text: script({ sleep: -1 }) })
      assert.strictEqual(badStep._tag, "Failed")
      const message = badStep._tag === "Failed" && badStep.reason._tag === "ToolFailed" ? badStep.reason.message : ""
      assert.include(message, "sleep")
      assert.strictEqual((yield* sessions.get(session.id)).status, "error")
    }).pipe(Effect.provide(runtime())))

  it.effect("a task's sub-agents run on the model of the turn that started them, not the default", () => {
    const { model, requests } = recorder()
    return Effect.gen(function*() {
      const sessions = yield* SessionService
      const root = yield* sessions.create()
      const grandchild = script({ text: "grandchild done" })
      const child = script({ tool: "task", input: { prompt: grandchild } }, { text: "child done" })
      const result = yield* sessions.runTurn(root.id, { text: script({ tool: "task", input: { prompt: child } }, { text: "root done" }), model: "recorder" })
      assert.deepStrictEqual(result, { _tag: "Completed", text: "root done" })
      // Every model step of the three sessions went to the recorder: root 2, child 2, grandchild 1.
      assert.strictEqual(requests.length, 5)
      const firstUserTexts = requests.map((messages) => messages.find((message) => message.role === "user"))
      assert.includeMembers(firstUserTexts.map((message) => (message?.role === "user" ? message.text : "")), [grandchild, child])
      assert.strictEqual((yield* sessions.list()).length, 3)
    }).pipe(Effect.provide(runtime({ models: [model] })))
  })

  it.effect("a prompt to a busy session is refused; an unknown model is refused", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      yield* sessions.prompt(session.id, { text: script({ tool: "sleep", input: { ms: 1_000 } }) })
      const busy = yield* Effect.flip(sessions.prompt(session.id, { text: script({ text: "x" }) }))
      assert.strictEqual(busy._tag, "SessionBusy")
      const unknown = yield* Effect.flip(sessions.prompt(session.id, { text: "[]", model: "gpt-9" }))
      assert.strictEqual(unknown._tag, "UnknownModel")
    }).pipe(Effect.provide(runtime())))

  const forcedEnds = [
    {
      name: "a tool timeout",
      first: script({ tool: "forever", input: {} }, { text: "after the timeout" }),
      end: TestClock.adjust(10_000),
      expect: "Completed",
      errorResult: true
    },
    {
      name: "an abort",
      first: script({ tool: "forever", input: {} }),
      end: Effect.void,
      abort: true,
      expect: "Cancelled",
      errorResult: true
    },
    {
      name: "a hung provider",
      first: script({ tool: "sleep", input: { ms: 5 } }, { hang: true }),
      end: TestClock.adjust(5).pipe(Effect.zipRight(TestClock.adjust(11_000))),
      expect: "Failed",
      // The hang is in the model step, after a tool call that completed: no tool result is an error.
      errorResult: false
    }
  ] as const

  for (const forced of forcedEnds) {
    it.effect(`after ${forced.name}, a new prompt runs and the model sees a result for every earlier tool call`, () => {
      const { model, requests } = recorder()
      return Effect.gen(function*() {
        const sessions = yield* SessionService
        const session = yield* sessions.create()
        const first = yield* Effect.fork(sessions.runTurn(session.id, { text: forced.first, model: "recorder" }))
        yield* TestClock.adjust(0)
        yield* forced.end
        if ("abort" in forced) yield* sessions.abort(session.id, new SessionCancelled({ by: "test" }))
        const ended = yield* Fiber.join(first)
        assert.strictEqual(ended._tag, forced.expect)
        const second = yield* sessions.runTurn(session.id, { text: script({ text: "still here" }), model: "recorder" })
        assert.deepStrictEqual(second, { _tag: "Completed", text: "still here" })
        const lastInput = requests[requests.length - 1]!
        assert.isAtLeast(assertEveryCallAnswered(lastInput), 1)
        const results = lastInput.filter((message) => message.role === "tool")
        assert.strictEqual(results.some((message) => message.role === "tool" && message.isError), forced.errorResult)
      }).pipe(Effect.provide(runtime({ models: [model] })))
    })
  }

  it.effect("a tool timeout inside a turn is a result the model sees, and the turn goes on", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      const fiber = yield* Effect.fork(sessions.runTurn(session.id, { text: script({ tool: "forever", input: {} }, { text: "moved on" }) }))
      yield* TestClock.adjust(10_000)
      assert.deepStrictEqual(yield* Fiber.join(fiber), { _tag: "Completed", text: "moved on" })
      const tool = (yield* sessions.parts(session.id)).find((part) => part.tool === "forever")!
      assert.deepStrictEqual(tool.error, new ToolTimeout({ timeout: 10_000 }))
    }).pipe(Effect.provide(runtime({ settings: { toolTimeout: Option.some(Duration.seconds(10)) } }))))
})
