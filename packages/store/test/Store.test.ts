import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { migrations, PartRepo, SessionRepo, SqliteStoreLive } from "@vigil/store"
import { Cause, Effect, Exit, Option } from "effect"
import { makePart, makeSession, tempDbFile, withStore } from "./fixtures.js"

const partialIndexes = [
  "parts_active_deadline",
  "parts_active_owner",
  "parts_active_session",
  "sessions_active_activity",
  "sessions_active_owner"
]

describe("SqliteStoreLive", () => {
  it.effect("migrations applied twice are a no-op", () =>
    Effect.scoped(Effect.gen(function*() {
      const file = yield* tempDbFile
      const session = makeSession()

      yield* Effect.gen(function*() {
        yield* (yield* SessionRepo).insert(session)
      }).pipe(Effect.provide(SqliteStoreLive(file)))

      // A second boot on the same file: the store layer builds again without error, and
      // the first boot's rows are still there (nothing was recreated).
      const { kept, rows } = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const kept = yield* (yield* SessionRepo).get(session.id)
        const rows = yield* sql<{ migrationId: number; name: string }>`
          SELECT migration_id, name FROM vigil_migrations ORDER BY migration_id`
        return { kept, rows }
      }).pipe(Effect.provide(SqliteStoreLive(file)))

      assert.deepStrictEqual(kept, Option.some(session))
      const known = yield* migrations
      assert.isAtLeast(known.length, 1)
      assert.deepStrictEqual(
        rows.map((row) => [row.migrationId, row.name]),
        known.map(([id, name]) => [id, name])
      )
      assert.deepStrictEqual(rows[0], { migrationId: 1, name: "create_tables" })
    })))

  it.effect("creates the tables and the partial indexes over the live rows", () =>
    withStore(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const tables = yield* sql<{ name: string }>`
        SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
      assert.deepStrictEqual(tables.map((t) => t.name), ["events", "instances", "parts", "sessions", "vigil_migrations"])

      const indexes = yield* sql<{ name: string; sql: string }>`
        SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql LIKE '%WHERE%' ORDER BY name`
      assert.deepStrictEqual(indexes.map((i) => i.name), partialIndexes)
      for (const index of indexes) {
        const where = index.name.startsWith("parts_")
          ? "WHERE status IN ('pending', 'running')"
          : "WHERE status IN ('busy', 'waiting')"
        assert.isTrue(index.sql.endsWith(where), index.sql)
      }
    })))

  it.effect("the watchdog's and recovery's queries read through the partial indexes", () =>
    withStore(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const plan = (rows: ReadonlyArray<{ detail: string }>) => rows.map((row) => row.detail).join("\n")
      const byOwner = yield* sql<{ detail: string }>`EXPLAIN QUERY PLAN
        SELECT * FROM parts WHERE owner_id = ${"x"} AND status IN ('pending', 'running')`
      assert.include(plan(byOwner), "parts_active_owner")
      const activeSessions = yield* sql<{ detail: string }>`EXPLAIN QUERY PLAN
        SELECT * FROM sessions WHERE owner_id = ${"x"} AND status IN ('busy', 'waiting')`
      assert.include(plan(activeSessions), "sessions_active_owner")
    })))

  it.effect("opens the file in WAL mode with foreign keys on and a busy timeout", () =>
    withStore(Effect.gen(function*() {
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
      assert.strictEqual(error.cause.code, "SQLITE_CONSTRAINT_FOREIGNKEY")
      assert.deepStrictEqual(yield* parts.get(orphan.id), Option.none())
    })))
})
