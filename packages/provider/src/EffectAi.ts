/**
 * A provider through `@effect/ai`'s `LanguageModel`: how the common providers plug in
 * (`@effect/ai-anthropic`'s Messages API, `@effect/ai-openai`'s Responses API), with vigil's
 * supervision kept around it. The library streams the call; this adapter adds what the runner
 * needs of any model: every part is progress (`onText`), a stream that goes quiet past the
 * inactivity timeout fails, errors name the provider and its own words (never a key), the whole
 * call has its timeout, and the opening is retried as the chat-completions client's is (a stream
 * that gave a part is never re-run). The step's deadline and the abort grace are the runner's:
 * interrupting the fiber aborts the request (HttpClient aborts it when the fiber reading it ends).
 */
import type { AiError } from "@effect/ai"
import type { Toolkit } from "@effect/ai"
import { LanguageModel, Prompt, Tool } from "@effect/ai"
import type { HttpClient } from "@effect/platform"
import { HttpClientRequest } from "@effect/platform"
import { HttpClient as Client } from "@effect/platform"
import type { LanguageModelShape, Message, ModelRequest, ModelResponse, ToolCall, ToolSpec } from "@vigil/runtime"
import { ModelError } from "@vigil/runtime"
import { Effect, Layer, Option, Schema, Stream } from "effect"
import type { ProviderApi, ProviderSettings } from "./ProviderConfig.js"
import type { ModelOptions } from "./ProviderFailures.js"
import { modelFailures, providerErrorMessage, transportProblem } from "./ProviderFailures.js"
import type { AttemptFailure } from "./Retry.js"
import { isRetryableStatus, withRetries } from "./Retry.js"

/** The history as `@effect/ai` prompt messages; a step's tool results go back as one tool message. */
export const toPrompt = (messages: ReadonlyArray<Message>): Prompt.Prompt => {
  const encoded: Array<Prompt.MessageEncoded> = []
  for (const message of messages) {
    switch (message.role) {
      case "user":
        encoded.push({ role: "user", content: message.text })
        break
      case "assistant": {
        const parts: Array<Prompt.AssistantMessagePartEncoded> = []
        if (message.text !== "") parts.push({ type: "text", text: message.text })
        for (const call of message.toolCalls) {
          parts.push({ type: "tool-call", id: call.id, name: call.name, params: call.input ?? {}, providerExecuted: false })
        }
        const previous = encoded[encoded.length - 1]
        // Text directly followed by its calls is one assistant turn, as the model produced it.
        if (previous?.role === "assistant" && typeof previous.content !== "string" && message.text === "") {
          encoded[encoded.length - 1] = { role: "assistant", content: [...previous.content, ...parts] }
        } else {
          encoded.push({ role: "assistant", content: parts })
        }
        break
      }
      case "tool": {
        const part: Prompt.ToolMessagePartEncoded = {
          type: "tool-result",
          id: message.callId,
          name: message.name,
          isFailure: message.isError,
          result: message.output,
          providerExecuted: false
        }
        const previous = encoded[encoded.length - 1]
        if (previous?.role === "tool") encoded[encoded.length - 1] = { role: "tool", content: [...previous.content, part] }
        else encoded.push({ role: "tool", content: [part] })
        break
      }
    }
  }
  return Prompt.make(encoded)
}

/**
 * A vigil tool as an `@effect/ai` tool: its JSON Schema as it is (the schema's `jsonSchema`
 * annotation is what the library sends), its input taken as it comes, since vigil decodes it.
 */
const toAiTool = (spec: ToolSpec) => {
  const jsonSchema = typeof spec.parameters === "object" && spec.parameters !== null
    ? Object.fromEntries(Object.entries(spec.parameters).filter(([key]) => key !== "$schema"))
    : { type: "object", properties: {} }
  const tool = Tool.make(spec.name, { description: spec.description })
  return Object.assign(Object.create(Object.getPrototypeOf(tool) as object) as typeof tool, tool, {
    parametersSchema: Schema.Unknown.annotations({ jsonSchema })
  })
}

/**
 * The tools offered, as a toolkit with handlers: the library's own resolution of calls is off
 * (`disableToolCallResolution`), since vigil runs each call under its runner, so `handle` is never
 * called; if it were, that is a defect.
 */
const offered = (tools: ReadonlyArray<ToolSpec>): Toolkit.WithHandler<Record<string, Tool.Any>> => ({
  tools: Object.fromEntries(tools.map((spec) => [spec.name, toAiTool(spec)])),
  handle: (name) => Effect.dieMessage(`@effect/ai asked to run tool ${String(name)}: vigil runs tools itself`)
})

/**
 * The layer of one model of one provider, on vigil's HTTP client (undici: aborted on interruption).
 * The provider's package is imported when its first model is built, not when vigil loads:
 * `@effect/ai-openai` alone holds 46 MB of heap (its generated schemas) and `@effect/ai-anthropic`
 * 24 MB, which a server with no such provider (or a 96 MB heap) must not pay, nor its start-up.
 */
const modelLayer = (
  api: Exclude<ProviderApi, "chat-completions">,
  provider: ProviderSettings,
  model: string,
  client: HttpClient.HttpClient
): Layer.Layer<LanguageModel.LanguageModel> => {
  const http = Layer.succeed(Client.HttpClient, client)
  const transformClient = (inner: HttpClient.HttpClient) =>
    Object.keys(provider.headers).length === 0 ? inner : Client.mapRequest(inner, HttpClientRequest.setHeaders(provider.headers))
  const apiKey = Option.getOrUndefined(provider.apiKey)
  const load = api === "anthropic"
    ? Effect.promise(() => import("@effect/ai-anthropic")).pipe(
      Effect.map(({ AnthropicClient, AnthropicLanguageModel }) =>
        AnthropicLanguageModel.layer({ model }).pipe(
          Layer.provide(AnthropicClient.layer({ apiKey, apiUrl: provider.baseURL, transformClient }))
        )
      )
    )
    : Effect.promise(() => import("@effect/ai-openai")).pipe(
      Effect.map(({ OpenAiClient, OpenAiLanguageModel }) =>
        OpenAiLanguageModel.layer({ model }).pipe(
          Layer.provide(OpenAiClient.layer({ apiKey, apiUrl: provider.baseURL, transformClient }))
        )
      )
    )
  return Layer.unwrapEffect(load).pipe(Layer.provide(http))
}

/** An `@effect/ai` error in the provider's own words: "HTTP 529: Overloaded", "cannot reach …". */
const describeAiError = (error: AiError.AiError, shownURL: string): { readonly problem: string; readonly failure: Omit<AttemptFailure, "error"> } => {
  switch (error._tag) {
    case "HttpResponseError": {
      const status = error.response.status
      const body = error.body === undefined ? "" : providerErrorMessage(error.body)
      if (error.reason === "StatusCode") {
        return {
          problem: `HTTP ${status}${body === "" ? "" : `: ${body}`}`,
          failure: { retryable: isRetryableStatus(status), headers: error.response.headers as Record<string, string> }
        }
      }
      return { problem: `the response from ${shownURL} could not be read (${error.reason}${body === "" ? "" : `: ${body}`})`, failure: { retryable: false } }
    }
    case "HttpRequestError":
      return {
        problem: error.reason === "Transport" ? `cannot reach ${shownURL}: ${transportProblem(error.cause)}` : `invalid request to ${shownURL} (${error.reason})`,
        failure: { retryable: error.reason === "Transport" }
      }
    case "MalformedOutput":
      return { problem: `malformed output: ${error.description ?? "the stream did not match the provider's schema"}`, failure: { retryable: false } }
    case "MalformedInput":
      return { problem: `the request could not be made: ${error.description ?? "malformed input"}`, failure: { retryable: false } }
    case "UnknownError":
      return { problem: error.description ?? "an unknown error", failure: { retryable: false } }
  }
}

/**
 * One model of a provider served through `@effect/ai`. `model` is the id sent; `name` is what a
 * prompt names it. Every failure is a `ModelError` scrubbed of every configured key.
 */
export const makeEffectAiModel = (
  options: ModelOptions & { readonly api: Exclude<ProviderApi, "chat-completions"> },
  client: HttpClient.HttpClient
): LanguageModelShape => {
  const { model, provider } = options
  const shownURL = provider.baseURL
  const { fail, name, scrub, silent, withRequestTimeout } = modelFailures(options)
  const layer = modelLayer(options.api, provider, model, client)

  const attempt = (request: ModelRequest) =>
    Effect.suspend(() => {
      const text: Array<string> = []
      const toolCalls: Array<ToolCall> = []
      // Once a part came, a failure is the step's: the stream is never re-run.
      let started = false
      const stream = LanguageModel.streamText({
        prompt: toPrompt(request.messages),
        toolkit: offered(request.tools),
        disableToolCallResolution: true
      }).pipe(
        Stream.mapError((error): AttemptFailure => {
          const { failure, problem } = describeAiError(error, shownURL)
          return { ...failure, retryable: failure.retryable && !started, error: fail(problem) }
        }),
        (parts) =>
          Option.match(provider.inactivityTimeout, {
            onNone: () => parts,
            onSome: (timeout) =>
              Stream.timeoutFail(parts, () => ({
                retryable: false,
                error: silent(timeout)
              }), timeout)
          })
      )
      return Stream.runForEach(stream, (part) =>
        Effect.gen(function*() {
          started = true
          switch (part.type) {
            case "text-delta": {
              const shown = scrub(part.delta)
              text.push(shown)
              return yield* request.onText(shown)
            }
            case "tool-call":
              toolCalls.push({ id: part.id, name: part.name, input: part.params })
              return yield* request.onText("")
            case "error":
              return yield* Effect.fail<AttemptFailure>({
                retryable: false,
                error: fail(`the provider reported an error: ${providerErrorMessage(JSON.stringify(part.error))}`)
              })
            default:
              // A tool call's arguments, reasoning, metadata: progress without text.
              return yield* request.onText("")
          }
        })
      ).pipe(
        Effect.provide(layer),
        Effect.map((): ModelResponse => ({ text: text.join(""), toolCalls }))
      )
    })

  const generate = (request: ModelRequest): Effect.Effect<ModelResponse, ModelError> =>
    withRetries({ open: attempt(request), maxRetries: provider.maxRetries, model: name, deadlineAt: request.deadlineAt, onRetry: request.onRetry })

  return { name, generate: withRequestTimeout(generate) }
}
