import { HttpServer } from "@effect/platform"
import { Effect, Layer } from "effect"
import { createServer } from "node:http"
import type { IncomingMessage, Server as NodeServer, ServerResponse } from "node:http"

/** After this long, connections still open at shutdown are cut. */
const forceCloseAfterMillis = 2_000

/**
 * The node server, answering every request from the moment it listens. The platform's server
 * listens as soon as its layer is built but attaches its request handler only when the API is
 * served, after the handlers, the dashboard and `/event` are built; and at a stop it detaches the
 * handler before it stops listening. Node hands a request with no `request` listener to nobody:
 * the client waits, no byte back, until the connection is cut (measured: a connection every 2 ms
 * through five starts left 23 to 41 requests so). This listener, attached before the server
 * listens, answers 503 (with `Retry-After`, on a connection then closed) whenever it is the only one.
 */
export const makeNodeServer = (): NodeServer => {
  const server = createServer()
  // An idle keep-alive connection is closed by its client, not by the server: with node's 5 s a
  // client that reused one as the server closed it got ECONNRESET (an openapi-fetch client after a
  // 5 s pause, on a loaded machine). Clients keep theirs ~4 s (undici) to a minute; headers must
  // be allowed longer than the idle time (node's rule).
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  server.on("request", (_request: IncomingMessage, response: ServerResponse) => {
    if (server.listenerCount("request") > 1) return
    response.writeHead(503, { "content-type": "application/json", "retry-after": "1", connection: "close" })
    response.end(JSON.stringify({ _tag: "Unavailable", message: "vigil is starting or stopping: try again in a moment" }))
  })
  return server
}

/**
 * Stopping: the listener goes first (so no new request reaches sessions being torn down), idle
 * keep-alive connections are closed at once, and any still open after a short while are cut, so
 * a client that never hangs up cannot hold the process.
 */
export const closeConnections = (server: NodeServer) =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      // Acquired after the server listens, so released before it is closed.
      yield* HttpServer.HttpServer
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          server.closeIdleConnections()
          setTimeout(() => server.closeAllConnections(), forceCloseAfterMillis).unref()
        })
      )
    })
  )
