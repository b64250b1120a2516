import type { SqlClient, SqlError } from "@effect/sql"
import type { ConfigError } from "effect"
import { Data, Either, Layer, Redacted } from "effect"
import { EventLog } from "./EventLog.js"
import { InstanceRepo } from "./InstanceRepo.js"
import { MigrationsLive } from "./Migrations.js"
import { PartRepo } from "./PartRepo.js"
import type { StoreConnectError } from "./Postgres.js"
import { PgLive } from "./Postgres.js"
import { SessionRepo } from "./SessionRepo.js"
import { SqliteLive } from "./Sqlite.js"

export const RepositoriesLive = Layer.mergeAll(
  SessionRepo.Default,
  PartRepo.Default,
  InstanceRepo.Default,
  EventLog.Default
)

/**
 * The whole store on one SQLite file: the repositories can only be built after the migrations
 * ran (a provide, not an order in a merge), and the SqlClient stays visible for what needs it.
 */
export const SqliteStoreLive = (filename: string) =>
  RepositoriesLive.pipe(
    Layer.provideMerge(MigrationsLive),
    Layer.provideMerge(SqliteLive(filename))
  )

/** The same store on a PostgreSQL database shared by instances on several machines. */
export const PgStoreLive = (url: string | Redacted.Redacted<string>) =>
  RepositoriesLive.pipe(
    Layer.provideMerge(MigrationsLive),
    Layer.provideMerge(PgLive(url))
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

/** The connection alone, without migrations: for read-only commands (`vigil status`). */
export const StoreClientLive = (
  location: StoreLocation
): Layer.Layer<SqlClient.SqlClient, ConfigError.ConfigError | SqlError.SqlError | StoreConnectError | StoreUrlError> =>
  Either.match(resolveStore(location), {
    onLeft: (error) => Layer.fail(error),
    onRight: (store) => store._tag === "sqlite" ? SqliteLive(store.file) : PgLive(store.url)
  })

/** The store a server runs on, migrated: PostgreSQL or the SQLite file, as `resolveStore` chooses. */
export const StoreLive = (
  location: StoreLocation
): Layer.Layer<Store, ConfigError.ConfigError | SqlError.SqlError | StoreConnectError | StoreUrlError> =>
  Either.match(resolveStore(location), {
    onLeft: (error) => Layer.fail(error),
    onRight: (store) => store._tag === "sqlite" ? SqliteStoreLive(store.file) : PgStoreLive(store.url)
  })
