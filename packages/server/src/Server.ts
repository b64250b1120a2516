import { HttpApiBuilder, HttpApiSwagger, HttpServer } from "@effect/platform"
// Modules, not the package index (which loads @effect/cluster and @effect/rpc): see bin.ts.
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type { Settings as SettingsShape, SettingsError } from "@vigil/domain"
import type { ProviderConfig } from "@vigil/provider"
import { configuredKeys, noProviders, ProvidersLive } from "@vigil/provider"
import { FairSchedulerLive, RecoveryComplete, Tools, Vigil } from "@vigil/runtime"
import { StoreClientLive } from "./Database.js"
import { Console, Effect, Layer, Option, Redacted } from "effect"
import { createServer } from "node:http"
import type { IncomingMessage, Server as NodeServer, ServerResponse } from "node:http"
import { dirname, join } from "node:path"
import { basicAuth } from "./Auth.js"
import { badRequests } from "./BadRequests.js"
import { DashboardLive } from "./dashboard/Dashboard.js"
import { StreamsClosing } from "./EventStream.js"
import { ApiLive } from "./Handlers.js"
import { MetricsLive } from "./Metrics.js"
import { protectedStateOf } from "./ProtectedState.js"
import { formatRecoverySummary } from "./RecoveryReport.js"
import { requestGuard } from "./RequestGuard.js"
import { defaultConfig } from "./Defaults.js"
import { TracingLive } from "./Tracing.js"

export interface ServerOptions {
  readonly port: number
  readonly host: string
  /** The SQLite file, the default store. */
  readonly db: string
  /** The config file the settings come from (`vigil.json` by default), out of reach of the tools. */
  readonly configFile?: string | undefined
  /** `VIGIL_DATABASE_URL`: a PostgreSQL database shared by several instances, instead of the file. */
  readonly databaseUrl?: Redacted.Redacted<string> | undefined
  /** Read before anything touches the database: a bad value stops start-up with nothing written. */
  readonly settings: Effect.Effect<SettingsShape, SettingsError>
  /** `provider` and `model` in the config file, read as early as the settings; none: only `script`. */
  readonly providers?: Effect.Effect<ProviderConfig, SettingsError>
  /** `VIGIL_SERVER_PASSWORD`: basic auth on every route when set. */
  readonly password: Option.Option<Redacted.Redacted<string>>
  /** The whole output of parts that printed more than the cap; `<dir of db>/output` by default. */
  readonly outputDir?: string
  /** `VIGIL_ALLOWED_ORIGINS` / `VIGIL_ALLOWED_HOSTS`: who may reach the server besides its own pages and names. */
  readonly allowedOrigins?: ReadonlyArray<string>
  readonly allowedHosts?: ReadonlyArray<string>
  /** Print the URL and the recovery report on start (the CLI does; tests need not). */
  readonly announce?: boolean
}

export { defaultConfig, defaultDb, defaultHost, defaultPort } from "./Defaults.js"

/** After this long, connections still open at shutdown are cut. */
const forceCloseAfterMillis = 2_000

export const urlOf = (address: HttpServer.Address): string =>
  address._tag === "UnixAddress"
    ? `unix://${address.path}`
    : `http://${address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname}:${address.port}`

/**
 * The node server, answering every request from the moment it listens. The platform's server
 * listens as soon as its layer is built but attaches its request handler only when the API is
 * served, after the handlers, the dashboard and `/event` are built; and at a stop it detaches the
 * handler before it stops listening. Node hands a request with no `request` listener to nobody:
 * the client waits, no byte back, until the connection is cut (measured: a connection every 2 ms
 * through five starts left 23 to 41 requests so). This listener, attached before the server
 * listens, answers 503 (with `Retry-After`, on a connection then closed) whenever it is the only one.
 */
const makeNodeServer = (): NodeServer => {
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
const closeConnections = (server: NodeServer) =>
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

const Announce = Layer.scopedDiscard(
  Effect.gen(function*() {
    const server = yield* HttpServer.HttpServer
    const { report } = yield* RecoveryComplete
    // One write: whoever reads the URL line finds the report beside it (fibers may yield between
    // two writes, see FairScheduler).
    yield* Console.log(`vigil listening on ${urlOf(server.address)}\n${formatRecoverySummary(report)}`)
    yield* Effect.addFinalizer(() => Console.log("vigil stopping: interrupting turns and tools, releasing the lease"))
  })
)

/**
 * The whole server, composed as DESIGN.md draws it, each step provided to the next:
 * settings → SQLite store → OS port and models → supervision (lease, startup recovery, sessions,
 * tool runner, watchdog, idle monitor) → HTTP server → API handlers and `/event` → serving.
 * Closing runs it backwards: HTTP stops, turns are interrupted, running parts are recorded as
 * errors, the lease is marked stopped.
 */
export const ServerLive = (options: ServerOptions) =>
  Layer.unwrapEffect(
    Effect.map(Effect.all([options.settings, options.providers ?? Effect.succeed(noProviders)]), ([settings, providers]) => {
      const outputDir = options.outputDir ?? join(dirname(options.db), "output")
      // Composed as an embedding server would (Vigil.layer on its SqlClient). The tools get the
      // server's own state to refuse, and the secrets no shell may inherit.
      const Core = Vigil.layer({
        settings,
        tools: Tools.builtin({
          protect: protectedStateOf({ db: options.db, configFile: options.configFile ?? defaultConfig, outputDir }),
          secretValues: [
            ...configuredKeys(providers),
            ...Option.toArray(Option.map(options.password, Redacted.value))
          ]
        }),
        models: ProvidersLive(providers),
        outputDir
      }).pipe(Layer.provideMerge(StoreClientLive({ databaseUrl: options.databaseUrl, sqliteFile: options.db })))
      const server = makeNodeServer()
      // The request rules (Host, Origin, JSON bodies) and auth wrap everything (API, /event, /doc,
      // the dashboard); bad requests are answered inside the API's own error handling, where the
      // request failures it does not map itself still arrive.
      const guard = requestGuard({
        host: options.host,
        allowedOrigins: options.allowedOrigins ?? [],
        allowedHosts: options.allowedHosts ?? []
      })
      const Serve = HttpApiBuilder.serve((app) => guard(basicAuth(options.password)(app)))
      const Top = options.announce === false ? Serve : Announce.pipe(Layer.provideMerge(Serve))
      return Top.pipe(
        Layer.provide(HttpApiSwagger.layer({ path: "/doc" })),
        Layer.provide(DashboardLive),
        Layer.provide(MetricsLive),
        Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
        Layer.provide(HttpApiBuilder.middleware(badRequests)),
        Layer.provideMerge(ApiLive),
        Layer.provideMerge(StreamsClosing.layer),
        Layer.provideMerge(closeConnections(server)),
        Layer.provideMerge(NodeHttpServer.layer(() => server, { port: options.port, host: options.host })),
        Layer.provideMerge(Core),
        // Built first, so every fiber of the server runs on it: a burst of supervised work must
        // leave timers (deadlines, the lease heartbeat) and HTTP their turn (see FairScheduler).
        Layer.provide(FairSchedulerLive),
        // Before everything, so every span of the server goes to it; closed last, so the spans of
        // the shutdown are flushed too. Nothing when OTEL_EXPORTER_OTLP_ENDPOINT is unset.
        Layer.provide(TracingLive)
      )
    })
  )
