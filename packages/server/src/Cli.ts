import { Command, Options, ValidationError } from "@effect/cli"
import * as HttpServerError from "@effect/platform/HttpServerError"
import type { StoreLocation } from "@vigil/store"
import type { Redacted } from "effect"
import { Cause, Config, Console, Effect, Layer, Option } from "effect"
import { existsSync, statSync } from "node:fs"
import { configCandidates, defaultDb, defaultHost, defaultPort } from "./Defaults.js"
import type { StartupCheckError } from "./Preflight.js"
import { checkDatabasePath, checkPortFree, describeListenFailure } from "./Preflight.js"

/**
 * What each command needs, imported when it runs, not when the CLI loads: the server's graph (the
 * HTTP API, the dashboard, the providers and their SDKs), the store's drivers and recovery are
 * most of the module graph, and `vigil --help` or a bad config must not wait for them (issue 17:
 * `--help` under 0.5 s, a bad config reported under 1 s).
 */
const lazy = <A>(load: () => Promise<A>): Effect.Effect<A> => Effect.promise(load)
const ConfigFile = lazy(() => import("./ConfigFile.js"))
const Server = lazy(() => import("./Server.js"))
const Recover = lazy(() => import("./Recover.js"))
const RecoveryReport = lazy(() => import("./RecoveryReport.js"))
const Status = lazy(() => import("./Status.js"))
const Database = lazy(() => import("./Database.js"))
const Auth = lazy(() => import("./Auth.js"))
const RequestGuard = lazy(() => import("./RequestGuard.js"))
const Store = lazy(() => import("@vigil/store"))

const db = Options.text("db").pipe(
  Options.withFallbackConfig(Config.string("VIGIL_DB")),
  Options.withDefault(defaultDb),
  Options.withDescription("the SQLite database file (env VIGIL_DB)")
)

/**
 * A PostgreSQL database shared by several instances (`postgres://…`), instead of the SQLite file.
 * Redacted: it may hold a password, and is never printed.
 */
const databaseUrl = Options.redacted("database-url").pipe(
  Options.withFallbackConfig(Config.redacted("VIGIL_DATABASE_URL")),
  Options.optional,
  Options.withDescription("a PostgreSQL URL, postgres://… (env VIGIL_DATABASE_URL); replaces --db")
)

const storeOf = (options: { readonly db: string; readonly databaseUrl: Option.Option<Redacted.Redacted<string>> }): StoreLocation => ({
  sqliteFile: options.db,
  databaseUrl: Option.getOrUndefined(options.databaseUrl)
})

/**
 * Read-only commands never create a database: a missing SQLite file is said so, not made; one that
 * cannot be used (a directory, unreadable, unwritable for `recover`) is one line.
 */
const withExistingStore = <A, E, R>(
  location: StoreLocation,
  mode: "read" | "write",
  run: Effect.Effect<A, E, R>
): Effect.Effect<A | void, E | StartupCheckError, R> =>
  location.databaseUrl !== undefined
    ? run
    // An empty file is no database either (SQLite makes one of it, but has no tables to read).
    : !existsSync(location.sqliteFile) || (statSync(location.sqliteFile).isFile() && statSync(location.sqliteFile).size === 0)
    ? Console.log(`no database at ${location.sqliteFile}: nothing has run there yet`)
    : Effect.zipRight(checkDatabasePath(location.sqliteFile, mode), run)

/** A config file named by flag or env must exist; the default one may be missing (defaults then). */
const config = Options.text("config").pipe(
  Options.withFallbackConfig(Config.string("VIGIL_CONFIG")),
  Options.optional,
  Options.withDescription(`the JSON(C) config file (env VIGIL_CONFIG; default: the first of ${configCandidates.join(", ")})`)
)

/**
 * Settings for the commands that have no `--config`: `VIGIL_CONFIG`, else the first config file
 * found; what in it vigil does not use is noted.
 */
const settingsFromEnv = Config.option(Config.string("VIGIL_CONFIG")).pipe(
  Effect.orDie,
  Effect.flatMap((named) =>
    Effect.flatMap(ConfigFile, ({ configNotes, readConfigFile, settingsOf }) =>
      Effect.flatMap(readConfigFile(named), (file) =>
        Effect.tap(settingsOf(file), () => Effect.forEach(configNotes(file.json), (note) => Effect.logInfo(`config ${file.path}: ${note}`))))
    )
  )
)

const serve = Command.make(
  "serve",
  {
    port: Options.integer("port").pipe(
      Options.withFallbackConfig(Config.integer("VIGIL_PORT")),
      Options.withDefault(defaultPort),
      Options.withDescription("the port to listen on (env VIGIL_PORT)")
    ),
    host: Options.text("host").pipe(
      Options.withFallbackConfig(Config.string("VIGIL_HOST")),
      Options.withDefault(defaultHost),
      Options.withDescription("the address to listen on (env VIGIL_HOST); loopback unless you mean otherwise")
    ),
    db,
    databaseUrl,
    config
  },
  (options) =>
    Effect.gen(function*() {
      const password = yield* Effect.flatMap(Auth, ({ ServerPassword }) => ServerPassword)
      // Everything that can be wrong is found here, one line each, before the database is opened
      // or startup recovery runs: the config (read once; the settings and the providers both come
      // from it), then the database path, then the port.
      const { announceConfig, providersOf, readConfigFile, settingsOf } = yield* ConfigFile
      const file = yield* readConfigFile(options.config)
      const settings = yield* settingsOf(file)
      const providers = yield* providersOf(file)
      const allowed = yield* Effect.flatMap(RequestGuard, ({ allowedFromEnv }) => allowedFromEnv)
      const databaseUrl = Option.getOrUndefined(options.databaseUrl)
      if (databaseUrl === undefined) yield* checkDatabasePath(options.db, "write")
      if (options.port !== 0) yield* checkPortFree(options.host, options.port)
      // After the checks: a start-up that cannot go on says so in its one line alone.
      yield* announceConfig(file, providers)
      const { ServerLive } = yield* Server
      return yield* Layer.launch(
        ServerLive({
          port: options.port,
          host: options.host,
          db: options.db,
          databaseUrl,
          configFile: file.path,
          configFiles: file.readAtNextStart,
          settings: Effect.succeed(settings),
          providers: Effect.succeed(providers),
          password,
          ...allowed
        })
      )
    })
).pipe(Command.withDescription("run the server: HTTP API and SSE, until SIGINT/SIGTERM"))

const status = Command.make(
  "status",
  { db, databaseUrl },
  (options) =>
    // Read-only: no instance is registered, no migration is run, and a missing database is not created.
    withExistingStore(
      storeOf(options),
      "read",
      Effect.gen(function*() {
        const [{ formatStatus, readStatus }, { StoreClientLive }, { RepositoriesLive }] = yield* Effect.all([Status, Database, Store])
        return yield* readStatus.pipe(
          Effect.map(formatStatus),
          Effect.flatMap(Console.log),
          Effect.provide(RepositoriesLive.pipe(Layer.provideMerge(StoreClientLive(storeOf(options)))))
        )
      })
    )
).pipe(Command.withDescription("sessions and running parts, with age and owner"))

const recoverCommand = Command.make(
  "recover",
  {
    db,
    databaseUrl,
    dryRun: Options.boolean("dry-run").pipe(Options.withDescription("report what recovery would do; write nothing"))
  },
  (options) =>
    withExistingStore(
      storeOf(options),
      options.dryRun ? "read" : "write",
      Effect.flatMap(Effect.all([Recover, RecoveryReport]), ([{ recover, RecoverLive }, { formatRecoveryReport }]) =>
        recover({ dryRun: options.dryRun }).pipe(
          Effect.map(formatRecoveryReport),
          Effect.flatMap(Console.log),
          Effect.provide(RecoverLive({ store: storeOf(options), dryRun: options.dryRun, settings: settingsFromEnv }))
        ))
    )
).pipe(Command.withDescription("end what dead server instances left running (the startup recovery, on demand)"))

export const vigil = Command.make("vigil").pipe(
  Command.withDescription("supervision for an agent server's sessions, tools and model calls"),
  Command.withSubcommands([serve, status, recoverCommand])
)

export const cli = Command.run(vigil, { name: "vigil", version: "0.1.0" })

/**
 * How a failed command is reported: a bad config is one line naming the key and the value (no
 * stack, no cause), and so is an unusable database path or port; the CLI already printed its own
 * usage errors; anything else in full.
 */
/**
 * The failures said in their one line, known by their tag: the classes live in modules the CLI
 * loads only for the command that can fail so (the PostgreSQL driver behind `StoreConnectError`).
 */
const oneLineTags = new Set([
  "SettingsError",
  "StoreUrlError",
  "StoreConnectError",
  "StoreMigrationFailed",
  "StoreUpgradeRequired",
  "StartupCheckError"
])
const isOneLine = (error: unknown): error is { readonly message: string } =>
  typeof error === "object" && error !== null && oneLineTags.has((error as { readonly _tag?: unknown })._tag as string) &&
  typeof (error as { readonly message?: unknown }).message === "string"

export const reportFailure = <E>(cause: Cause.Cause<E>): Effect.Effect<void> => {
  if (Cause.isInterruptedOnly(cause)) return Effect.void
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error: unknown = failure.value
    if (isOneLine(error)) return Console.error(error.message)
    // The port was free when checked, and taken by the time the server listened.
    if (HttpServerError.isServerError(error) && error._tag === "ServeError") {
      const cause = error.cause as { readonly address?: string; readonly port?: number } | undefined
      return Console.error(describeListenFailure(cause?.address ?? "the host", cause?.port ?? 0, error.cause))
    }
    if (ValidationError.isValidationError(error)) return Effect.void
  }
  return Console.error(Cause.pretty(cause))
}

/** The whole program: parse the arguments, run the command, report a failure once. */
export const main = (argv: ReadonlyArray<string>) => cli(argv).pipe(Effect.tapErrorCause(reportFailure))
