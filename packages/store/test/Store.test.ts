import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { isPostgresUrl, migrations, PartRepo, SessionRepo } from "@vigil/store"
import { Cause, Effect, Exit, Option } from "effect"
import type { Backend } from "./fixtures.js"
import { describeBackends, makePart, makeSession, sqlite } from "./fixtures.js"

const partialIndexes = [
  "vigil_parts_active_deadline",
  "vigil_parts_active_id",
  "vigil_parts_active_owner",
  "vigil_parts_active_session",
  "vigil_sessions_active_activity",
  "vigil_sessions_active_owner",
  "vigil_sessions_cancel_requested"
]

/** Which rows each partial index covers, as each dialect writes the predicate back. */
const predicates = {
  sqlite: (name: string) =>
    name === "vigil_sessions_cancel_requested"
      ? "WHERE cancel_request IS NOT NULL"
      : name.startsWith("vigil_parts_")
      ? "WHERE status IN ('pending', 'running')"
      : "WHERE status IN ('busy', 'waiting')",
  postgres: (name: string) =>
    name === "vigil_sessions_cancel_requested"
      ? "WHERE (cancel_request IS NOT NULL)"
      : name.startsWith("vigil_parts_")
      ? "WHERE (status = ANY (ARRAY['pending'::text, 'running'::text]))"
      : "WHERE (status = ANY (ARRAY['busy'::text, 'waiting'::text]))"
}

/** Tables and partial indexes (name, definition) of the store's own schema. */
const catalog = (backend: Backend) =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    if (backend.name === "sqlite") {
      const tables = yield* sql<{ name: string }>`
        SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
      const indexes = yield* sql<{ name: string; sql: string }>`
        SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql LIKE '%WHERE%' ORDER BY name`
      return { tables: tables.map((t) => t.name), indexes: indexes.map((i) => ({ name: i.name, definition: i.sql })) }
    }
    const tables = yield* sql<{ table_name: string }>`
      SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`
    const indexes = yield* sql<{ indexname: string; indexdef: string }>`
      SELECT indexname, indexdef FROM pg_indexes
      WHERE schemaname = current_schema() AND indexdef LIKE '%WHERE%' ORDER BY indexname`
    return {
      tables: tables.map((t) => t.table_name),
      indexes: indexes.map((i) => ({ name: i.indexname, definition: i.indexdef }))
    }
  })

/** The plan of a query, as text: SQLite's EXPLAIN QUERY PLAN, or PostgreSQL's EXPLAIN with sequential scans priced out (a tiny table would otherwise be scanned). */
const planOf = (backend: Backend, query: (sql: SqlClient.SqlClient) => Effect.Effect<ReadonlyArray<object>, unknown>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    if (backend.name === "sqlite") {
      const rows = (yield* Effect.orDie(query(sql))) as ReadonlyArray<{ detail: string }>
      return rows.map((row) => row.detail).join("\n")
    }
    return yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SET LOCAL enable_seqscan = off`
      // one text column, named "QUERY PLAN"
      const rows = yield* Effect.orDie(query(sql))
      return rows.map((row) => String(Object.values(row)[0])).join("\n")
    })).pipe(Effect.orDie)
  })

describeBackends("the store", (backend) => {
  const { withStore } = backend

  it.effect("migrations applied twice are a no-op", () =>
    Effect.scoped(Effect.gen(function*() {
      const open = yield* backend.freshDatabase
      const session = makeSession()

      yield* Effect.gen(function*() {
        yield* (yield* SessionRepo).insert(session)
      }).pipe(Effect.provide(open()))

      // A second boot on the same database: the store layer builds again without error, and
      // the first boot's rows are still there (nothing was recreated).
      const { kept, rows } = yield* Effect.gen(function*() {
        const sql = (yield* SqlClient.SqlClient).withoutTransforms()
        const kept = yield* (yield* SessionRepo).get(session.id)
        const rows = yield* sql<{ migration_id: number; name: string }>`
          SELECT migration_id, name FROM vigil_migrations ORDER BY migration_id`
        return { kept, rows }
      }).pipe(Effect.provide(open()))

      assert.deepStrictEqual(kept, Option.some(session))
      const known = yield* migrations
      assert.isAtLeast(known.length, 1)
      assert.deepStrictEqual(
        rows.map((row) => [row.migration_id, row.name]),
        known.map(([id, name]) => [id, name])
      )
      assert.deepStrictEqual(rows[0], { migration_id: 1, name: "create_tables" })
    })))

  it.effect("creates the tables and the partial indexes over the live rows", () =>
    withStore(Effect.gen(function*() {
      const { indexes, tables } = yield* catalog(backend)
      assert.deepStrictEqual(tables, ["vigil_events", "vigil_instances", "vigil_migrations", "vigil_parts", "vigil_sessions"])
      assert.deepStrictEqual(indexes.map((i) => i.name), partialIndexes)
      for (const index of indexes) {
        assert.isTrue(index.definition.endsWith(predicates[backend.name](index.name)), index.definition)
      }
    })))

  it.effect("the watchdog's and recovery's queries read through the partial indexes", () =>
    withStore(Effect.gen(function*() {
      const explain = backend.name === "sqlite" ? "EXPLAIN QUERY PLAN" : "EXPLAIN"
      const byOwner = yield* planOf(backend, (sql) =>
        sql`${sql.literal(explain)} SELECT * FROM vigil_parts WHERE owner_id = ${"x"} AND status IN ('pending', 'running')`)
      assert.include(byOwner, "vigil_parts_active_owner")
      const activeSessions = yield* planOf(backend, (sql) =>
        sql`${sql.literal(explain)} SELECT * FROM vigil_sessions WHERE owner_id = ${"x"} AND status IN ('busy', 'waiting')`)
      assert.include(activeSessions, "vigil_sessions_active_owner")
      // The owner's poll for cancel requests, several times a second.
      const requests = yield* planOf(backend, (sql) =>
        sql`${sql.literal(explain)} SELECT id, turn_id, cancel_request FROM vigil_sessions
          WHERE owner_id = ${"x"} AND cancel_request IS NOT NULL AND status IN ('busy', 'waiting')`)
      assert.match(requests, /vigil_sessions_cancel_requested|vigil_sessions_active_owner/)
    })))

  it.effect("foreign keys are enforced: a part of an unknown session is refused", () =>
    withStore(Effect.gen(function*() {
      const parts = yield* PartRepo
      const orphan = makePart(makeSession().id)
      const exit = yield* Effect.exit(parts.insert(orphan))
      // SqlError becomes a defect at the repository edge
      const defect = Exit.isFailure(exit) ? Cause.dieOption(exit.cause) : Option.none()
      assert.isTrue(Option.isSome(defect))
      const error = Option.getOrThrow(defect) as { _tag: string; cause: { code: string } }
      assert.strictEqual(error._tag, "SqlError")
      assert.strictEqual(error.cause.code, backend.name === "sqlite" ? "SQLITE_CONSTRAINT_FOREIGNKEY" : "23503")
      assert.deepStrictEqual(yield* parts.get(orphan.id), Option.none())
    })))
})

describe("SqliteStoreLive", () => {
  it.effect("opens the file in WAL mode with foreign keys on and a busy timeout", () =>
    sqlite.withStore(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const [journal] = yield* sql<{ journalMode: string }>`PRAGMA journal_mode`
      const [foreignKeys] = yield* sql<{ foreignKeys: number }>`PRAGMA foreign_keys`
      const [busy] = yield* sql<{ timeout: number }>`PRAGMA busy_timeout`
      const [synchronous] = yield* sql<{ synchronous: number }>`PRAGMA synchronous`
      assert.deepStrictEqual(journal, { journalMode: "wal" })
      assert.deepStrictEqual(foreignKeys, { foreignKeys: 1 })
      assert.deepStrictEqual(busy, { timeout: 5000 })
      // NORMAL
      assert.deepStrictEqual(synchronous, { synchronous: 1 })
    })))
})

describe("resolveStore", () => {
  it("only a postgres:// or postgresql:// URL names PostgreSQL", () => {
    for (const url of ["postgres://u:p@h:5432/db", "postgresql://h/db", " POSTGRES://h/db"]) assert.isTrue(isPostgresUrl(url), url)
    for (const url of ["", "sqlite://x", "mysql://h/db", ".vigil/vigil.db", "file:postgres://x"]) assert.isFalse(isPostgresUrl(url), url)
  })
})
