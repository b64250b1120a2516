import { HttpServerResponse } from "@effect/platform"
import { Part, Session, SupervisionEvent } from "@vigil/domain"
import type { LiveEvent } from "@vigil/runtime"
import { Events } from "@vigil/runtime"
import { Context, Deferred, Duration, Effect, Either, Layer, Schedule, Schema, Stream } from "effect"

/** How often an idle stream sends a comment, so proxies and clients keep the connection open. */
export const keepAliveInterval = Duration.seconds(15)

/**
 * Completed when the server starts to stop: open event streams end then, so the HTTP server can
 * close its connections instead of waiting on clients that never hang up.
 */
export class StreamsClosing extends Context.Tag("vigil/server/StreamsClosing")<StreamsClosing, Deferred.Deferred<void>>() {
  static readonly layer = Layer.scoped(
    StreamsClosing,
    Effect.gen(function*() {
      const closing = yield* Deferred.make<void>()
      yield* Effect.addFinalizer(() => Deferred.succeed(closing, undefined))
      return closing
    })
  )
}

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
      return { type: event.type, limit: event.limit, message: event.message }
    case "watchdog.action":
    case "idle.cancelled":
    case "supervision":
      return { type: event.type, event: encoded(encodeEvent(event.event), event.event) }
  }
}

/** One Server-Sent Events message: `event: <type>`, `data: <json>`, a blank line. */
export const sseMessage = (event: LiveEvent): string => `event: ${event.type}\ndata: ${JSON.stringify(eventJson(event))}\n\n`

/**
 * `GET /event`. The subscription is taken before the first byte (a `: connected` comment) is
 * sent, so a client that saw it misses nothing published afterwards.
 */
export const eventStreamResponse = Effect.gen(function*() {
  const events = yield* Events
  const closing = yield* StreamsClosing
  const body = Stream.unwrapScoped(
    Effect.map(events.subscribe, (live) =>
      Stream.make(": connected\n\n").pipe(
        Stream.concat(
          Stream.merge(
            live.pipe(Stream.map(sseMessage)),
            Stream.repeatEffectWithSchedule(Effect.succeed(": keep-alive\n\n"), Schedule.spaced(keepAliveInterval)).pipe(
              Stream.drop(1)
            ),
            { haltStrategy: "left" }
          )
        )
      ))
  ).pipe(Stream.interruptWhen(Deferred.await(closing)), Stream.encodeText)
  return HttpServerResponse.stream(body, {
    contentType: "text/event-stream",
    // `connection: close`: once the stream ends (at shutdown) the socket goes with it, instead
    // of lingering as a keep-alive connection the server would wait for.
    headers: { "cache-control": "no-cache", "x-accel-buffering": "no", connection: "close" }
  })
})
