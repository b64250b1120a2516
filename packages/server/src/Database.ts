import type { SqlClient, SqlError } from "@effect/sql"
import type { Store, StoreLocation, StoreMigrationFailed, StoreOptions, StoreUpgradeRequired, StoreUrlError } from "@vigil/store"
import { requireCurrentLayout, resolveStore } from "@vigil/store"
import type { StoreConnectError } from "@vigil/store/pg"
import { PgLive, PgStoreLive } from "@vigil/store/pg"
import { SqliteLive, SqliteStoreLive } from "@vigil/store/sqlite"
import type { ConfigError } from "effect"
import { Effect, Either, Layer } from "effect"

/**
 * The server's choice of database (it ships both drivers; the store's core needs neither): the
 * SQLite file by default, PostgreSQL for `VIGIL_DATABASE_URL`.
 */

/**
 * The connection alone, without migrations: for read-only commands (`vigil status`). A database
 * of an earlier vigil's layout is said so in one line (they do not upgrade it).
 */
export const StoreClientLive = (
  location: StoreLocation
): Layer.Layer<
  SqlClient.SqlClient,
  ConfigError.ConfigError | SqlError.SqlError | StoreConnectError | StoreUrlError | StoreUpgradeRequired
> =>
  Either.match(resolveStore(location), {
    onLeft: (error) => Layer.fail(error),
    onRight: (store) => {
      const client: Layer.Layer<SqlClient.SqlClient, ConfigError.ConfigError | SqlError.SqlError | StoreConnectError> =
        store._tag === "sqlite" ? SqliteLive(store.file) : PgLive(store.url)
      return Layer.tap(client, (context) => Effect.provide(requireCurrentLayout, context))
    }
  })

/** The store a server runs on, migrated: PostgreSQL or the SQLite file, as `resolveStore` chooses. */
export const StoreLive = (
  location: StoreLocation,
  options: StoreOptions = {}
): Layer.Layer<
  Store,
  ConfigError.ConfigError | SqlError.SqlError | StoreConnectError | StoreUrlError | StoreMigrationFailed
> =>
  Either.match(resolveStore(location), {
    onLeft: (error) => Layer.fail(error),
    onRight: (store) => store._tag === "sqlite" ? SqliteStoreLive(store.file, options) : PgStoreLive(store.url, options)
  })
