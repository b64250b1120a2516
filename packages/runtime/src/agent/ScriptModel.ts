import { Duration, Effect, Either, Layer, ParseResult, Schema } from "effect"
import type { LanguageModelShape, Message, ModelResponse, ToolCall } from "./LanguageModel.js"
import { LanguageModels, ModelError } from "./LanguageModel.js"

/**
 * The offline model: the prompt is a JSON array of steps, run in order. A tool step ends a model
 * call with that call; the next model call picks up after it (the position is the number of tool
 * results since the prompt), so every failure is reproducible without a network.
 */
export const ScriptStep = Schema.Union(
  Schema.Struct({ tool: Schema.String, input: Schema.optionalWith(Schema.Unknown, { default: () => ({}) }) }),
  Schema.Struct({ text: Schema.String }),
  Schema.Struct({ sleep: Schema.Number.pipe(Schema.nonNegative()) }),
  Schema.Struct({ hang: Schema.Literal(true) })
)
export type ScriptStep = typeof ScriptStep.Type
export const Script = Schema.Array(ScriptStep)

const decodeScript = Schema.decodeUnknownEither(Schema.parseJson(Script))

export const parseScript = (text: string): Either.Either<ReadonlyArray<ScriptStep>, string> =>
  Either.mapLeft(
    decodeScript(text),
    (error) => `the prompt is not a valid script (a JSON array of steps): ${ParseResult.TreeFormatter.formatErrorSync(error)}`
  )

/** A provider call that never answers and ignores cancellation: the worst case a supervisor meets. */
const hang = Effect.uninterruptible(Effect.never)

export const scriptModel: LanguageModelShape = {
  name: "script",
  generate: (request) =>
    Effect.gen(function*() {
      const lastPrompt = request.messages.findLastIndex((message) => message.role === "user")
      const prompt = request.messages[lastPrompt] as Extract<Message, { role: "user" }> | undefined
      if (prompt === undefined) return yield* new ModelError({ message: "no prompt to run" })
      const steps = yield* Either.match(parseScript(prompt.text), {
        onLeft: (message) => Effect.fail(new ModelError({ message })),
        onRight: Effect.succeed
      })
      const consumed = request.messages.slice(lastPrompt + 1).filter((message) => message.role === "tool").length
      let index = 0
      for (let seen = 0; seen < consumed && index < steps.length; index++) {
        if ("tool" in steps[index]!) seen++
      }
      const text: Array<string> = []
      const toolCalls: Array<ToolCall> = []
      for (; index < steps.length && toolCalls.length === 0; index++) {
        const step = steps[index]!
        if ("text" in step) {
          text.push(step.text)
          yield* request.onText(step.text)
        } else if ("sleep" in step) {
          yield* Effect.sleep(Duration.millis(step.sleep))
        } else if ("hang" in step) {
          yield* hang
        } else {
          toolCalls.push({ id: `call_${consumed}`, name: step.tool, input: step.input })
        }
      }
      return { text: text.join("\n"), toolCalls } satisfies ModelResponse
    })
}

export const ScriptModelLive = Layer.succeed(LanguageModels, {
  defaultModel: "script",
  models: new Map([["script", scriptModel]])
})
