import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { makeInstanceId, makeSessionId, Session } from "@vigil/domain"
import { SessionRepo } from "@vigil/store"
import { freshPgSchema, pgSkipped } from "@vigil/store/test-database"
import { Cause, Effect, Exit, Layer, Option } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { StoreLive } from "../src/Database.js"

const tempDbFile = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "vigil-server-db-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => join(dir, "vigil.db")))

const makeSession = () =>
  new Session({
    id: makeSessionId(),
    parentId: null,
    parentPartId: null,
    title: "a session",
    status: "busy",
    cancelReason: null,
    lastActivityAt: 1_000,
    ownerId: makeInstanceId(),
    createdAt: 1_000
  })

describe("StoreLive", () => {
  it.effect("without a URL (or with an empty one) it is the SQLite file", () =>
    Effect.scoped(Effect.gen(function*() {
      const file = yield* tempDbFile
      for (const databaseUrl of [undefined, "", "  "]) {
        const dialect = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql.onDialectOrElse({ sqlite: () => Effect.succeed("sqlite"), orElse: () => Effect.succeed("other") })).pipe(
            Effect.provide(Layer.orDie(StoreLive({ databaseUrl, sqliteFile: file })))
          )
        assert.strictEqual(dialect, "sqlite")
      }
    })))

  it.effect("any other URL stops start-up with one line that names the key, not the URL", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.provide(Effect.void, StoreLive({ databaseUrl: "mysql://root:secret@db/vigil", sqliteFile: "unused.db" }))
      )
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
      assert.deepStrictEqual(
        Option.map(error, (e) => ({ _tag: e._tag, message: e.message })),
        Option.some({ _tag: "StoreUrlError", message: "VIGIL_DATABASE_URL must be a postgres:// or postgresql:// URL (got mysql:)" })
      )
      assert.notInclude(JSON.stringify(Option.getOrThrow(error)), "secret")
    }))
})

describe.skipIf(pgSkipped)("StoreLive (postgres)", () => {
  it.effect("a postgres:// URL is PostgreSQL, and the repositories work on it", () =>
    Effect.scoped(Effect.gen(function*() {
      const url = yield* freshPgSchema
      const session = makeSession()
      const [dialect, back] = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* (yield* SessionRepo).insert(session)
        return [
          yield* sql.onDialectOrElse({ pg: () => Effect.succeed("pg"), orElse: () => Effect.succeed("other") }),
          yield* (yield* SessionRepo).get(session.id)
        ] as const
      }).pipe(Effect.provide(Layer.orDie(StoreLive({ databaseUrl: url, sqliteFile: "never-created.db" }))))
      assert.strictEqual(dialect, "pg")
      assert.deepStrictEqual(back, Option.some(session))
    })))
})
