import { Effect, Layer, String } from "effect"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import * as SqliteConnection from "./SqliteConnection.js"
import * as SqlitePragmas from "./SqlitePragmas.js"
import type { StoreOptions } from "./Tables.js"
import { SqlStoreLive } from "./Store.js"

/**
 * `@vigil/store/sqlite`: vigil's own SQLite client, the one entry that needs better-sqlite3 (an
 * optional peer: an app on PostgreSQL never builds it).
 */
export { SqliteConnection, SqlitePragmas }

/**
 * The embedded store's connection: one SQLite file (its folder made if missing) with vigil's
 * pragmas (`SqlitePragmas`), on vigil's own client (`SqliteConnection`: `@effect/sql`'s client,
 * plus `SqliteAutocommit`, the store's lone writes run at once). The store maps its rows on the
 * raw client; the camelCase ↔ snake_case transforms here are for what else reads this client
 * (tools, tests, the CLI).
 */
export const SqliteLive = (filename: string) =>
  SqlitePragmas.layer.pipe(
    Layer.provideMerge(
      SqliteConnection.layer({
        filename,
        transformQueryNames: String.camelToSnake,
        transformResultNames: String.snakeToCamel
      })
    ),
    Layer.provide(Layer.effectDiscard(Effect.sync(() => {
      if (filename !== ":memory:") mkdirSync(dirname(filename), { recursive: true })
    })))
  )

/**
 * The whole store on one SQLite file, migrated, with the SqlClient visible for what needs it.
 */
export const SqliteStoreLive = (filename: string, options: StoreOptions = {}) =>
  SqlStoreLive(options).pipe(Layer.provideMerge(SqliteLive(filename)))
