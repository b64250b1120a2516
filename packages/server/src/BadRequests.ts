import type { HttpApp } from "@effect/platform"
import {
  HttpIncomingMessage,
  HttpMethod,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse,
  UrlParams
} from "@effect/platform"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import type { IncomingMessage } from "node:http"
import { Cause, Effect, Option } from "effect"
import { routeMethods } from "./Api.js"

/** The largest request body read: a tool call or a prompt is text, never an upload. */
const maxBodyBytes = 1024 * 1024

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
      // A path that is served, with another method: 405 and the methods it takes, not "no route".
      const path = serverError.request.url.split("?")[0]!
      const allowed = routeMethods.find((route) => route.path.test(path))
      if (allowed !== undefined && !allowed.methods.includes(serverError.request.method.toUpperCase())) {
        return Effect.succeed(HttpServerResponse.unsafeJson({
          _tag: "MethodNotAllowed",
          message: `${serverError.request.method} is not a method of ${path}: use ${allowed.methods.join(", ")}`
        }, { status: 405, headers: { allow: allowed.methods.join(", ") } }))
      }
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
  | { readonly _tag: "Body"; readonly bytes: Buffer }
  | { readonly _tag: "TooLarge" }
  | { readonly _tag: "Failed"; readonly cause: unknown }

/**
 * Reads a body up to the limit. Past it the rest is drained, not destroyed (the platform's reader
 * destroys the socket, so the client would never see the 413).
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
      resume(Effect.succeed(bytes > maxBodyBytes ? { _tag: "TooLarge" } : { _tag: "Body", bytes: Buffer.concat(chunks) }))
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

/** Deeper than this, a body is refused before it is parsed: no tool input or prompt nests so. */
export const maxJsonDepth = 256

/**
 * How deep the JSON text nests, counted without parsing (brackets inside strings do not count).
 * Parsing would succeed, but what walks the value afterwards (validation, `JSON.stringify` into
 * the database) recurses and overflows the stack: a 100,000-deep input answered 500.
 */
export const jsonDepth = (text: string): number => {
  let depth = 0
  let deepest = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (inString) {
      if (code === 92) i++ // backslash: the next character is escaped
      else if (code === 34) inString = false
    } else if (code === 34) inString = true
    else if (code === 91 || code === 123) {
      if (++depth > deepest) deepest = depth
    } else if (code === 93 || code === 125) depth--
  }
  return deepest
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * The body's text, or the 400 that refuses it. Invalid UTF-8 is refused, not replaced with U+FFFD:
 * a command or a file's content would otherwise be run or written other than as sent.
 */
const decodeBody = (bytes: Buffer): { readonly _tag: "Text"; readonly text: string } | { readonly _tag: "Refused"; readonly message: string } => {
  let text: string
  try {
    text = strictUtf8.decode(bytes)
  } catch {
    return { _tag: "Refused", message: "the request body is not valid UTF-8: send JSON text encoded as UTF-8" }
  }
  const depth = jsonDepth(text)
  if (depth > maxJsonDepth) {
    return { _tag: "Refused", message: `the request body nests ${depth} levels deep; at most ${maxJsonDepth} are accepted` }
  }
  return { _tag: "Text", text }
}

/**
 * Limits the body to `maxBodyBytes`, refuses what is not UTF-8 or nests too deep, and turns request
 * failures into JSON errors. A declared length over the limit is refused before anything is read;
 * any other body is read here within the limit and checked before HttpApi decodes it; the
 * platform's own limit stays set behind both. (That it is JSON at all, RequestGuard checked.)
 */
export const badRequests = <E, R>(
  app: HttpApp.Default<E, R>
): HttpApp.Default<E, R | HttpServerRequest.HttpServerRequest> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const run = (request: HttpServerRequest.HttpServerRequest) =>
      app.pipe(
        HttpIncomingMessage.withMaxBodySize(Option.some(maxBodyBytes)),
        Effect.catchAllCause(respondTo),
        Effect.provideService(HttpServerRequest.HttpServerRequest, request)
      )
    const length = request.headers["content-length"]
    const declared = length === undefined ? undefined : Number(length)
    if (declared !== undefined && Number.isFinite(declared) && declared > maxBodyBytes) return Effect.succeed(tooLarge)
    const withBody = HttpMethod.hasBody(request.method) &&
      (request.headers["transfer-encoding"] !== undefined || (declared !== undefined && declared !== 0))
    if (!withBody) return run(request)
    return Effect.flatMap(readLimited(NodeHttpServerRequest.toIncomingMessage(request)), (body) => {
      switch (body._tag) {
        case "TooLarge":
          return Effect.succeed(tooLarge)
        case "Failed":
          return Effect.succeed(jsonError(400, "BadRequest", `the request body could not be read: ${describeCause(body.cause)}`))
        case "Body": {
          const decoded = decodeBody(body.bytes)
          return decoded._tag === "Refused"
            ? Effect.succeed(jsonError(400, "BadRequest", decoded.message))
            : run(withBodyText(request, decoded.text))
        }
      }
    })
  })
