import type { Part, SessionId } from "@vigil/domain"
import { newPart, SessionCancelled, ToolFailed } from "@vigil/domain"
import { capOutput, PartRepo } from "@vigil/store"
import type { AnyTool, ToolContext } from "@vigil/tools"
import { ToolError } from "@vigil/tools"
import { Clock, Duration, Effect, JSONSchema, Metric, Option } from "effect"
import { Events } from "../events/Events.js"
import * as Metrics from "../Metrics.js"
import { InstanceLease } from "../recovery/InstanceLease.js"
import { Settings } from "../Settings.js"
import { PartEnded, ToolRunner } from "../supervision/ToolRunner.js"
import { historyOf, messagesOfPart, stepCallMessages, toolCallMessages } from "./History.js"
import type { LanguageModelShape, Message, ModelResponse, ModelRetry } from "./LanguageModel.js"

/** A turn stops after this many model steps: a script or a model in a loop must still end. */
const maxSteps = 200

/**
 * A model call tried again (a 429, a 5xx, a refused connection): in the event log, with its reason
 * and when the next attempt starts, and on the step's part, as opencode's `retry` status shows it.
 */
const noteRetry = (context: ToolContext, retry: ModelRetry) =>
  // Logged by the provider's retry loop, with its reason; counted here for `/metrics`.
  Metric.increment(Metrics.modelRetries).pipe(
    Effect.zipRight(context.event("model.retry", { attempt: retry.attempt, reason: retry.reason, delayMs: retry.delayMillis, nextAt: retry.nextAt })),
    Effect.zipRight(context.output(`[retry ${retry.attempt} in ${Duration.format(Duration.millis(retry.delayMillis))}: ${retry.reason}]\n`)),
    Effect.catchAllCause((cause) => Effect.logWarning("could not record a model call's retry", cause))
  )

/** The agent loop of a session service: what a turn of a prompt writes and runs. */
export interface AgentLoop {
  /** Writes the prompt a turn starts from (a part born completed), before the turn runs. */
  readonly writePrompt: (sessionId: SessionId, text: string) => Effect.Effect<Part>
  /**
   * Runs a turn: model step, tool calls, their results back to the model, until it stops; the
   * model's last text is the turn's. Each step first checks that `turnId` still holds the session.
   */
  readonly run: (sessionId: SessionId, turnId: string, model: LanguageModelShape) => Effect.Effect<string, PartEnded>
}

/**
 * The agent loop over a registry of tools. The registry is read when a turn runs, not here: the
 * session service adds `task` and `ask` to it after this, since they need the service itself.
 * Whether a turn still holds its session is the service's to say (it owns the claims).
 */
export const makeAgentLoop = Effect.fnUntraced(function*(options: {
  readonly tools: ReadonlyMap<string, AnyTool>
  readonly holdsClaim: (sessionId: SessionId, turnId: string) => Effect.Effect<boolean>
}) {
  const parts = yield* PartRepo
  const runner = yield* ToolRunner
  const events = yield* Events
  const lease = yield* InstanceLease
  const settings = yield* Settings
  const { tools, holdsClaim } = options

  /** A part that is born terminal: the prompt, the assistant's text, a tool call refused up front. */
  const insertEnded = Effect.fnUntraced(function*(
    fields: Pick<Part, "sessionId" | "kind" | "tool" | "input" | "status" | "output" | "error" | "callId">
  ) {
    const now = yield* Clock.currentTimeMillis
    const part = newPart({ ...fields, ownerId: lease.id, createdAt: now, startedAt: now, endedAt: now })
    yield* parts.insert(part)
    yield* events.publish({ type: "part.updated", part })
    return part
  })

  const insertFinished = (sessionId: SessionId, kind: "prompt" | "text", text: string) =>
    insertEnded({ sessionId, kind, tool: "", input: null, callId: null, status: "completed", output: text, error: null })

  /** A tool call the model made that cannot run still gets a (failed) part, so it has a result. */
  const insertRefusedCall = (sessionId: SessionId, callId: string, name: string, input: unknown, message: string) =>
    insertEnded({ sessionId, kind: "tool", tool: name, input, callId, status: "error", output: null, error: new ToolFailed({ message }) })

  const toolSpecs = () =>
    [...tools.values()].map((tool) => ({ name: tool.name, description: tool.description, parameters: JSONSchema.make(tool.input) }))

  const run = (sessionId: SessionId, turnId: string, model: LanguageModelShape): Effect.Effect<string, PartEnded> =>
    Effect.gen(function*() {
      let finalText = ""
      // Read once per turn, then appended to as the turn adds parts: a step's cost does not grow
      // with the session's history (re-reading it each step made a 200-step turn 14× slower at
      // 6,000 parts than at 400). Only this turn adds parts to a busy session.
      const history = historyOf(yield* parts.bySession(sessionId))
      for (let step = 0; step < maxSteps; step++) {
        if (!(yield* holdsClaim(sessionId, turnId))) {
          yield* Effect.logWarning("the turn lost its session (ended elsewhere); it stops", { session: sessionId, turn: turnId })
          return yield* new PartEnded({ reason: new SessionCancelled({ by: `the end of turn ${turnId} elsewhere` }) })
        }
        const messages = history.slice()
        const handle = yield* runner.execute<ModelResponse>({
          sessionId,
          kind: "model",
          name: model.name,
          input: { step },
          timeout: settings.toolTimeout,
          render: (response) =>
            [response.text, ...response.toolCalls.map((call) => `→ ${call.name}(${JSON.stringify(call.input)})`)]
              .filter((line) => line !== "")
              .join("\n"),
          body: (context) =>
            Clock.currentTimeMillis.pipe(
              Effect.flatMap((now) =>
                model.generate({
                  messages,
                  tools: toolSpecs(),
                  onText: context.output,
                  onRetry: (retry) => noteRetry(context, retry),
                  deadlineAt: Option.getOrUndefined(Option.map(settings.toolTimeout, (timeout) => now + Duration.toMillis(timeout)))
                })
              ),
              Effect.mapError((error) => new ToolError({ message: `model ${model.name}: ${error.message}` }))
            )
        })
        const outcome = yield* handle.await
        if (outcome._tag === "Failed") return yield* new PartEnded({ reason: outcome.reason })
        const response = outcome.value
        if (response.text !== "") {
          finalText = response.text
          history.push(...messagesOfPart(yield* insertFinished(sessionId, "text", response.text)))
        }
        if (response.toolCalls.length === 0) return finalText
        // The step's calls go back as one assistant message with all of them, then the results.
        const stepCalls: Array<[Message, Message]> = []
        for (const call of response.toolCalls) {
          const tool = tools.get(call.name)
          if (tool === undefined) {
            const refused = yield* insertRefusedCall(sessionId, call.id, call.name, call.input, `unknown tool "${call.name}" (known: ${[...tools.keys()].join(", ")})`)
            stepCalls.push(toolCallMessages({ callId: call.id, name: call.name, input: call.input }, refused))
            continue
          }
          const run = yield* runner.runTool({ sessionId, tool, input: call.input, callId: call.id })
          const ended = yield* run.await
          // The outcome as recorded (capped as the store caps it), so the messages are those a re-read would give.
          stepCalls.push(toolCallMessages({ callId: call.id, name: tool.name, input: call.input }, {
            status: ended._tag === "Completed" ? "completed" : "error",
            output: ended.output === null ? null : capOutput(ended.output),
            error: ended._tag === "Failed" ? ended.reason : null
          }))
        }
        history.push(...stepCallMessages(stepCalls))
      }
      return yield* new PartEnded({ reason: new ToolFailed({ message: `the turn stopped after ${maxSteps} model steps` }) })
    })

  return {
    writePrompt: (sessionId, text) => insertFinished(sessionId, "prompt", text),
    run
  } satisfies AgentLoop
})
