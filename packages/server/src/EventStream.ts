import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Part, Session, SupervisionEvent } from "@vigil/domain"
import type { LiveEvent } from "@vigil/runtime"
import { Events, SessionService } from "@vigil/runtime"
import { Context, Deferred, Duration, Effect, Either, Layer, Option, Schedule, Schema, Stream } from "effect"

/** How often an idle stream sends a comment, so proxies and clients keep the connection open. */
const keepAliveInterval = Duration.seconds(15)
/** How long a stream that did not end by itself at a stop still has to send what it holds. */
const closeGrace = Duration.seconds(1)

/**
 * Completed when the server starts to stop, after open event streams were ended. The stop runs in
 * this order (this layer's finalizer, after the HTTP handler is detached and before the server
 * closes its connections): every turn ends (their parts recorded and published as they end), what
 * was published reaches each open stream, then the streams end, so a client hears the final state
 * of every part the stop ended; only then can the HTTP server close its connections.
 */
export class StreamsClosing extends Context.Tag("vigil/server/StreamsClosing")<StreamsClosing, Deferred.Deferred<void>>() {
  static readonly layer = Layer.scoped(
    StreamsClosing,
    Effect.gen(function*() {
      const events = yield* Events
      const sessions = yield* Effect.serviceOption(SessionService)
      const closing = yield* Deferred.make<void>()
      yield* Effect.addFinalizer(() =>
        Option.match(sessions, { onNone: () => Effect.void, onSome: (service) => service.shutdown }).pipe(
          Effect.catchAllCause((cause) => Effect.logWarning("ending the turns before the streams failed", cause)),
          Effect.zipRight(events.endStreams),
          Effect.ensuring(Deferred.succeed(closing, undefined))
        )
      )
      return closing
    })
  )
}

/** How long a client waits before it reconnects (the SSE `retry:`), in milliseconds. */
const retryMillis = 1_000

// Structs rather than the classes: events carry plain objects as well as class instances.
const encodeSession = Schema.encodeEither(Schema.Struct(Session.fields))
const encodePart = Schema.encodeEither(Schema.Struct(Part.fields))
const encodeEvent = Schema.encodeEither(Schema.Struct(SupervisionEvent.fields))

const encoded = <A>(result: Either.Either<unknown, unknown>, raw: A): unknown => Either.getOrElse(result, () => raw)

/** The JSON object sent for an event: always with its `type`. */
export const eventJson = (event: LiveEvent): Record<string, unknown> => {
  switch (event.type) {
    case "session.updated":
      return { type: event.type, session: encoded(encodeSession(event.session), event.session) }
    case "part.updated":
      return { type: event.type, part: encoded(encodePart(event.part), event.part) }
    case "recovery.completed":
      return { type: event.type, report: event.report }
    case "stream.overflow":
      return { type: event.type, limit: event.limit, message: event.message, lastId: event.lastId }
    case "stream.truncated":
      return { type: event.type, before: event.before, message: event.message }
    case "part.delta":
      return { type: event.type, partId: event.partId, sessionId: event.sessionId, offset: event.offset, text: event.text }
    case "watchdog.action":
    case "idle.cancelled":
    case "supervision":
      return { type: event.type, event: encoded(encodeEvent(event.event), event.event) }
  }
}

/**
 * One Server-Sent Events message: `id: <position>` when the log holds it (a client resumes from
 * it), `event: <type>`, `data: <json>`, a blank line.
 */
const sseMessage = (event: LiveEvent, id: number | null = null): string =>
  `${id === null ? "" : `id: ${id}\n`}event: ${event.type}\ndata: ${JSON.stringify(eventJson(event))}\n\n`

/**
 * Where a client resumes: the `Last-Event-ID` header (what an EventSource sends on reconnecting),
 * else `?since=` (for curl). `undefined`: a fresh stream; `null`: a bad value.
 */
const resumeFrom = (request: HttpServerRequest.HttpServerRequest): number | undefined | null => {
  const header = request.headers["last-event-id"]
  const query = new URL(request.url, "http://localhost").searchParams.get("since")
  const raw = header !== undefined && header !== "" ? header : query
  if (raw === null || raw === undefined || raw === "") return undefined
  return /^\d{1,15}$/.test(raw.trim()) ? Number(raw.trim()) : null
}

/**
 * `GET /event`. The subscription is taken before the first byte (a `: connected` comment, `retry:`,
 * the position as `id:`) is sent, so a client that saw it misses nothing published afterwards.
 * With `Last-Event-ID` or `?since=`, what the log holds after that id comes first, then the live
 * events, each once.
 */
export const eventStreamResponse = Effect.gen(function*() {
  const events = yield* Events
  const closing = yield* StreamsClosing
  const request = yield* HttpServerRequest.HttpServerRequest
  const since = resumeFrom(request)
  if (since === null) {
    return HttpServerResponse.unsafeJson(
      { _tag: "BadRequest", message: "Last-Event-ID / since must be an event id (a non-negative integer)" },
      { status: 400 }
    )
  }
  const body = Stream.unwrapScoped(
    Effect.map(events.open({ since }), ({ events: live, position }) =>
      // The comment first: a reader that takes a block starting with `:` as a comment sees it so.
      Stream.make(`: connected\nretry: ${retryMillis}\n${since === undefined && position > 0 ? `id: ${position}\n` : ""}\n`).pipe(
        Stream.concat(
          Stream.merge(
            live.pipe(Stream.map(({ event, id }) => sseMessage(event, id))),
            Stream.repeatEffectWithSchedule(Effect.succeed(": keep-alive\n\n"), Schedule.spaced(keepAliveInterval)).pipe(
              Stream.drop(1)
            ),
            { haltStrategy: "left" }
          )
        )
      ))
  ).pipe(
    // The streams end on their own at a stop (`StreamsClosing`), after the final states; this is
    // the bound for one that could not (a client that stopped reading holds its last events).
    Stream.interruptWhen(Deferred.await(closing).pipe(Effect.zipRight(Effect.sleep(closeGrace)))),
    Stream.encodeText
  )
  return HttpServerResponse.stream(body, {
    contentType: "text/event-stream",
    // `connection: close`: once the stream ends (at shutdown) the socket goes with it, instead
    // of lingering as a keep-alive connection the server would wait for.
    headers: { "cache-control": "no-cache", "x-accel-buffering": "no", connection: "close" }
  })
})
