/**
 * A language model on any OpenAI-compatible chat-completions endpoint, written directly on
 * `@effect/platform`'s HttpClient. OpenAI's and Anthropic's own APIs go through `@effect/ai`
 * (EffectAi.ts); for the local servers this client is for, `@effect/ai-openai` does not fit:
 * - `@effect/ai-openai`'s language model speaks OpenAI's Responses API (`POST /responses`). The
 *   servers an "OpenAI-compatible" provider means (llama.cpp, vLLM, Ollama, LM Studio, gateways)
 *   have `/chat/completions` in common, not `/responses`. Reaching that route through the package
 *   means its low-level `streamRequest` with our own chunk schema, our own tool-call accumulation and
 *   our own message mapping: everything below, plus its weight.
 * - Its SSE decoding skips frames it cannot decode (by design, for OpenAI's keep-alive events),
 *   where a malformed chunk must end the step with a clear error here.
 * - Its errors (`AiError`) would have to be taken apart again to say "HTTP 429: <the provider's
 *   message>" or "connection refused", and it brings `@effect/experimental` and `@effect/rpc` as
 *   peers for no gain here.
 * A custom base URL and an inactivity timeout it could have done (`apiUrl`, `Stream.timeoutFail`).
 *
 * What this adds to the runner's supervision (deadline, abort grace): a stream inactivity timeout,
 * clear errors, and a request that is aborted on interruption (HttpClient aborts the request when
 * the fiber reading it is interrupted, and the response stream when it ends).
 */
import type { HttpClientError } from "@effect/platform"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import type { LanguageModelShape, Message, ModelRequest, ModelResponse, ToolCall, ToolSpec } from "@vigil/runtime"
import { ModelError } from "@vigil/runtime"
import { Effect, Either, Option, Stream } from "effect"
import { randomUUID } from "node:crypto"
import type { ModelOptions } from "./ProviderFailures.js"
import { displayURL, isRecord, modelFailures, providerErrorMessage, snippet, transportProblem } from "./ProviderFailures.js"
import type { AttemptFailure } from "./Retry.js"
import { isRetryableStatus, withRetries } from "./Retry.js"

interface WireToolCall {
  readonly id: string
  readonly type: "function"
  readonly function: { readonly name: string; readonly arguments: string }
}

type WireMessage =
  | { readonly role: "user"; readonly content: string }
  | { readonly role: "assistant"; readonly content: string | null; readonly tool_calls?: ReadonlyArray<WireToolCall> }
  | { readonly role: "tool"; readonly tool_call_id: string; readonly content: string }

const wireToolCall = (call: ToolCall): WireToolCall => ({
  id: call.id,
  type: "function",
  function: { name: call.name, arguments: JSON.stringify(call.input ?? {}) }
})

/**
 * The history as chat-completions messages. The history keeps an answer's text and each of its
 * tool calls apart; text directly followed by a call is sent as one assistant message, as the
 * model produced it (some servers' chat templates refuse two assistant turns in a row).
 */
export const toWireMessages = (messages: ReadonlyArray<Message>): Array<WireMessage> => {
  const wire: Array<WireMessage> = []
  for (const message of messages) {
    switch (message.role) {
      case "user":
        wire.push({ role: "user", content: message.text })
        break
      case "assistant": {
        const previous = wire[wire.length - 1]
        if (
          previous?.role === "assistant" && previous.tool_calls === undefined && previous.content !== null &&
          message.text === "" && message.toolCalls.length > 0
        ) {
          wire[wire.length - 1] = { role: "assistant", content: previous.content, tool_calls: message.toolCalls.map(wireToolCall) }
        } else if (message.toolCalls.length > 0) {
          wire.push({ role: "assistant", content: message.text === "" ? null : message.text, tool_calls: message.toolCalls.map(wireToolCall) })
        } else {
          wire.push({ role: "assistant", content: message.text })
        }
        break
      }
      case "tool":
        wire.push({ role: "tool", tool_call_id: message.callId, content: message.output })
        break
    }
  }
  return wire
}

/** A tool offered to the model: its input schema as JSON Schema, without the `$schema` marker. */
export const toWireTool = (tool: ToolSpec) => {
  const parameters = typeof tool.parameters === "object" && tool.parameters !== null
    ? Object.fromEntries(Object.entries(tool.parameters).filter(([key]) => key !== "$schema"))
    : { type: "object", properties: {} }
  return { type: "function" as const, function: { name: tool.name, description: tool.description, parameters } }
}

/**
 * The data of server-sent events, one line at a time. An event's `data:` lines are joined with
 * "\n" and the event ends at a blank line, as SSE has it: a server that splits one JSON chunk over
 * several `data:` lines is read right. Some servers leave out the blank line between events; so a
 * `data:` line that follows data which is already a whole JSON value (or `[DONE]`) begins a new event.
 */
export const sseEvents = () => {
  let data: Array<string> = []
  const whole = (text: string) => text.trim() === "[DONE]" || Either.isRight(Either.try(() => JSON.parse(text) as unknown))
  const flush = (): Array<string> => {
    if (data.length === 0) return []
    const event = data.join("\n")
    data = []
    return [event.trim() === "[DONE]" ? "[DONE]" : event]
  }
  return {
    line: (line: string): Array<string> => {
      if (line.trim() === "") return flush()
      if (!line.startsWith("data:")) return []
      // One optional space after the colon is the separator; the rest is the data.
      const value = line.slice(line.startsWith("data: ") ? 6 : 5).replace(/\r$/, "")
      const out = data.length > 0 && whole(data.join("\n")) ? flush() : []
      data.push(value)
      return out
    },
    end: flush
  }
}

interface PendingCall {
  id: string | undefined
  name: string
  arguments: string
}

/**
 * One model of one provider: `generate` is a streamed chat completion. Every failure is a
 * `ModelError` whose message names the provider and the problem, and never holds an API key,
 * nor any fragment of one of 8 characters or more (`secrets`: every configured key; by default
 * this provider's). The model's text is scrubbed the same way: it is streamed and stored too.
 */
export const makeOpenAiCompatibleModel = (options: ModelOptions, client: HttpClient.HttpClient): LanguageModelShape => {
  const { model, provider } = options
  const shownURL = displayURL(provider.baseURL)
  const { fail, name, scrub, silent, withRequestTimeout } = modelFailures(options)

  const inactive = Option.map(provider.inactivityTimeout, (timeout) => ({ timeout, error: () => silent(timeout) }))
  /** Waiting for the response head, or for an error body, counts as silence too. */
  const quietFor = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E | ModelError> =>
    Option.match(inactive, {
      onNone: () => effect,
      onSome: ({ error, timeout }) => Effect.timeoutFail(effect, { duration: timeout, onTimeout: error })
    })

  const requestFailed = (error: HttpClientError.HttpClientError) =>
    error._tag === "RequestError" && error.reason === "InvalidUrl"
      ? fail(`invalid URL ${shownURL}/chat/completions`)
      : error._tag === "RequestError"
      ? fail(`cannot reach ${shownURL}: ${transportProblem(error.cause)}`)
      : fail(`the response from ${shownURL} broke off: ${transportProblem(error.cause)}`)

  const url = `${provider.baseURL}/chat/completions`

  const generate = (request: ModelRequest): Effect.Effect<ModelResponse, ModelError> =>
    Effect.gen(function*() {
      const body = {
        model,
        stream: true,
        messages: toWireMessages(request.messages),
        ...(request.tools.length > 0 ? { tools: request.tools.map(toWireTool) } : {})
      }
      const httpRequest = yield* HttpClientRequest.post(url).pipe(
        HttpClientRequest.setHeader("accept", "text/event-stream"),
        HttpClientRequest.setHeaders(provider.headers),
        Option.isSome(provider.apiKey) ? HttpClientRequest.bearerToken(provider.apiKey.value) : (self) => self,
        HttpClientRequest.bodyJson(body),
        Effect.mapError(() => fail("the request could not be encoded as JSON"))
      )
      // Opening the call is what is retried (a 429, a 5xx, a connection that failed before the
      // first byte); once the response is 2xx, whatever happens to its stream is the step's.
      const open = Effect.gen(function*() {
        const response = yield* quietFor(client.execute(httpRequest)).pipe(
          Effect.mapError((error): AttemptFailure =>
            error instanceof ModelError
              ? { error, retryable: false }
              : { error: requestFailed(error), retryable: error._tag === "RequestError" && error.reason === "Transport" }
          )
        )
        if (response.status >= 200 && response.status < 300) return response
        const text = yield* quietFor(response.text.pipe(Effect.mapError(requestFailed))).pipe(
          Effect.orElseSucceed(() => "")
        )
        const detail = text.trim() === "" ? "" : `: ${providerErrorMessage(text)}`
        return yield* Effect.fail<AttemptFailure>({
          error: fail(`HTTP ${response.status}${detail}`),
          retryable: isRetryableStatus(response.status),
          headers: response.headers
        })
      })
      const response = yield* withRetries({
        open,
        maxRetries: provider.maxRetries,
        model: `${provider.id}/${model}`,
        deadlineAt: request.deadlineAt,
        onRetry: request.onRetry
      })

      const text: Array<string> = []
      // In the order they began. `index` says which call a fragment continues, but some servers
      // (vLLM's, and others with parallel calls) give every call `index: 0`: a fragment bringing a
      // new id at an index whose call already has another id begins a new call.
      const calls: Array<PendingCall> = []
      const latestAt = new Map<number, PendingCall>()
      let done = false
      let finished = false

      /** One chunk (or, from a server that did not stream, the whole completion). */
      const takeChunk = Effect.fnUntraced(function*(data: string) {
        if (data === "[DONE]") {
          done = true
          return
        }
        const parsed = Either.try(() => JSON.parse(data) as unknown)
        if (Either.isLeft(parsed) || !isRecord(parsed.right)) {
          return yield* fail(`malformed chunk (not a JSON object): ${snippet(data)}`)
        }
        const chunk = parsed.right
        if (chunk["error"] !== undefined) {
          return yield* fail(`the provider reported an error: ${providerErrorMessage(data)}`)
        }
        const choices = chunk["choices"]
        // A chunk without choices (usage figures, say) carries nothing for us.
        if (!Array.isArray(choices) || choices.length === 0) return
        const choice: unknown = choices[0]
        if (!isRecord(choice)) return yield* fail(`malformed chunk (choices[0] is not an object): ${snippet(data)}`)
        if (typeof choice["finish_reason"] === "string") finished = true
        const delta = choice["delta"] ?? choice["message"]
        if (!isRecord(delta)) return
        const content = delta["content"]
        if (typeof content === "string" && content !== "") {
          const shown = scrub(content)
          text.push(shown)
          yield* request.onText(shown)
        } else {
          // A tool call's arguments or a reasoning model's thinking arrive as chunks without text:
          // progress all the same, so the idle rule does not take a busy model for a silent one.
          yield* request.onText("")
        }
        const toolCalls = delta["tool_calls"]
        if (!Array.isArray(toolCalls)) return
        for (const [position, fragment] of toolCalls.entries()) {
          if (!isRecord(fragment)) return yield* fail(`malformed chunk (a tool call is not an object): ${snippet(data)}`)
          const index = typeof fragment["index"] === "number" ? fragment["index"] : position
          const id = typeof fragment["id"] === "string" && fragment["id"] !== "" ? fragment["id"] : undefined
          let pending = latestAt.get(index)
          if (pending === undefined || (id !== undefined && pending.id !== undefined && pending.id !== id)) {
            pending = { id: undefined, name: "", arguments: "" }
            calls.push(pending)
            latestAt.set(index, pending)
          }
          if (id !== undefined) pending.id = id
          const fn = fragment["function"]
          if (isRecord(fn)) {
            // The name comes whole, once; a server that repeats it must not make it `readread`.
            if (typeof fn["name"] === "string" && pending.name === "") pending.name = fn["name"]
            if (typeof fn["arguments"] === "string") pending.arguments += fn["arguments"]
            // Some servers (Ollama's, some gateways) send the arguments parsed, as an object.
            else if (isRecord(fn["arguments"])) pending.arguments += JSON.stringify(fn["arguments"])
          }
        }
      })

      const contentType = response.headers["content-type"] ?? ""
      if (contentType.includes("application/json")) {
        // A server that ignored `stream: true` answers with the whole completion at once.
        const whole = yield* quietFor(response.text.pipe(Effect.mapError(requestFailed)))
        yield* takeChunk(whole)
        finished = true
      } else {
        const events = sseEvents()
        const payloads = response.stream.pipe(
          Stream.mapError(requestFailed),
          (stream) =>
            Option.match(inactive, {
              onNone: () => stream,
              onSome: ({ error, timeout }) => Stream.timeoutFail(stream, error, timeout)
            }),
          Stream.decodeText(),
          Stream.splitLines,
          Stream.mapConcat(events.line),
          Stream.concat(Stream.suspend(() => Stream.fromIterable(events.end()))),
          Stream.takeUntil((data) => data === "[DONE]")
        )
        yield* Stream.runForEach(payloads, takeChunk)
        if (!done && !finished) return yield* fail("the stream ended before the answer was complete (no [DONE])")
      }

      const toolCalls: Array<ToolCall> = []
      for (const [index, call] of calls.entries()) {
        const id = call.id ?? `call_${randomUUID().replaceAll("-", "").slice(0, 24)}`
        if (call.name === "") return yield* fail(`tool call #${index} (${id}) has no function name`)
        const input = call.arguments.trim() === ""
          ? Either.right<unknown>({})
          : Either.try(() => JSON.parse(call.arguments) as unknown)
        if (Either.isLeft(input)) {
          return yield* fail(`the arguments of tool call ${call.name} (${id}) are not valid JSON: ${snippet(call.arguments)}`)
        }
        toolCalls.push({ id, name: call.name, input: input.right })
      }
      return { text: text.join(""), toolCalls } satisfies ModelResponse
    })

  return { name, generate: withRequestTimeout(generate) }
}
