import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import { Data, Effect, Layer, Option } from "effect"
import type { TableNames } from "./Tables.js"
import { StoreTables, tableNames } from "./Tables.js"

/**
 * A migration of vigil's schema did not apply (start-up stops, the database is as it was before
 * the run): `migration` is the one that failed (`0002_session_turn_claims`), or null when the
 * failure was not one migration's (the migrations table itself, a lock, an upgrade of an older
 * layout). A typed failure, not a defect: an app composing the store decides what start-up does.
 */
export class StoreMigrationFailed extends Data.TaggedError("StoreMigrationFailed")<{
  readonly migration: string | null
  readonly message: string
  readonly cause: unknown
}> {}

/** The first line of what a driver said, for a one-line message. */
const causeLine = (error: unknown): string => {
  const inner = typeof error === "object" && error !== null && "cause" in error ? error.cause : undefined
  const text = inner instanceof Error ? inner.message : error instanceof Error ? error.message : String(error)
  return text.split("\n")[0]!.trim()
}

const failed = (migration: string | null, what: string) => (cause: unknown) =>
  new StoreMigrationFailed({ migration, message: `${what}: ${causeLine(cause)}`, cause })

/**
 * The migrations on the raw client (no name transforms, whatever client the app gave), with every
 * statement on the prefixed names, each failure one typed `StoreMigrationFailed` naming it.
 */
const migration = (id: string, body: (sql: SqlClient.SqlClient, t: TableNames) => Effect.Effect<void, SqlError.SqlError>) =>
(t: TableNames): Effect.Effect<void, StoreMigrationFailed, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (client) => body(client.withoutTransforms(), t)).pipe(
    Effect.mapError(failed(id, `migration ${id} failed`))
  )

const name = (sql: SqlClient.SqlClient, text: string) => sql.literal(text)

/**
 * Numbered and append-only: a released migration is never edited, a change is a new entry.
 * Every table and index name is under the store's prefix (`vigil_sessions`, `vigil_parts_active_owner`):
 * index names share one namespace per schema with the app's own. (The two released migrations got
 * their names from the prefix and nothing else; a database they made unprefixed is renamed into
 * the same layout before they are looked at, see `adoptLegacyLayout`.)
 * Every query a hot loop runs (recovery, the watchdog, the idle monitor) has a partial index over
 * the few live rows, so a scan stays cheap however much history the tables hold. Partial indexes
 * and `RETURNING` are portable to PostgreSQL; only the event id column differs by dialect.
 */
const steps = {
  "0001_create_tables": migration("0001_create_tables", (sql, t) =>
    Effect.gen(function*() {
      const [instances, sessions, parts, events, p] = [t.instances, t.sessions, t.parts, t.events, t.prefix].map((n) => name(sql, n))
      yield* sql`CREATE TABLE ${instances} (
      id TEXT PRIMARY KEY,
      pid INTEGER NOT NULL,
      host TEXT NOT NULL,
      proc_start TEXT,
      started_at BIGINT NOT NULL,
      heartbeat_at BIGINT NOT NULL,
      lease_millis BIGINT NOT NULL,
      stopped_at BIGINT
    )`
      yield* sql`CREATE TABLE ${sessions} (
      id TEXT PRIMARY KEY,
      parent_id TEXT REFERENCES ${sessions} (id),
      parent_part_id TEXT,
      title TEXT NOT NULL,
      status TEXT NOT NULL,
      cancel_reason TEXT,
      last_activity_at BIGINT NOT NULL,
      owner_id TEXT NOT NULL,
      created_at BIGINT NOT NULL
    )`
      yield* sql`CREATE INDEX ${p}sessions_parent ON ${sessions} (parent_id)`
      yield* sql`CREATE INDEX ${p}sessions_active_activity ON ${sessions} (last_activity_at) WHERE status IN ('busy', 'waiting')`
      yield* sql`CREATE INDEX ${p}sessions_active_owner ON ${sessions} (owner_id) WHERE status IN ('busy', 'waiting')`
      yield* sql`CREATE TABLE ${parts} (
      id TEXT PRIMARY KEY,
      session_id TEXT NOT NULL REFERENCES ${sessions} (id),
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
      yield* sql`CREATE INDEX ${p}parts_session ON ${parts} (session_id, id)`
      yield* sql`CREATE INDEX ${p}parts_active_owner ON ${parts} (owner_id) WHERE status IN ('pending', 'running')`
      yield* sql`CREATE INDEX ${p}parts_active_session ON ${parts} (session_id) WHERE status IN ('pending', 'running')`
      yield* sql`CREATE INDEX ${p}parts_active_deadline ON ${parts} (deadline_at) WHERE status IN ('pending', 'running')`
      yield* sql.onDialectOrElse({
        pg: () =>
          sql`CREATE TABLE ${events} (id BIGSERIAL PRIMARY KEY, type TEXT NOT NULL, at BIGINT NOT NULL,
        instance_id TEXT, session_id TEXT, part_id TEXT, reason TEXT, data TEXT)`,
        orElse: () =>
          sql`CREATE TABLE ${events} (id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, at BIGINT NOT NULL,
        instance_id TEXT, session_id TEXT, part_id TEXT, reason TEXT, data TEXT)`
      })
      yield* sql`CREATE INDEX ${p}events_session ON ${events} (session_id, id)`
    })),
  /**
   * A session's turn is claimed in the database, not only in one instance's memory: `turn_id` names
   * the turn that holds a busy/waiting session, and every write of that turn is fenced on it, so a
   * turn that lost its session can never move it. `cancel_request` is an abort asked of the owner by
   * another instance (the reason, as JSON); the owner polls its own requests through the index.
   */
  "0002_session_turn_claims": migration("0002_session_turn_claims", (sql, t) =>
    Effect.gen(function*() {
      const sessions = name(sql, t.sessions)
      yield* sql`ALTER TABLE ${sessions} ADD COLUMN turn_id TEXT`
      yield* sql`ALTER TABLE ${sessions} ADD COLUMN cancel_request TEXT`
      yield* sql`CREATE INDEX ${name(sql, t.prefix)}sessions_cancel_requested ON ${sessions} (owner_id) WHERE cancel_request IS NOT NULL`
    })),
  /**
   * The lists are read in pages by keyset (issue 19): sessions newest first on (created_at, id),
   * a session's parts on `parts_session (session_id, id)` (already there), and the live parts by
   * id through a partial index of the live rows, so a page costs its rows, not the history.
   */
  "0003_list_pages": migration("0003_list_pages", (sql, t) =>
    Effect.gen(function*() {
      yield* sql`CREATE INDEX ${name(sql, t.prefix)}sessions_created ON ${name(sql, t.sessions)} (created_at, id)`
      yield* sql`CREATE INDEX ${name(sql, t.prefix)}parts_active_id ON ${name(sql, t.parts)} (id) WHERE status IN ('pending', 'running')`
    })),
  /**
   * Room a live part's row keeps for the write that ends it (`PartRepo`'s `reservedRoom`), so a
   * rescue's reason and end take its place instead of growing the row and splitting its page
   * (issue 21). Rows that are live now have none and grow once when they end, as before.
   */
  "0004_part_reserve": migration("0004_part_reserve", (sql, t) =>
    Effect.gen(function*() {
      yield* sql`ALTER TABLE ${name(sql, t.parts)} ADD COLUMN reserve TEXT`
    }))
}

/** The migrations of a store under these table names, for `Migrator.make`. */
export const migrationsFor = (t: TableNames): Migrator.Loader =>
  Migrator.fromRecord(Object.fromEntries(Object.entries(steps).map(([id, step]) => [id, step(t)])))

/** The migrations under the default prefix. */
export const migrations: Migrator.Loader = migrationsFor(tableNames())

/**
 * The layout before the table prefix: the same tables and indexes unprefixed (`sessions`,
 * `sessions_parent`…), tracked by `vigil_migrations`. Index names as they were, and how each is
 * made (SQLite cannot rename an index: it is dropped and made again under its new name).
 */
const legacyTables = ["instances", "sessions", "parts", "events"] as const
const legacyIndexes: ReadonlyArray<readonly [name: string, table: string, definition: string]> = [
  ["sessions_parent", "sessions", "(parent_id)"],
  ["sessions_active_activity", "sessions", "(last_activity_at) WHERE status IN ('busy', 'waiting')"],
  ["sessions_active_owner", "sessions", "(owner_id) WHERE status IN ('busy', 'waiting')"],
  ["sessions_cancel_requested", "sessions", "(owner_id) WHERE cancel_request IS NOT NULL"],
  ["parts_session", "parts", "(session_id, id)"],
  ["parts_active_owner", "parts", "(owner_id) WHERE status IN ('pending', 'running')"],
  ["parts_active_session", "parts", "(session_id) WHERE status IN ('pending', 'running')"],
  ["parts_active_deadline", "parts", "(deadline_at) WHERE status IN ('pending', 'running')"],
  ["events_session", "events", "(session_id, id)"]
]
const legacyMigrations = "vigil_migrations"

/** Which of these tables exist (in the current schema on PostgreSQL). */
const existingTables = (sql: SqlClient.SqlClient, names: ReadonlyArray<string>) =>
  sql.onDialectOrElse({
    pg: () =>
      sql<{ name: string }>`SELECT table_name AS name FROM information_schema.tables
        WHERE table_schema = current_schema() AND table_name IN ${sql.in(names)}`,
    orElse: () => sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ${sql.in(names)}`
  }).pipe(Effect.map((rows) => new Set(rows.map((row) => row.name))))

/**
 * A database of the layout before the prefix (vigil's four tables unprefixed, and
 * `vigil_migrations` tracking them) is adopted, not abandoned: its tables, indexes (and on
 * PostgreSQL the event id sequence and primary keys) are renamed under the prefix in one
 * transaction, with every row kept, before the migrator runs; the migrations it had stay applied.
 * It is that layout only when none of the prefixed tables exist yet (`vigil_sessions` beside
 * `vigil_migrations` means the migrations table is already the new layout's) and the unprefixed
 * tables have vigil's columns: an app's own `sessions` table is never taken.
 */
const isLegacyLayout = (sql: SqlClient.SqlClient, t: TableNames) =>
  Effect.gen(function*() {
    const prefixed = [t.instances, t.sessions, t.parts, t.events, ...(t.migrations === legacyMigrations ? [] : [t.migrations])]
    const present = yield* existingTables(sql, [...legacyTables, legacyMigrations, "vigil_sessions", ...prefixed])
    const legacy = present.has(legacyMigrations) && !present.has("vigil_sessions") &&
      legacyTables.every((table) => present.has(table)) && !prefixed.some((table) => present.has(table))
    if (!legacy) return false
    // vigil's columns, not an app's tables of the same names (a missing column fails the read).
    return yield* Effect.all([
      sql`SELECT id, owner_id, last_activity_at, parent_part_id FROM sessions WHERE 1 = 0`,
      sql`SELECT id, owner_id, session_id, proc_start, deadline_at FROM parts WHERE 1 = 0`,
      sql`SELECT id, heartbeat_at, lease_millis FROM instances WHERE 1 = 0`,
      sql`SELECT id, type, at, instance_id, reason, data FROM events WHERE 1 = 0`
    ]).pipe(Effect.as(true), Effect.orElseSucceed(() => false))
  })

const adoptLegacyLayout = (sql: SqlClient.SqlClient, t: TableNames) =>
  Effect.gen(function*() {
    if (!(yield* isLegacyLayout(sql, t))) return Option.none<string>()
    yield* sql.withTransaction(Effect.gen(function*() {
      for (const table of legacyTables) {
        yield* sql`ALTER TABLE ${sql.literal(table)} RENAME TO ${sql.literal(`${t.prefix}${table}`)}`
      }
      if (t.migrations !== legacyMigrations) {
        yield* sql`ALTER TABLE ${sql.literal(legacyMigrations)} RENAME TO ${sql.literal(t.migrations)}`
      }
      yield* sql.onDialectOrElse({
        pg: () =>
          Effect.gen(function*() {
            const renamed = [...legacyIndexes.map(([index]) => index), ...legacyTables.map((table) => `${table}_pkey`)]
            for (const index of renamed) {
              yield* sql`ALTER INDEX IF EXISTS ${sql.literal(index)} RENAME TO ${sql.literal(`${t.prefix}${index}`)}`
            }
            if (t.migrations !== legacyMigrations) {
              yield* sql`ALTER INDEX IF EXISTS ${sql.literal(`${legacyMigrations}_pkey`)} RENAME TO ${sql.literal(`${t.migrations}_pkey`)}`
            }
            yield* sql`ALTER SEQUENCE IF EXISTS events_id_seq RENAME TO ${sql.literal(`${t.prefix}events_id_seq`)}`
            // Foreign keys by the names a fresh store's have (a later migration may drop one by name).
            const constraints = yield* sql<{ name: string; table: string }>`SELECT conname AS name, conrelid::regclass::text AS table
              FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
              AND conname IN ('sessions_parent_id_fkey', 'parts_session_id_fkey')`
            for (const constraint of constraints) {
              yield* sql`ALTER TABLE ${sql.literal(constraint.table)} RENAME CONSTRAINT ${sql.literal(constraint.name)} TO ${
                sql.literal(`${t.prefix}${constraint.name}`)
              }`
            }
          }),
        orElse: () =>
          Effect.gen(function*() {
            const rows = yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'index'`
            const indexes = new Set(rows.map((row) => row.name))
            for (const [index, table, definition] of legacyIndexes) {
              if (!indexes.has(index)) continue
              yield* sql`DROP INDEX ${sql.literal(index)}`
              yield* sql`CREATE INDEX ${sql.literal(`${t.prefix}${index}`)} ON ${sql.literal(`${t.prefix}${table}`)} ${
                sql.literal(definition)
              }`
            }
          })
      })
    }))
    return Option.some(`renamed ${legacyTables.join(", ")} to ${t.prefix}${legacyTables.join(`, ${t.prefix}`)}`)
  }).pipe(
    // A twin process starting on the same SQLite file may have adopted them first (the check ran
    // before our transaction): then there is nothing left to do. PostgreSQL runs serialized.
    Effect.catchAll((error) =>
      isLegacyLayout(sql, t).pipe(
        Effect.orElseSucceed(() => true),
        Effect.flatMap((still) => still ? Effect.fail(error) : Effect.succeed(Option.none<string>()))
      )
    ),
    Effect.mapError(failed(null, "cannot adopt the unprefixed tables of an earlier vigil"))
  )

/** The database is of an earlier vigil's layout and read-only commands do not upgrade it. */
export class StoreUpgradeRequired extends Data.TaggedError("StoreUpgradeRequired")<{ readonly message: string }> {}

/**
 * For a read-only command on a database it must not migrate (`vigil status`): an earlier vigil's
 * unprefixed layout is one line saying how to upgrade it, not a missing-table defect.
 */
export const requireCurrentLayout: Effect.Effect<void, StoreUpgradeRequired | SqlError.SqlError, SqlClient.SqlClient> = Effect
  .gen(function*() {
    const t = yield* StoreTables
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    if (yield* isLegacyLayout(sql, t)) {
      return yield* new StoreUpgradeRequired({
        message: `the database has an earlier vigil's tables (sessions, parts, … without the ${t.prefix} prefix): ` +
          "start vigil (or run vigil recover) once to rename them, every row kept"
      })
    }
  })

/**
 * On PostgreSQL several instances may start at once on an empty database, and the migrator's
 * "create the migrations table if it is missing" is not safe against a concurrent twin: the
 * migration run is serialized across processes with a session advisory lock, held on a reserved
 * connection while the migrator works on the pool. SQLite serializes writers on its own.
 */
const serialized = <A, E, R>(sql: SqlClient.SqlClient, run: Effect.Effect<A, E, R>) =>
  sql.onDialectOrElse({
    pg: () =>
      Effect.scoped(Effect.gen(function*() {
        const conn = yield* sql.reserve.pipe(Effect.mapError(failed(null, "cannot take the migration lock")))
        yield* conn.executeRaw("SELECT pg_advisory_lock(hashtextextended('vigil/migrations', 0))", []).pipe(
          Effect.mapError(failed(null, "cannot take the migration lock"))
        )
        yield* Effect.addFinalizer(() => conn.executeRaw("SELECT pg_advisory_unlock_all()", []).pipe(Effect.ignore))
        return yield* run
      })),
    orElse: () => run
  })

/**
 * Applies what is missing on the SqlClient in context (an upgrade of the unprefixed layout first);
 * a second run is a no-op. Every failure is a `StoreMigrationFailed`, and start-up stops on it.
 */
export const runMigrations: Effect.Effect<
  ReadonlyArray<readonly [id: number, name: string]>,
  StoreMigrationFailed,
  SqlClient.SqlClient
> = Effect.gen(function*() {
  const t = yield* StoreTables
  const sql = (yield* SqlClient.SqlClient).withoutTransforms()
  const run = Effect.gen(function*() {
    const adopted = yield* adoptLegacyLayout(sql, t)
    if (Option.isSome(adopted)) {
      yield* Effect.logInfo(`adopted the tables of an earlier vigil under the prefix ${t.prefix}: ${adopted.value}, every row kept`)
    }
    return yield* Migrator.make({})({ loader: migrationsFor(t), table: t.migrations }).pipe(
      // The migrator turns a failed migration into a defect; ours carry their typed failure.
      Effect.catchSomeDefect((defect) =>
        defect instanceof Migrator.MigrationError && defect.cause instanceof StoreMigrationFailed
          ? Option.some(Effect.fail(defect.cause))
          : Option.none()
      ),
      Effect.catchTags({
        MigrationError: (error) => Effect.fail(new StoreMigrationFailed({ migration: null, message: error.message, cause: error })),
        SqlError: (error) => Effect.fail(failed(null, `cannot read or write ${t.migrations}`)(error))
      }),
      Effect.provideService(SqlClient.SqlClient, sql)
    )
  })
  return yield* serialized(sql, run)
})

/** Migrates the store on the SqlClient in context before anything reads it. */
export const MigrationsLive: Layer.Layer<never, StoreMigrationFailed, SqlClient.SqlClient> = Layer.effectDiscard(
  runMigrations.pipe(
    Effect.tap((applied) =>
      applied.length > 0 ? Effect.logInfo("applied migrations", applied.map(([id, name]) => `${id}_${name}`)) : Effect.void
    )
  )
)
