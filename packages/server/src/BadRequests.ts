import type { HttpApp } from "@effect/platform"
import {
  Headers,
  HttpIncomingMessage,
  HttpMethod,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse,
  UrlParams
} from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import type { IncomingMessage } from "node:http"
import { Cause, Effect, Option } from "effect"

/** The largest request body read: a tool call or a prompt is text, never an upload. */
export const maxBodyBytes = 1024 * 1024

const jsonError = (status: number, tag: string, message: string) =>
  HttpServerResponse.unsafeJson({ _tag: tag, message }, { status })

const tooLarge = jsonError(413, "PayloadTooLarge", `the request body is larger than ${maxBodyBytes} bytes (1 MiB)`)

const describeCause = (cause: unknown): string =>
  cause instanceof Error ? cause.message : typeof cause === "string" ? cause : "unreadable body"

/**
 * The answer for what fails before a handler runs and is not a schema error (HttpApi answers
 * those itself, 400 with the issues): a body that is not JSON, a body over the limit, an unknown
 * route. Each is a JSON error naming the problem. Typed errors (the domain's, mapped to their
 * statuses by the API) go on to HttpApi; any other defect is logged and answered 500 in JSON.
 */
const respondTo = <E>(cause: Cause.Cause<E>): Effect.Effect<HttpServerResponse.HttpServerResponse, E> => {
  if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
  const error = Option.orElse(Cause.failureOption(cause) as Option.Option<unknown>, () => Cause.dieOption(cause))
  if (Option.isSome(error) && HttpServerError.isServerError(error.value)) {
    const serverError = error.value
    if (serverError._tag === "RequestError") {
      const problem = describeCause(serverError.cause)
      if (problem.includes("maxBytes exceeded")) return Effect.succeed(tooLarge)
      return Effect.succeed(jsonError(
        400,
        "BadRequest",
        serverError.cause instanceof SyntaxError
          ? `the request body is not valid JSON: ${problem}`
          : `the request body could not be read: ${serverError.description ?? problem}`
      ))
    }
    if (serverError._tag === "RouteNotFound") {
      return Effect.succeed(
        jsonError(404, "RouteNotFound", `no route ${serverError.request.method} ${serverError.request.url}`)
      )
    }
  }
  if (Option.isSome(Cause.failureOption(cause))) return Effect.failCause(cause)
  return Effect.logError("request failed", cause).pipe(
    Effect.as(jsonError(500, "InternalError", "the server could not handle this request; see its log"))
  )
}

/** Past this much, an oversized body is no longer drained for a clean 413: the connection is cut. */
const maxDrainBytes = 64 * maxBodyBytes

type LimitedBody =
  | { readonly _tag: "Body"; readonly text: string }
  | { readonly _tag: "TooLarge" }
  | { readonly _tag: "Failed"; readonly cause: unknown }

/**
 * Reads a body sent without a length, up to the limit. Past it the rest is drained, not
 * destroyed (the platform's reader destroys the socket, so the client would never see the 413).
 */
const readLimited = (source: IncomingMessage): Effect.Effect<LimitedBody> =>
  Effect.async<LimitedBody>((resume) => {
    const chunks: Array<Buffer> = []
    let bytes = 0
    source.on("data", (chunk: Buffer) => {
      bytes += chunk.length
      if (bytes <= maxBodyBytes) chunks.push(chunk)
      else if (bytes > maxDrainBytes) {
        source.destroy()
        resume(Effect.succeed({ _tag: "TooLarge" }))
      }
    })
    source.once("end", () =>
      resume(Effect.succeed(bytes > maxBodyBytes ? { _tag: "TooLarge" } : { _tag: "Body", text: Buffer.concat(chunks).toString("utf8") }))
    )
    source.once("error", (cause) => resume(Effect.succeed({ _tag: "Failed", cause })))
  })

/** The same request, with a body already read: what HttpApi decodes reads from `text`. */
const withBodyText = (
  request: HttpServerRequest.HttpServerRequest,
  text: string
): HttpServerRequest.HttpServerRequest => {
  const decodeError = (cause: unknown) => new HttpServerError.RequestError({ request, reason: "Decode", cause })
  const body: Record<PropertyKey, unknown> = {
    text: Effect.succeed(text),
    json: Effect.try({ try: () => (text === "" ? null : JSON.parse(text)) as unknown, catch: decodeError }),
    arrayBuffer: Effect.sync(() => new TextEncoder().encode(text).buffer),
    urlParamsBody: Effect.try({
      try: () => UrlParams.fromInput(new URLSearchParams(text)),
      catch: decodeError
    })
  }
  return new Proxy(request, {
    get: (target, key) => (key in body ? body[key] : Reflect.get(target, key, target))
  })
}

/**
 * Every body is read as JSON, whatever its content type says: this API takes nothing else, and
 * `curl -d` sends JSON labelled as a form (which would otherwise decode as an empty object).
 */
const asJson = (request: HttpServerRequest.HttpServerRequest): HttpServerRequest.HttpServerRequest =>
  !HttpMethod.hasBody(request.method) || (request.headers["content-type"] ?? "").toLowerCase().includes("application/json")
    ? request
    : request.modify({ headers: Headers.set(request.headers, "content-type", "application/json") })

/**
 * Limits the body to `maxBodyBytes` and turns request failures into JSON errors. A declared
 * length over the limit is refused before anything is read; a body without a length (chunked)
 * is read here within the limit; the platform's own limit stays set behind both.
 */
export const badRequests = <E, R>(
  app: HttpApp.Default<E, R>
): HttpApp.Default<E, R | HttpServerRequest.HttpServerRequest> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (original) => {
    const request = asJson(original)
    const run = (request: HttpServerRequest.HttpServerRequest) =>
      app.pipe(
        HttpIncomingMessage.withMaxBodySize(Option.some(maxBodyBytes)),
        Effect.catchAllCause(respondTo),
        Effect.provideService(HttpServerRequest.HttpServerRequest, request)
      )
    const length = request.headers["content-length"]
    if (length !== undefined) {
      const declared = Number(length)
      return Number.isFinite(declared) && declared > maxBodyBytes ? Effect.succeed(tooLarge) : run(request)
    }
    if (!HttpMethod.hasBody(request.method) || request.headers["transfer-encoding"] === undefined) return run(request)
    return Effect.flatMap(readLimited(NodeHttpServerRequest.toIncomingMessage(original)), (body) => {
      switch (body._tag) {
        case "TooLarge":
          return Effect.succeed(tooLarge)
        case "Failed":
          return Effect.succeed(jsonError(400, "BadRequest", `the request body could not be read: ${describeCause(body.cause)}`))
        case "Body":
          return run(withBodyText(request, body.text))
      }
    })
  })
