import { HttpApiBuilder, HttpApiSwagger } from "@effect/platform"
// Modules, not the package index (which loads @effect/cluster and @effect/rpc): see bin.ts.
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type { Settings as SettingsShape, SettingsError } from "@vigil/domain"
import type { ProviderConfig } from "@vigil/provider"
import { configuredKeys, noProviders, ProvidersLive } from "@vigil/provider"
import { FairSchedulerLive, Tools, Vigil } from "@vigil/runtime"
import { Effect, Layer, Option, Redacted } from "effect"
import { dirname, join } from "node:path"
import { Announce } from "./Announce.js"
import { basicAuth } from "./Auth.js"
import { badRequests } from "./BadRequests.js"
import { DashboardLive } from "./dashboard/Dashboard.js"
import { StoreClientLive } from "./Database.js"
import { defaultConfig } from "./Defaults.js"
import { StreamsClosing } from "./EventStream.js"
import { ApiLive } from "./Handlers.js"
import { MetricsLive } from "./Metrics.js"
import { closeConnections, makeNodeServer } from "./NodeServer.js"
import { protectedStateOf } from "./ProtectedState.js"
import { requestGuard } from "./RequestGuard.js"
import { TracingLive } from "./Tracing.js"

export interface ServerOptions {
  readonly port: number
  readonly host: string
  /** The SQLite file, the default store. */
  readonly db: string
  /** The config file the settings come from (`vigil.json` by default), out of reach of the tools. */
  readonly configFile?: string | undefined
  /** The files a restart would read its config from (ConfigFile's `readAtNextStart`), out of reach of the tools too. */
  readonly configFiles?: ReadonlyArray<string> | undefined
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

/**
 * The whole server, composed as docs/design.md#the-layer-graph draws it, each step provided to
 * the next: settings → SQLite store → OS port and models → supervision (lease, startup recovery, sessions,
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
          protect: protectedStateOf({
            db: options.db,
            configFiles: [options.configFile ?? defaultConfig, ...(options.configFiles ?? [])],
            outputDir
          }),
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
