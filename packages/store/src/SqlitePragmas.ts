import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import { Effect, Layer } from "effect"

/**
 * What vigil needs of a SQLite connection, by statement: WAL (readers never block the writer, and
 * several processes share the file), a busy timeout so a second process waits for a lock instead
 * of failing, NORMAL sync (durable at each checkpoint, safe in WAL), and foreign keys on.
 */
export const statements: ReadonlyArray<string> = [
  "PRAGMA journal_mode = WAL",
  "PRAGMA busy_timeout = 5000",
  "PRAGMA foreign_keys = ON",
  "PRAGMA synchronous = NORMAL"
]

/** Applies the pragmas on the SqlClient in context (a SQLite one); vigil's own client does. */
export const apply: Effect.Effect<void, SqlError.SqlError, SqlClient.SqlClient> = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => Effect.forEach(statements, (statement) => sql.unsafe(statement).withoutTransform, { discard: true })
)

/**
 * The pragmas as a layer, for an app that builds its own SQLite client:
 * `SqlitePragmas.layer.pipe(Layer.provideMerge(SqliteClient.layer({ filename })))`. The client
 * keeps one connection, so a pragma set once holds for every statement after.
 */
export const layer: Layer.Layer<never, SqlError.SqlError, SqlClient.SqlClient> = Layer.effectDiscard(apply)
