import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"

/**
 * Numbered and append-only: a released migration is never edited, a change is a new entry.
 * Every query a hot loop runs (recovery, the watchdog, the idle monitor) has a partial index over
 * the few live rows, so a scan stays cheap however much history the tables hold. Partial indexes
 * and `RETURNING` are portable to PostgreSQL; only the event id column differs by dialect.
 */
export const migrations = Migrator.fromRecord({
  "0001_create_tables": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE instances (
      id TEXT PRIMARY KEY,
      pid INTEGER NOT NULL,
      host TEXT NOT NULL,
      proc_start TEXT,
      started_at BIGINT NOT NULL,
      heartbeat_at BIGINT NOT NULL,
      lease_millis BIGINT NOT NULL,
      stopped_at BIGINT
    )`
    yield* sql`CREATE TABLE sessions (
      id TEXT PRIMARY KEY,
      parent_id TEXT REFERENCES sessions (id),
      parent_part_id TEXT,
      title TEXT NOT NULL,
      status TEXT NOT NULL,
      cancel_reason TEXT,
      last_activity_at BIGINT NOT NULL,
      owner_id TEXT NOT NULL,
      created_at BIGINT NOT NULL
    )`
    yield* sql`CREATE INDEX sessions_parent ON sessions (parent_id)`
    yield* sql`CREATE INDEX sessions_active_activity ON sessions (last_activity_at) WHERE status IN ('busy', 'waiting')`
    yield* sql`CREATE INDEX sessions_active_owner ON sessions (owner_id) WHERE status IN ('busy', 'waiting')`
    yield* sql`CREATE TABLE parts (
      id TEXT PRIMARY KEY,
      session_id TEXT NOT NULL REFERENCES sessions (id),
      kind TEXT NOT NULL,
      tool TEXT NOT NULL,
      input TEXT NOT NULL,
      call_id TEXT,
      status TEXT NOT NULL,
      output TEXT,
      error TEXT,
      created_at BIGINT NOT NULL,
      started_at BIGINT,
      ended_at BIGINT,
      deadline_at BIGINT,
      owner_id TEXT NOT NULL,
      child_session_id TEXT,
      pid INTEGER,
      pgid INTEGER,
      proc_start TEXT
    )`
    yield* sql`CREATE INDEX parts_session ON parts (session_id, id)`
    yield* sql`CREATE INDEX parts_active_owner ON parts (owner_id) WHERE status IN ('pending', 'running')`
    yield* sql`CREATE INDEX parts_active_session ON parts (session_id) WHERE status IN ('pending', 'running')`
    yield* sql`CREATE INDEX parts_active_deadline ON parts (deadline_at) WHERE status IN ('pending', 'running')`
    yield* sql.onDialectOrElse({
      pg: () => sql`CREATE TABLE events (id BIGSERIAL PRIMARY KEY, type TEXT NOT NULL, at BIGINT NOT NULL,
        instance_id TEXT, session_id TEXT, part_id TEXT, reason TEXT, data TEXT)`,
      orElse: () => sql`CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, at BIGINT NOT NULL,
        instance_id TEXT, session_id TEXT, part_id TEXT, reason TEXT, data TEXT)`
    })
    yield* sql`CREATE INDEX events_session ON events (session_id, id)`
  }),
  /**
   * A session's turn is claimed in the database, not only in one instance's memory: `turn_id` names
   * the turn that holds a busy/waiting session, and every write of that turn is fenced on it, so a
   * turn that lost its session can never move it. `cancel_request` is an abort asked of the owner by
   * another instance (the reason, as JSON); the owner polls its own requests through the index.
   */
  "0002_session_turn_claims": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE sessions ADD COLUMN turn_id TEXT`
    yield* sql`ALTER TABLE sessions ADD COLUMN cancel_request TEXT`
    yield* sql`CREATE INDEX sessions_cancel_requested ON sessions (owner_id) WHERE cancel_request IS NOT NULL`
  }),
  /**
   * The lists are read in pages by keyset (issue 19): sessions newest first on (created_at, id),
   * a session's parts on `parts_session (session_id, id)` (already there), and the live parts by
   * id through a partial index of the live rows, so a page costs its rows, not the history.
   */
  "0003_list_pages": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE INDEX sessions_created ON sessions (created_at, id)`
    yield* sql`CREATE INDEX parts_active_id ON parts (id) WHERE status IN ('pending', 'running')`
  })
})

const runMigrations = Migrator.make({})({ loader: migrations, table: "vigil_migrations" })

/**
 * On PostgreSQL several instances may start at once on an empty database, and the migrator's
 * "create the migrations table if it is missing" is not safe against a concurrent twin: the
 * migration run is serialized across processes with a session advisory lock, held on a reserved
 * connection while the migrator works on the pool. SQLite serializes writers on its own.
 */
const serialized = <A, E, R>(run: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql.onDialectOrElse({
      pg: () =>
        Effect.scoped(Effect.gen(function*() {
          const conn = yield* sql.reserve
          yield* conn.executeRaw("SELECT pg_advisory_lock(hashtextextended('vigil/migrations', 0))", [])
          yield* Effect.addFinalizer(() => conn.executeRaw("SELECT pg_advisory_unlock_all()", []).pipe(Effect.ignore))
          return yield* run
        })),
      orElse: () => run
    })
  })

/** Applies what is missing; a second run is a no-op. Start-up stops on a failed migration. */
export const MigrationsLive = Layer.effectDiscard(
  serialized(runMigrations).pipe(
    Effect.tap((applied) =>
      applied.length > 0 ? Effect.logInfo("applied migrations", applied.map(([id, name]) => `${id}_${name}`)) : Effect.void
    ),
    Effect.orDie
  )
)
