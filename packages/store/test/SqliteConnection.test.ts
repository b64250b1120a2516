import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { SqliteAutocommit } from "@vigil/store"
import { SqliteConnection } from "@vigil/store/sqlite"
import { Context, Deferred, Effect, Exit, Fiber, Layer, String } from "effect"
import { GroupCommit } from "../src/GroupCommit.js"
import { tempDbFile } from "./fixtures.js"

/** vigil's client on a fresh file with one table, and a second client on the same file (a reader beside it). */
const withClient = <A, E>(
  body: (handles: {
    readonly sql: SqlClient.SqlClient
    readonly autocommit: SqliteAutocommit["Type"]
    readonly other: SqlClient.SqlClient
  }) => Effect.Effect<A, E, GroupCommit>,
  options: Partial<SqliteConnection.SqliteClientOptions> = {}
) =>
  Effect.gen(function*() {
    const filename = yield* tempDbFile
    const client = yield* Layer.build(SqliteConnection.layer({ filename, ...options }))
    const sql = Context.get(client, SqlClient.SqlClient)
    yield* sql`CREATE TABLE notes (id INTEGER PRIMARY KEY, note_text TEXT NOT NULL)`
    const other = Context.get(yield* Layer.build(SqliteConnection.layer({ filename })), SqlClient.SqlClient)
    return yield* body({ sql, autocommit: Context.get(client, SqliteAutocommit), other }).pipe(
      Effect.provide(GroupCommit.Default.pipe(Layer.provide(Layer.succeedContext(client))))
    )
  }).pipe(Effect.scoped, Effect.orDie)

/**
 * A transaction opened in a fiber of its own, with a row written in it, held open until
 * `release` is done; then it fails, and is rolled back.
 */
const openTransaction = (sql: SqlClient.SqlClient) =>
  Effect.gen(function*() {
    const opened = yield* Deferred.make<void>()
    const release = yield* Deferred.make<void>()
    const holder = yield* Effect.fork(sql.withTransaction(
      sql`INSERT INTO notes (id, note_text) VALUES (1, 'in the transaction')`.pipe(
        Effect.zipRight(Deferred.succeed(opened, undefined)),
        Effect.zipRight(Deferred.await(release)),
        Effect.zipRight(Effect.fail("rolled back"))
      )
    ))
    yield* Deferred.await(opened)
    return { holder, release }
  })

const notes = (sql: SqlClient.SqlClient) => Effect.map(sql<{ id: number }>`SELECT id FROM notes ORDER BY id`, (rows) => rows.map((row) => row.id))

describe("vigil's SQLite client", () => {
  it.effect("a lone write runs at once, committed: a second connection on the file reads it", () =>
    withClient(({ autocommit, other }) =>
      Effect.gen(function*() {
        const exit = autocommit.run("INSERT INTO notes (id, note_text) VALUES (?, ?) RETURNING id", [1, "one"])
        assert.deepStrictEqual(exit, Exit.succeed([{ id: 1 }]))
        assert.deepStrictEqual(autocommit.run("INSERT INTO notes (id, note_text) VALUES (?, ?)", [2, "two"]), Exit.succeed([]))
        assert.deepStrictEqual(yield* notes(other), [1, 2])
      })
    ))

  it.effect("a write the database refuses comes back as an SqlError, and the connection goes on", () =>
    withClient(({ autocommit }) =>
      Effect.gen(function*() {
        autocommit.run("INSERT INTO notes (id, note_text) VALUES (?, ?)", [1, "one"])
        const duplicate = autocommit.run("INSERT INTO notes (id, note_text) VALUES (?, ?)", [1, "again"])
        assert.isTrue(duplicate !== undefined && Exit.isFailure(duplicate))
        const error = Exit.isFailure(duplicate!) ? duplicate.cause : undefined
        assert.isTrue(error !== undefined && error._tag === "Fail" && error.error instanceof SqlError)
        const bad = autocommit.run("INSERT INTO nowhere VALUES (1)", [])
        assert.isTrue(bad !== undefined && Exit.isFailure(bad))
        assert.deepStrictEqual(autocommit.run("INSERT INTO notes (id, note_text) VALUES (?, ?)", [2, "two"]), Exit.succeed([]))
      })
    ))

  it.effect("while a transaction is open on the connection, the lane runs nothing and says so", () =>
    withClient(({ autocommit, other, sql }) =>
      Effect.gen(function*() {
        const { holder, release } = yield* openTransaction(sql)
        assert.isUndefined(autocommit.run("INSERT INTO notes (id, note_text) VALUES (?, ?)", [2, "two"]))
        yield* Deferred.succeed(release, undefined)
        assert.deepStrictEqual(yield* Fiber.await(holder), Exit.fail("rolled back"))
        assert.deepStrictEqual(yield* notes(other), [], "the lane wrote nothing, the transaction rolled back")
        assert.deepStrictEqual(autocommit.run("INSERT INTO notes (id, note_text) VALUES (?, ?)", [2, "two"]), Exit.succeed([]))
      })
    ))

  // Without the lane's check the write would run at once inside the other fiber's transaction,
  // be acknowledged, and vanish with its rollback.
  it.effect("a store write made while another fiber's transaction is open waits for it, and survives its rollback", () =>
    withClient(({ other, sql }) =>
      Effect.gen(function*() {
        const commits = yield* GroupCommit
        const { holder, release } = yield* openTransaction(sql)
        const raw = sql.withoutTransforms()
        const write = yield* Effect.fork(commits.run(raw`INSERT INTO notes (id, note_text) VALUES (2, 'acknowledged')`))
        yield* Effect.yieldNow()
        yield* Effect.yieldNow()
        assert.isNull(write.unsafePoll(), "the write waits behind the open transaction")
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.await(holder)
        assert.isTrue(Exit.isSuccess(yield* Fiber.await(write)))
        assert.deepStrictEqual(yield* notes(other), [2])
      })
    ))

  it.effect("a store write with no company goes on the lane, not through the client", () =>
    withClient(({ autocommit, other, sql }) =>
      Effect.gen(function*() {
        const ran: Array<string> = []
        const counting = SqliteAutocommit.of({ run: (text, params) => (ran.push(text), autocommit.run(text, params)) })
        const context = Context.make(SqlClient.SqlClient, sql).pipe(Context.add(SqliteAutocommit, counting))
        const raw = sql.withoutTransforms()
        yield* Effect.flatMap(GroupCommit, (commits) => commits.run(raw`INSERT INTO notes (id, note_text) VALUES (1, 'alone')`)).pipe(
          Effect.provide(GroupCommit.Default.pipe(Layer.provide(Layer.succeedContext(context))))
        )
        assert.deepStrictEqual(ran, ["INSERT INTO notes (id, note_text) VALUES (1, 'alone')"])
        assert.deepStrictEqual(yield* notes(other), [1])
      })
    ))

  it.effect("the client's own statements: name transforms, transactions, values, safe integers", () =>
    withClient(
      ({ sql }) =>
        Effect.gen(function*() {
          yield* sql`INSERT INTO notes ${sql.insert({ id: 1, noteText: "one" })}`
          assert.deepStrictEqual(yield* sql`SELECT id, note_text FROM notes`, [{ id: 1, noteText: "one" }])
          const exit = yield* Effect.exit(sql.withTransaction(Effect.zipRight(sql`INSERT INTO notes ${sql.insert({ id: 2, noteText: "two" })}`, Effect.fail("no"))))
          assert.deepStrictEqual(exit, Exit.fail("no"))
          assert.deepStrictEqual(yield* sql`SELECT id FROM notes`.values, [[1]])
          const big = yield* sql<{ n: bigint }>`SELECT 9007199254740993 AS n`.pipe(Effect.provideService(SqlClient.SafeIntegers, true))
          assert.strictEqual(big[0]!.n, 9007199254740993n)
          const same = sql<{ n: bigint | number }>`SELECT 2 AS n WHERE ${"x"} = 'x'`
          assert.strictEqual((yield* same.pipe(Effect.provideService(SqlClient.SafeIntegers, true)))[0]!.n, 2n)
          assert.strictEqual((yield* same)[0]!.n, 2, "safe integers are per run, not left on the cached statement")
        }),
      { transformQueryNames: String.camelToSnake, transformResultNames: String.snakeToCamel }
    ))

  it.effect("more distinct statements than the prepare cache holds all run, old ones prepared again", () =>
    withClient(
      ({ sql }) =>
        Effect.gen(function*() {
          for (let round = 0; round < 2; round++) {
            for (let i = 1; i <= 5; i++) assert.deepStrictEqual(yield* sql.unsafe(`SELECT ${i} AS n`), [{ n: i }])
          }
        }),
      { prepareCacheSize: 2 }
    ))
})
