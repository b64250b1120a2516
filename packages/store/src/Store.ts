import type { SqlClient } from "@effect/sql"
import { Data, Either, Layer, Redacted } from "effect"
import { EventLog } from "./EventLog.js"
import { InstanceRepo } from "./InstanceRepo.js"
import type { StoreMigrationFailed } from "./Migrations.js"
import { MigrationsLive } from "./Migrations.js"
import { PartRepo } from "./PartRepo.js"
import { SessionRepo } from "./SessionRepo.js"
import type { StoreOptions } from "./Tables.js"
import { StoreTables, tableNames } from "./Tables.js"

/** The repositories on the SqlClient in context, under the tables `StoreTables` names. */
export const RepositoriesLive = Layer.mergeAll(
  SessionRepo.Default,
  PartRepo.Default,
  InstanceRepo.Default,
  EventLog.Default
)

/** The repositories a store provides. */
export type Repositories = SessionRepo | PartRepo | InstanceRepo | EventLog

/**
 * The whole store on the app's own SqlClient (any `@effect/sql` client, SQLite or PostgreSQL,
 * with or without name transforms): its tables under `prefix` (default `vigil_`) beside the app's
 * own, migrated first (the repositories can only be built after the migrations ran: a provide,
 * not an order in a merge). Driver-free: the app brings the client, and for SQLite may apply
 * `SqlitePragmas.layer` to it.
 */
export const SqlStoreLive = (
  options: StoreOptions = {}
): Layer.Layer<Repositories, StoreMigrationFailed, SqlClient.SqlClient> =>
  // Fresh: two stores under two prefixes in one layer graph must not share memoized repositories
  // or migrations (layers are memoized by reference; the prefix is not part of it).
  Layer.fresh(RepositoriesLive).pipe(
    Layer.provide(Layer.fresh(MigrationsLive)),
    Layer.provide(Layer.sync(StoreTables, () => tableNames(options.prefix)))
  )

export class StoreUrlError extends Data.TaggedError("StoreUrlError")<{ readonly message: string }> {}

const postgresUrl = /^postgres(ql)?:\/\//i

/** Whether a database URL (`VIGIL_DATABASE_URL`) names PostgreSQL. */
export const isPostgresUrl = (url: string): boolean => postgresUrl.test(url.trim())

/** What every store provides, whichever database it is on. */
export type Store = SessionRepo | PartRepo | InstanceRepo | EventLog | SqlClient.SqlClient

/** Where the store lives: `VIGIL_DATABASE_URL` when set, else the SQLite file. */
export interface StoreLocation {
  readonly databaseUrl?: string | Redacted.Redacted<string> | undefined
  readonly sqliteFile: string
}

/**
 * Which database a location names: PostgreSQL for a `postgres://` (or `postgresql://`) URL, else
 * the SQLite file, the default. Any other non-empty URL is refused with one clear line that does
 * not echo it (it may hold a password).
 */
export const resolveStore = (
  location: StoreLocation
): Either.Either<{ readonly _tag: "sqlite"; readonly file: string } | { readonly _tag: "postgres"; readonly url: Redacted.Redacted<string> }, StoreUrlError> => {
  const url = location.databaseUrl === undefined
    ? ""
    : (Redacted.isRedacted(location.databaseUrl) ? Redacted.value(location.databaseUrl) : location.databaseUrl).trim()
  if (url === "") return Either.right({ _tag: "sqlite", file: location.sqliteFile })
  if (isPostgresUrl(url)) return Either.right({ _tag: "postgres", url: Redacted.make(url) })
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0] ?? "no scheme"
  return Either.left(
    new StoreUrlError({ message: `VIGIL_DATABASE_URL must be a postgres:// or postgresql:// URL (got ${scheme})` })
  )
}
