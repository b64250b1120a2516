import type { ModelRequest, ModelResponse } from "@vigil/runtime"
import { ModelError } from "@vigil/runtime"
import { Duration, Effect, Either, Option, Redacted } from "effect"
import type { ProviderSettings } from "./ProviderConfig.js"
import { makeRedactor } from "./Redaction.js"

/**
 * How a provider's model fails, the same whatever API serves it (chat completions here, or
 * `@effect/ai`): every failure is a `ModelError` that names the provider, says the problem in the
 * provider's own words where it gave some, and never holds a configured key nor a fragment of one.
 */

/** What makes one model of a provider, whatever its API. */
export interface ModelOptions {
  readonly provider: ProviderSettings
  /** The id sent to the provider. */
  readonly model: string
  /** What a prompt names it (`<provider>/<key under models>`); by default `<provider>/<model>`. */
  readonly name?: string
  /** Every configured key, hidden from every message; by default this provider's. */
  readonly secrets?: ReadonlyArray<string>
}

/**
 * A model's failures: `fail` scrubs and names the provider; `silent` is the inactivity timeout's
 * failure, `withRequestTimeout` bounds a whole call by the provider's `timeout` option.
 */
export const modelFailures = (options: ModelOptions) => {
  const { provider } = options
  const scrub = makeRedactor(options.secrets ?? Option.toArray(Option.map(provider.apiKey, Redacted.value)))
  const fail = (problem: string) => new ModelError({ message: scrub(`provider ${provider.id}: ${problem}`) })
  return {
    name: options.name ?? `${provider.id}/${options.model}`,
    scrub,
    fail,
    silent: (timeout: Duration.Duration) =>
      fail(`the provider sent nothing for ${formatMillis(timeout)} (provider.${provider.id}.options.${provider.inactivityKey ?? "inactivityTimeout"})`),
    withRequestTimeout: (generate: (request: ModelRequest) => Effect.Effect<ModelResponse, ModelError>) =>
    (request: ModelRequest): Effect.Effect<ModelResponse, ModelError> =>
      Option.match(provider.requestTimeout, {
        onNone: () => generate(request),
        onSome: (timeout) =>
          Effect.timeoutFail(generate(request), {
            duration: timeout,
            onTimeout: () => fail(`the call took longer than ${formatMillis(timeout)} (provider.${provider.id}.options.timeout)`)
          })
      })
  }
}

export const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

export const snippet = (text: string, max = 200) => {
  const flat = text.replace(/\s+/g, " ").trim()
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat
}

export const formatMillis = (duration: Duration.Duration): string => {
  const millis = Math.round(Duration.toMillis(duration))
  return millis < 1000 ? `${millis} ms` : `${Number((millis / 1000).toFixed(3))} s`
}

/** The socket-level reason under a transport error (node puts the errno code on the error or its cause). */
export const transportProblem = (cause: unknown): string => {
  const seen = new Set<unknown>()
  const queue: Array<unknown> = [cause]
  while (queue.length > 0) {
    const current = queue.shift()
    if (!isRecord(current) && !(current instanceof Error)) continue
    if (seen.has(current)) continue
    seen.add(current)
    switch ((current as { code?: unknown }).code) {
      case "ECONNREFUSED":
        return "connection refused"
      case "ENOTFOUND":
      case "EAI_AGAIN":
        return "host not found"
      case "ECONNRESET":
        return "connection reset by the server"
      case "ETIMEDOUT":
        return "connection timed out"
      case "EHOSTUNREACH":
      case "ENETUNREACH":
        return "host unreachable"
    }
    queue.push((current as { cause?: unknown }).cause)
    const errors = (current as { errors?: unknown }).errors
    if (Array.isArray(errors)) queue.push(...errors)
  }
  return cause instanceof Error ? cause.message : String(cause)
}

/** The provider's own words in an error body: OpenAI's `{ error: { message } }` and its cousins. */
export const providerErrorMessage = (body: string): string => {
  const parsed = Either.try(() => JSON.parse(body) as unknown)
  if (Either.isRight(parsed) && isRecord(parsed.right)) {
    const json = parsed.right
    const error = json["error"]
    if (isRecord(error) && typeof error["message"] === "string") return snippet(error["message"], 500)
    // `{ error: "TypeError", message: "..." }` (@dwmkerr/mock-llm's crash, Express-style handlers):
    // the name alone says nothing, the message is what went wrong.
    if (typeof error === "string" && typeof json["message"] === "string" && json["message"].trim() !== "") {
      return snippet(`${error}: ${json["message"]}`, 500)
    }
    if (typeof error === "string") return snippet(error, 500)
    if (typeof json["message"] === "string") return snippet(json["message"], 500)
    if (typeof json["detail"] === "string") return snippet(json["detail"], 500)
  }
  return snippet(body, 300)
}

/** A URL as shown in an error: no user or password, should one be in it. */
export const displayURL = (url: string) => {
  try {
    const parsed = new URL(url)
    return `${parsed.protocol}//${parsed.host}${parsed.pathname.replace(/\/+$/, "")}`
  } catch {
    return url
  }
}

