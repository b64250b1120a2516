import { Command, Options, ValidationError } from "@effect/cli"
import { HttpServerError } from "@effect/platform"
import { SettingsError } from "@vigil/domain"
import { loadProviders } from "@vigil/provider"
import { loadSettings } from "@vigil/runtime"
import type { StoreLocation } from "@vigil/store"
import { RepositoriesLive, StoreMigrationFailed, StoreUpgradeRequired, StoreUrlError } from "@vigil/store"
import { StoreConnectError } from "@vigil/store/pg"
import type { Redacted } from "effect"
import { Cause, Config, Console, Effect, Layer, Option } from "effect"
import { existsSync, statSync } from "node:fs"
import { ServerPassword } from "./Auth.js"
import { StoreClientLive } from "./Database.js"
import { checkDatabasePath, checkPortFree, describeListenFailure, StartupCheckError } from "./Preflight.js"
import { formatRescue, recover, RecoverLive } from "./Recover.js"
import { defaultConfig, defaultDb, defaultHost, defaultPort, ServerLive } from "./Server.js"
import { allowedFromEnv } from "./RequestGuard.js"
import { formatStatus, readStatus } from "./Status.js"

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
  Options.withDescription(`the JSON config file (env VIGIL_CONFIG; default ${defaultConfig})`)
)

const settingsFrom = (path: Option.Option<string>) =>
  loadSettings({ path: Option.getOrElse(path, () => defaultConfig), explicit: Option.isSome(path) })

/** `provider` and `model` from the same file; `{env:NAME}` in them is read from the environment. */
const providersFrom = (path: Option.Option<string>) =>
  loadProviders({ path: Option.getOrElse(path, () => defaultConfig), explicit: Option.isSome(path) })

/** Settings for the commands that have no `--config`: `VIGIL_CONFIG`, else `vigil.json` if present. */
const settingsFromEnv = Config.option(Config.string("VIGIL_CONFIG")).pipe(Effect.orDie, Effect.flatMap(settingsFrom))

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
      const password = yield* ServerPassword
      // Everything that can be wrong is found here, one line each, before the database is opened
      // or startup recovery runs: the config, then the database path, then the port.
      const settings = yield* settingsFrom(options.config)
      const providers = yield* providersFrom(options.config)
      const allowed = yield* allowedFromEnv
      const databaseUrl = Option.getOrUndefined(options.databaseUrl)
      if (databaseUrl === undefined) yield* checkDatabasePath(options.db, "write")
      if (options.port !== 0) yield* checkPortFree(options.host, options.port)
      return yield* Layer.launch(
        ServerLive({
          port: options.port,
          host: options.host,
          db: options.db,
          databaseUrl,
          configFile: Option.getOrElse(options.config, () => defaultConfig),
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
      readStatus.pipe(
        Effect.map(formatStatus),
        Effect.flatMap(Console.log),
        Effect.provide(RepositoriesLive.pipe(Layer.provide(StoreClientLive(storeOf(options)))))
      )
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
      recover({ dryRun: options.dryRun }).pipe(
        Effect.map(formatRescue),
        Effect.flatMap(Console.log),
        Effect.provide(RecoverLive({ store: storeOf(options), dryRun: options.dryRun, settings: settingsFromEnv }))
      )
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
export const reportFailure = <E>(cause: Cause.Cause<E>): Effect.Effect<void> => {
  if (Cause.isInterruptedOnly(cause)) return Effect.void
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error: unknown = failure.value
    if (
      error instanceof SettingsError || error instanceof StoreUrlError || error instanceof StoreConnectError ||
      error instanceof StoreMigrationFailed || error instanceof StoreUpgradeRequired || error instanceof StartupCheckError
    ) return Console.error(error.message)
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
