import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Layer, String } from "effect"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"

/**
 * The embedded store: one SQLite file in WAL mode (readers never block the writer, and several
 * processes can share the file), a busy timeout so a second process waits for a lock instead of
 * failing, and foreign keys on. Column names are snake_case in SQL and camelCase in code.
 */
export const SqliteLive = (filename: string) =>
  Layer.effectDiscard(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`PRAGMA busy_timeout = 5000`
      yield* sql`PRAGMA foreign_keys = ON`
      yield* sql`PRAGMA synchronous = NORMAL`
    }).pipe(Effect.orDie)
  ).pipe(
    Layer.provideMerge(
      SqliteClient.layer({
        filename,
        transformQueryNames: String.camelToSnake,
        transformResultNames: String.snakeToCamel
      })
    ),
    Layer.provide(Layer.effectDiscard(Effect.sync(() => {
      if (filename !== ":memory:") mkdirSync(dirname(filename), { recursive: true })
    })))
  )
