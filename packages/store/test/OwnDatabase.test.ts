import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { makeInstanceId, OrphanedByCrash, ToolTimeout } from "@vigil/domain"
import type { StoreOptions } from "@vigil/store"
import {
  EventLog,
  migrations,
  PartRepo,
  requireCurrentLayout,
  SessionRepo,
  SqlitePragmas,
  SqlStoreLive,
  StoreMigrationFailed,
  StoreTables,
  tableNames
} from "@vigil/store"
import { PgLive, PgStoreLive } from "@vigil/store/pg"
import { SqliteLive, SqliteStoreLive } from "@vigil/store/sqlite"
import { freshPgSchema, pgSkipped } from "@vigil/store/test-database"
import type { Scope } from "effect"
import { Cause, Effect, Exit, Layer, Option, String } from "effect"
import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { makePart, makeSession, tempDbFile } from "./fixtures.js"

/**
 * vigil in an app's own database: beside the app's tables, under a prefix, on the app's client;
 * a migration that cannot apply is a typed failure; a database of the layout before the prefix is
 * adopted with every row.
 */

interface Database {
  readonly name: "sqlite" | "postgres"
  readonly skip: boolean
  /** A fresh, empty database: a client on it (for the app's own statements) and the store on it. */
  readonly fresh: Effect.Effect<{
    readonly client: Layer.Layer<SqlClient.SqlClient>
    readonly store: (options?: StoreOptions) => Layer.Layer<SessionRepo | PartRepo | EventLog, StoreMigrationFailed>
  }, never, Scope.Scope>
}

const databases: ReadonlyArray<Database> = [
  {
    name: "sqlite",
    skip: false,
    fresh: Effect.map(tempDbFile, (file) => ({
      client: Layer.orDie(SqliteLive(file)),
      store: (options) => SqliteStoreLive(file, options).pipe(Layer.catchAll((e) => e._tag === "StoreMigrationFailed" ? Layer.fail(e) : Layer.die(e)))
    }))
  },
  {
    name: "postgres",
    skip: pgSkipped,
    fresh: Effect.map(freshPgSchema, (url) => ({
      client: Layer.orDie(PgLive(url)),
      store: (options) => PgStoreLive(url, options).pipe(Layer.catchAll((e) => e._tag === "StoreMigrationFailed" ? Layer.fail(e) : Layer.die(e)))
    }))
  }
]

/** Runs the app's own statements on the raw client. */
const onClient = <A, E>(client: Layer.Layer<SqlClient.SqlClient>, body: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => body(sql.withoutTransforms())).pipe(Effect.provide(client), Effect.orDie)

/** The tables, indexes and (PostgreSQL) sequences in the database, sorted. */
const catalog = (name: Database["name"], client: Layer.Layer<SqlClient.SqlClient>) =>
  onClient(client, (sql) =>
    name === "sqlite"
      ? Effect.all({
        tables: sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`,
        indexes: sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name`,
        sequences: Effect.succeed([])
      })
      : Effect.all({
        tables: sql<{ name: string }>`SELECT table_name AS name FROM information_schema.tables
          WHERE table_schema = current_schema() ORDER BY table_name`,
        indexes: sql<{ name: string }>`SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname`,
        sequences: sql<{ name: string }>`SELECT sequence_name AS name FROM information_schema.sequences
          WHERE sequence_schema = current_schema() ORDER BY sequence_name`
      })).pipe(Effect.map((c) => ({
        tables: c.tables.map((r) => r.name),
        indexes: c.indexes.map((r) => r.name),
        sequences: c.sequences.map((r) => r.name)
      })))

/** A round trip through the three repositories a turn uses. */
const roundTrip = Effect.gen(function*() {
  const sessions = yield* SessionRepo
  const parts = yield* PartRepo
  const log = yield* EventLog
  const session = makeSession()
  const part = makePart(session.id, { status: "running", startedAt: 2_000, deadlineAt: 3_000 })
  yield* sessions.insert(session)
  yield* parts.insert(part)
  assert.isTrue(yield* parts.fail(part.id, { reason: new ToolTimeout({ timeout: 1_000 }), at: 3_000 }))
  const id = yield* log.append({ type: "part.timeout", at: 3_000, sessionId: session.id, partId: part.id })
  return {
    session: yield* sessions.get(session.id),
    part: Option.map(yield* parts.get(part.id), (p) => ({ status: p.status, error: p.error })),
    events: (yield* log.list({ sessionId: session.id })).map((e) => e.id),
    id,
    sessionId: session.id
  }
})

const failureOf = <A, E>(exit: Exit.Exit<A, E>) => (Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none())

describe("the store on an app's own SQLite client", () => {
  for (const transforms of [false, true]) {
    it.effect(`a plain SqliteClient.layer ${transforms ? "with camelCase transforms" : "without transforms"}, no pragmas: the repositories work`, () =>
      Effect.scoped(Effect.gen(function*() {
        const filename = yield* tempDbFile
        const client = SqliteClient.layer({
          filename,
          ...(transforms ? { transformQueryNames: String.camelToSnake, transformResultNames: String.snakeToCamel } : {})
        })
        const result = yield* roundTrip.pipe(Effect.provide(Layer.orDie(SqlStoreLive().pipe(Layer.provide(client)))))
        assert.isTrue(Option.isSome(result.session))
        assert.deepStrictEqual(result.part, Option.some({ status: "error" as const, error: new ToolTimeout({ timeout: 1_000 }) }))
        assert.deepStrictEqual(result.events, [result.id])
      })))
  }

  it.effect("SqlitePragmas.layer gives an app's client vigil's pragmas (without it, the driver's defaults)", () =>
    Effect.scoped(Effect.gen(function*() {
      const filename = yield* tempDbFile
      const read = Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.all({
          busy: sql<{ timeout: number }>`PRAGMA busy_timeout`,
          foreignKeys: sql<{ foreign_keys: number }>`PRAGMA foreign_keys`,
          synchronous: sql<{ synchronous: number }>`PRAGMA synchronous`,
          journal: sql<{ journal_mode: string }>`PRAGMA journal_mode`
        })).pipe(Effect.map((r) => ({
          busy: r.busy[0]!.timeout,
          foreignKeys: r.foreignKeys[0]!.foreign_keys,
          synchronous: r.synchronous[0]!.synchronous,
          journal: r.journal[0]!.journal_mode
        })))
      const plain = yield* read.pipe(Effect.provide(Layer.orDie(SqliteClient.layer({ filename, disableWAL: true }))))
      // better-sqlite3's own defaults already wait 5 s and check foreign keys; not the sync and journal modes.
      assert.deepStrictEqual(plain, { busy: 5000, foreignKeys: 1, synchronous: 2, journal: "delete" })
      const withPragmas = yield* read.pipe(
        Effect.provide(Layer.orDie(SqlitePragmas.layer.pipe(Layer.provideMerge(SqliteClient.layer({ filename, disableWAL: true })))))
      )
      assert.deepStrictEqual(withPragmas, { busy: 5000, foreignKeys: 1, synchronous: 1, journal: "wal" })
    })))

  it("a prefix that is not a plain identifier is refused with the reason", () => {
    for (const prefix of ["", "Vigil_", "vigil-", "1vigil_", "vigil_; DROP TABLE x; --", "v".repeat(33)]) {
      const exit = Effect.runSyncExit(Layer.build(SqlStoreLive({ prefix })).pipe(
        Effect.scoped,
        Effect.provideService(SqlClient.SqlClient, {} as SqlClient.SqlClient)
      ))
      assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause), prefix)
      assert.include(Cause.pretty((exit as Exit.Failure<unknown, unknown>).cause), "table prefix must be", prefix)
    }
  })
})

/** The layout before the prefix: vigil's tables unprefixed, tracked by `vigil_migrations` (the released migrations, verbatim). */
const legacyMigrations = Migrator.fromRecord({
  "0001_create_tables": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE instances (id TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, proc_start TEXT,
      started_at BIGINT NOT NULL, heartbeat_at BIGINT NOT NULL, lease_millis BIGINT NOT NULL, stopped_at BIGINT)`
    yield* sql`CREATE TABLE sessions (id TEXT PRIMARY KEY, parent_id TEXT REFERENCES sessions (id), parent_part_id TEXT,
      title TEXT NOT NULL, status TEXT NOT NULL, cancel_reason TEXT, last_activity_at BIGINT NOT NULL, owner_id TEXT NOT NULL,
      created_at BIGINT NOT NULL)`
    yield* sql`CREATE INDEX sessions_parent ON sessions (parent_id)`
    yield* sql`CREATE INDEX sessions_active_activity ON sessions (last_activity_at) WHERE status IN ('busy', 'waiting')`
    yield* sql`CREATE INDEX sessions_active_owner ON sessions (owner_id) WHERE status IN ('busy', 'waiting')`
    yield* sql`CREATE TABLE parts (id TEXT PRIMARY KEY, session_id TEXT NOT NULL REFERENCES sessions (id), kind TEXT NOT NULL,
      tool TEXT NOT NULL, input TEXT NOT NULL, call_id TEXT, status TEXT NOT NULL, output TEXT, error TEXT, created_at BIGINT NOT NULL,
      started_at BIGINT, ended_at BIGINT, deadline_at BIGINT, owner_id TEXT NOT NULL, child_session_id TEXT, pid INTEGER,
      pgid INTEGER, proc_start TEXT)`
    yield* sql`CREATE INDEX parts_session ON parts (session_id, id)`
    yield* sql`CREATE INDEX parts_active_owner ON parts (owner_id) WHERE status IN ('pending', 'running')`
    yield* sql`CREATE INDEX parts_active_session ON parts (session_id) WHERE status IN ('pending', 'running')`
    yield* sql`CREATE INDEX parts_active_deadline ON parts (deadline_at) WHERE status IN ('pending', 'running')`
    yield* sql.onDialectOrElse({
      pg: () =>
        sql`CREATE TABLE events (id BIGSERIAL PRIMARY KEY, type TEXT NOT NULL, at BIGINT NOT NULL,
        instance_id TEXT, session_id TEXT, part_id TEXT, reason TEXT, data TEXT)`,
      orElse: () =>
        sql`CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, at BIGINT NOT NULL,
        instance_id TEXT, session_id TEXT, part_id TEXT, reason TEXT, data TEXT)`
    })
    yield* sql`CREATE INDEX events_session ON events (session_id, id)`
  }),
  "0002_session_turn_claims": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE sessions ADD COLUMN turn_id TEXT`
    yield* sql`ALTER TABLE sessions ADD COLUMN cancel_request TEXT`
    yield* sql`CREATE INDEX sessions_cancel_requested ON sessions (owner_id) WHERE cancel_request IS NOT NULL`
  })
})

/** An earlier vigil's database: the old layout, one session with a running part, two events, an instance. */
const seedLegacy = (client: Layer.Layer<SqlClient.SqlClient>) =>
  onClient(client, (sql) =>
    Effect.gen(function*() {
      yield* Migrator.make({})({ loader: legacyMigrations, table: "vigil_migrations" }).pipe(Effect.provideService(SqlClient.SqlClient, sql))
      const session = makeSession()
      const part = makePart(session.id, { status: "running", startedAt: 1_500 })
      yield* sql`INSERT INTO sessions (id, parent_id, parent_part_id, title, status, cancel_reason, last_activity_at, owner_id, created_at)
        VALUES (${session.id}, NULL, NULL, ${session.title}, 'busy', NULL, 1000, ${session.ownerId}, 1000)`
      yield* sql`INSERT INTO parts (id, session_id, kind, tool, input, call_id, status, output, error, created_at, started_at,
        ended_at, deadline_at, owner_id, child_session_id, pid, pgid, proc_start)
        VALUES (${part.id}, ${session.id}, 'tool', 'bash', '{"command":"echo hi"}', NULL, 'running', NULL, NULL, 1000, 1500,
          NULL, NULL, ${part.ownerId}, NULL, NULL, NULL, NULL)`
      yield* sql`INSERT INTO events (type, at, session_id) VALUES ('session.created', 1000, ${session.id})`
      yield* sql`INSERT INTO events (type, at, session_id) VALUES ('part.started', 1500, ${session.id})`
      yield* sql`INSERT INTO instances (id, pid, host, proc_start, started_at, heartbeat_at, lease_millis, stopped_at)
        VALUES (${makeInstanceId()}, 1, 'h', NULL, 1, 1, 1000, NULL)`
      return { session, part }
    }))

for (const database of databases) {
  describe.skipIf(database.skip)(`vigil in an app's database (${database.name})`, () => {
    it.effect("every table, index and the migrations table are under the prefix: vigil_ by default, or the one given", () =>
      Effect.scoped(Effect.gen(function*() {
        const db = yield* database.fresh
        yield* Effect.provide(Effect.void, db.store())
        const first = yield* catalog(database.name, db.client)
        assert.deepStrictEqual(first.tables, ["vigil_events", "vigil_instances", "vigil_migrations", "vigil_parts", "vigil_sessions"])
        for (const index of first.indexes) assert.match(index, /^vigil_/)
        assert.deepStrictEqual(first.sequences, database.name === "postgres" ? ["vigil_events_id_seq"] : [])

        // A second store under another prefix in the same database: its own tables and rows.
        const acme = yield* roundTrip.pipe(Effect.provide(db.store({ prefix: "acme_" })))
        const second = yield* catalog(database.name, db.client)
        assert.deepStrictEqual(second.tables, [
          "acme_events", "acme_instances", "acme_migrations", "acme_parts", "acme_sessions",
          ...first.tables
        ])
        assert.deepStrictEqual(second.indexes.filter((i) => !i.startsWith("acme_")), first.indexes)
        assert.deepStrictEqual(
          second.indexes.filter((i) => i.startsWith("acme_")),
          first.indexes.map((i) => i.replace(/^vigil_/, "acme_")).sort()
        )
        assert.isTrue(Option.isSome(acme.session))
        const seen = yield* Effect.flatMap(SessionRepo, (repo) => repo.get(acme.sessionId)).pipe(Effect.provide(db.store()))
        assert.deepStrictEqual(seen, Option.none(), "vigil_sessions does not hold acme_'s session")

        // Two prefixes in one layer graph, on one client: each store migrates its own tables (layers
        // are memoized by reference, and the prefix is not part of it).
        yield* Effect.provide(
          Effect.void,
          Layer.mergeAll(SqlStoreLive({ prefix: "one_" }), SqlStoreLive({ prefix: "two_" })).pipe(Layer.provide(db.client), Layer.orDie)
        )
        const third = yield* catalog(database.name, db.client)
        assert.includeMembers(third.tables, ["one_sessions", "one_migrations", "two_sessions", "two_migrations"])
      })))

    it.effect("beside an app's own sessions, parts, events and instances tables (and an index named like vigil's was)", () =>
      Effect.scoped(Effect.gen(function*() {
        const db = yield* database.fresh
        yield* onClient(db.client, (sql) =>
          Effect.gen(function*() {
            yield* sql`CREATE TABLE sessions (id INTEGER PRIMARY KEY, user_name TEXT NOT NULL)`
            yield* sql`CREATE INDEX sessions_parent ON sessions (user_name)`
            yield* sql`CREATE TABLE parts (sku TEXT PRIMARY KEY)`
            yield* sql`CREATE TABLE events (name TEXT)`
            yield* sql`CREATE TABLE instances (region TEXT)`
            yield* sql`INSERT INTO sessions (id, user_name) VALUES (1, 'ada')`
          }))
        const result = yield* roundTrip.pipe(Effect.provide(db.store()))
        assert.isTrue(Option.isSome(result.session))
        // A second boot: vigil neither adopts nor touches the app's tables.
        yield* Effect.provide(Effect.void, db.store())
        const rows = yield* onClient(db.client, (sql) => sql<{ id: number; user_name: string }>`SELECT id, user_name FROM sessions`)
        assert.deepStrictEqual(rows.map((r) => ({ id: Number(r.id), user_name: r.user_name })), [{ id: 1, user_name: "ada" }])
        const { tables } = yield* catalog(database.name, db.client)
        assert.includeMembers(tables, ["sessions", "parts", "events", "instances", "vigil_sessions", "vigil_parts"])
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(requireCurrentLayout.pipe(Effect.provide(db.client)))))
      })))

    it.effect("a migration that cannot apply is a typed StoreMigrationFailed naming it, and nothing of it is left", () =>
      Effect.scoped(Effect.gen(function*() {
        const db = yield* database.fresh
        // The app already has a table of the name vigil's first migration makes.
        yield* onClient(db.client, (sql) => sql`CREATE TABLE vigil_parts (sku TEXT PRIMARY KEY)`)
        const exit = yield* Effect.exit(Effect.provide(Effect.void, db.store()))
        const failure = failureOf(exit)
        assert.isTrue(Option.isSome(failure), "the store must not build")
        const error = Option.getOrThrow(failure)
        assert.instanceOf(error, StoreMigrationFailed)
        assert.strictEqual(error.migration, "0001_create_tables")
        assert.match(error.message, /^migration 0001_create_tables failed: .*vigil_parts.*already exists/)
        // The run was one transaction: no vigil table but the bookkeeping one, and no migration recorded.
        const { tables } = yield* catalog(database.name, db.client)
        assert.deepStrictEqual(tables.filter((t) => t !== "vigil_migrations"), ["vigil_parts"])
        const recorded = yield* onClient(db.client, (sql) => sql`SELECT migration_id FROM vigil_migrations`)
        assert.deepStrictEqual(recorded, [])
      })))

    it.effect("0004_part_reserve keeps every part and its error; a part live before it ends as before", () =>
      Effect.scoped(Effect.gen(function*() {
        const db = yield* database.fresh
        const session = makeSession()
        const running = makePart(session.id, { status: "running", startedAt: 1_500, deadlineAt: 9_000, pid: 42, pgid: 42, procStart: "7" })
        const completed = makePart(session.id, { status: "completed", startedAt: 1_500, endedAt: 2_000, output: "done\n", callId: "c1" })
        const errored = makePart(session.id, { status: "error", startedAt: 1_500, endedAt: 2_500, error: new ToolTimeout({ timeout: 1_000 }) })
        // The store as the migrations before 0004 left it, with a part in each state.
        yield* onClient(db.client, (sql) =>
          Effect.gen(function*() {
            const before = Effect.map(migrations, (all) => all.filter(([id]) => id < 4))
            yield* Migrator.make({})({ loader: before, table: "vigil_migrations" }).pipe(Effect.provideService(SqlClient.SqlClient, sql))
            yield* sql`INSERT INTO vigil_sessions (id, parent_id, parent_part_id, title, status, cancel_reason, last_activity_at, owner_id, created_at)
              VALUES (${session.id}, NULL, NULL, ${session.title}, 'busy', NULL, 1000, ${session.ownerId}, 1000)`
            for (const part of [running, completed, errored]) {
              yield* sql`INSERT INTO vigil_parts (id, session_id, kind, tool, input, call_id, status, output, error, created_at, started_at,
                ended_at, deadline_at, owner_id, child_session_id, pid, pgid, proc_start)
                VALUES (${part.id}, ${session.id}, ${part.kind}, ${part.tool}, ${JSON.stringify(part.input)}, ${part.callId}, ${part.status},
                  ${part.output}, ${part.error === null ? null : JSON.stringify(part.error)}, ${part.createdAt}, ${part.startedAt},
                  ${part.endedAt}, ${part.deadlineAt}, ${part.ownerId}, NULL, ${part.pid}, ${part.pgid}, ${part.procStart})`
            }
          }))
        const after = yield* Effect.gen(function*() {
          const parts = yield* PartRepo
          const kept = yield* Effect.forEach([running, completed, errored], (part) => Effect.map(parts.get(part.id), Option.getOrThrow))
          const ended = yield* parts.endActiveOfOwner(running.ownerId, new OrphanedByCrash({ ownerId: running.ownerId }), 3_000)
          return { kept, ended: ended.map((part) => part.id), rescued: Option.getOrThrow(yield* parts.get(running.id)) }
        }).pipe(Effect.provide(db.store()))
        assert.deepStrictEqual(after.kept, [running, completed, errored])
        assert.instanceOf(after.kept[2]!.error, ToolTimeout)
        assert.deepStrictEqual(after.ended, [running.id])
        assert.deepStrictEqual([after.rescued.status, after.rescued.error, after.rescued.endedAt], [
          "error",
          new OrphanedByCrash({ ownerId: running.ownerId }),
          3_000
        ])
        const rows = yield* onClient(db.client, (sql) =>
          Effect.all({
            recorded: sql<{ migration_id: number }>`SELECT migration_id FROM vigil_migrations ORDER BY migration_id`,
            reserves: sql<{ reserve: string | null }>`SELECT reserve FROM vigil_parts`
          }))
        assert.deepStrictEqual(rows.recorded.map((r) => Number(r.migration_id)), [1, 2, 3, 4])
        assert.deepStrictEqual(rows.reserves.map((r) => r.reserve), [null, null, null], "no room for rows written before it")
      })))

    for (const prefix of ["vigil_", "acme_"]) {
      it.effect(`an earlier vigil's unprefixed tables are adopted under ${prefix}, every row kept`, () =>
        Effect.scoped(Effect.gen(function*() {
          const db = yield* database.fresh
          const { part, session } = yield* seedLegacy(db.client)
          // A read-only command (no migrations) is told how to upgrade, not a missing-table defect.
          const layoutCheck = Effect.exit(requireCurrentLayout.pipe(
            Effect.provide(db.client),
            Effect.provideService(StoreTables, tableNames(prefix))
          ))
          const before = failureOf(yield* layoutCheck)
          assert.deepStrictEqual(Option.map(before, (e) => e._tag), Option.some("StoreUpgradeRequired" as const))
          assert.include(Option.getOrThrow(before).message, "run vigil recover")
          const fresh = yield* database.fresh
          yield* Effect.provide(Effect.void, fresh.store({ prefix }))
          const expected = yield* catalog(database.name, fresh.client)

          const back = yield* Effect.gen(function*() {
            const sessions = yield* SessionRepo
            const parts = yield* PartRepo
            const log = yield* EventLog
            const before = (yield* log.list({ sessionId: session.id })).map((e) => e.type)
            const id = yield* log.append({ type: "after.upgrade", at: 2_000, sessionId: session.id })
            // Foreign keys follow the renamed tables.
            const orphan = yield* Effect.exit(parts.insert(makePart(makeSession().id)))
            return {
              session: yield* sessions.get(session.id),
              active: (yield* parts.active()).map((p) => p.id),
              before,
              id,
              orphanRefused: Exit.isFailure(orphan)
            }
          }).pipe(Effect.provide(db.store({ prefix })))

          assert.deepStrictEqual(Option.map(back.session, (s) => s.id), Option.some(session.id))
          assert.deepStrictEqual(back.active, [part.id])
          assert.deepStrictEqual(back.before, ["part.started", "session.created"])
          assert.strictEqual(back.id, 3, "event ids go on after the old ones")
          assert.isTrue(back.orphanRefused)
          // The same layout as a fresh store's: tables, indexes and sequences under the prefix.
          assert.deepStrictEqual(yield* catalog(database.name, db.client), expected)
          const recorded = yield* onClient(db.client, (sql) =>
            sql<{ migration_id: number }>`SELECT migration_id FROM ${sql.literal(`${prefix}migrations`)} ORDER BY migration_id`)
          assert.deepStrictEqual(recorded.map((r) => Number(r.migration_id)), [1, 2, 3, 4], "the two it had, then the ones it lacked")
          assert.isTrue(Exit.isSuccess(yield* layoutCheck), "the upgraded layout is current")
          // A second boot adopts nothing more and changes nothing.
          yield* Effect.provide(Effect.void, db.store({ prefix }))
          assert.deepStrictEqual(yield* catalog(database.name, db.client), expected)
        })))
    }
  })
}

describe("the entry points", () => {
  /**
   * Every module a source file reaches through relative imports, and the packages they import
   * (statically, or as the SQLite client loads its driver: `createRequire(…)("better-sqlite3")`).
   */
  const packagesReached = (entry: string): Set<string> => {
    const seen = new Set<string>()
    const packages = new Set<string>()
    const visit = (file: string) => {
      if (seen.has(file)) return
      seen.add(file)
      const text = readFileSync(file, "utf8")
      for (const [, spec] of text.matchAll(/^(?:import|export)\s[^'"]*?from\s+"([^"]+)"/gm)) {
        if (spec!.startsWith(".")) visit(join(dirname(file), spec!.replace(/\.js$/, ".ts")))
        else packages.add(spec!)
      }
      for (const [, spec] of text.matchAll(/createRequire\([^)]*\)\("([^"]+)"\)/g)) packages.add(spec!)
    }
    visit(fileURLToPath(new URL(entry, import.meta.url)))
    return packages
  }

  it("@vigil/store needs no database driver; each driver is in its own entry", () => {
    const core = packagesReached("../src/index.ts")
    assert.include([...core], "@effect/sql")
    assert.notInclude([...core], "better-sqlite3")
    assert.notInclude([...core], "@effect/sql-pg")
    assert.include([...packagesReached("../src/Sqlite.ts")], "better-sqlite3")
    assert.notInclude([...packagesReached("../src/Sqlite.ts")], "@effect/sql-pg")
    assert.notInclude([...packagesReached("../src/Postgres.ts")], "better-sqlite3")
    const manifest = JSON.parse(readFileSync(fileURLToPath(new URL("../package.json", import.meta.url)), "utf8")) as {
      readonly exports: Record<string, unknown>
      readonly dependencies?: Record<string, string>
      readonly peerDependenciesMeta?: Record<string, { readonly optional?: boolean }>
    }
    assert.includeMembers(Object.keys(manifest.exports), [".", "./sqlite", "./pg"])
    for (const driver of ["better-sqlite3", "@effect/sql-pg"]) {
      assert.notProperty(manifest.dependencies ?? {}, driver, `${driver} is not a dependency`)
      assert.isTrue(manifest.peerDependenciesMeta?.[driver]?.optional === true, `${driver} is an optional peer`)
    }
  })
})
