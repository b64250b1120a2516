import type { InstanceId, SessionId } from "@vigil/domain"
import { makeInstanceId, makePartId, makeSessionId, Part, Session } from "@vigil/domain"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import type { Store } from "@vigil/store"
import { SqlitePragmas, SqlStoreLive } from "@vigil/store"
import { PgStoreLive } from "@vigil/store/pg"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import type { Scope } from "effect"
import { Effect, Layer, Redacted, String } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe } from "vitest"
import { freshPgSchema, pgSkipped } from "@vigil/store/test-database"

/** A fresh directory under the OS temp dir, removed (with the database and its WAL files) on scope close. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "vigil-store-test-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

export const tempDbFile = Effect.map(tempDir, (dir) => join(dir, "vigil.db"))

/** A database the repository suites run against. */
export interface Backend {
  /** The dialect, and whose client the store runs on (vigil's own, or one an app built). */
  readonly name: "sqlite" | "postgres"
  readonly client: "vigil" | "app, no transforms" | "app, camelCase transforms"
  /** Skipped (PostgreSQL without `VIGIL_TEST_DATABASE_URL`, outside CI). */
  readonly skip: boolean
  /**
   * A fresh, empty database for the scope (a temp SQLite file, or a PostgreSQL schema dropped
   * after), as a function that opens the store on it: call it twice for two boots of one database.
   */
  readonly freshDatabase: Effect.Effect<() => Layer.Layer<Store>, never, Scope.Scope>
  /**
   * Runs `body` against the real store on a fresh database. The store's scope closes (the
   * database is closed) before the database is removed.
   */
  readonly withStore: <A, E, R>(body: Effect.Effect<A, E, R>) => Effect.Effect<A, E, Exclude<R, Store | Scope.Scope>>
}

const backend = (
  name: Backend["name"],
  skip: boolean,
  freshDatabase: Backend["freshDatabase"],
  client: Backend["client"] = "vigil"
): Backend => ({
  name,
  client,
  skip,
  freshDatabase,
  withStore: <A, E, R>(body: Effect.Effect<A, E, R>) =>
    Effect.scoped(Effect.flatMap(freshDatabase, (open) => Effect.provide(body, open()))) as Effect.Effect<
      A,
      E,
      Exclude<R, Store | Scope.Scope>
    >
})

export const sqlite: Backend = backend(
  "sqlite",
  false,
  Effect.map(tempDbFile, (file) => () => Layer.orDie(SqliteStoreLive(file)))
)

export const postgres: Backend = backend(
  "postgres",
  pgSkipped,
  Effect.map(freshPgSchema, (url) => () => Layer.orDie(PgStoreLive(url)))
)

const camelCase = { transformQueryNames: String.camelToSnake, transformResultNames: String.snakeToCamel } as const

/**
 * The store on a client an app built itself (`SqlStoreLive` on the SqlClient in context), without
 * name transforms or with camelCase ones: the store maps its rows itself, so both behave as vigil's own.
 * The SQLite ones have vigil's pragmas applied by the app (`SqlitePragmas.layer`).
 */
export const appSqlite = (transforms: boolean): Backend =>
  backend(
    "sqlite",
    false,
    Effect.map(tempDbFile, (filename) => () =>
      Layer.orDie(
        SqlStoreLive().pipe(
          Layer.provideMerge(SqlitePragmas.layer),
          Layer.provideMerge(SqliteClient.layer({ filename, ...(transforms ? camelCase : {}) }))
        )
      )),
    transforms ? "app, camelCase transforms" : "app, no transforms"
  )

export const appPostgres = (transforms: boolean): Backend =>
  backend(
    "postgres",
    pgSkipped,
    Effect.map(freshPgSchema, (url) => () =>
      Layer.orDie(
        SqlStoreLive().pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(url), ...(transforms ? camelCase : {}) })))
      )),
    transforms ? "app, camelCase transforms" : "app, no transforms"
  )

export const backends: ReadonlyArray<Backend> = [sqlite, postgres, appSqlite(false), appSqlite(true), appPostgres(false)]

/** One suite per backend: `describeBackends("PartRepo", ({ withStore }) => { … })`. */
export const describeBackends = (name: string, suite: (backend: Backend) => void) => {
  for (const each of backends) {
    describe.skipIf(each.skip)(`${name} (${each.name}${each.client === "vigil" ? "" : `, ${each.client}`})`, () => suite(each))
  }
}

export const ownerA: InstanceId = makeInstanceId()
export const ownerB: InstanceId = makeInstanceId()

export const makeSession = (fields: Partial<ConstructorParameters<typeof Session>[0]> = {}): Session =>
  new Session({
    id: makeSessionId(),
    parentId: null,
    parentPartId: null,
    title: "a session",
    status: "busy",
    cancelReason: null,
    lastActivityAt: 1_000,
    ownerId: ownerA,
    createdAt: 1_000,
    ...fields
  })

export const makePart = (sessionId: SessionId, fields: Partial<ConstructorParameters<typeof Part>[0]> = {}): Part =>
  new Part({
    id: makePartId(),
    sessionId,
    kind: "tool",
    tool: "bash",
    input: { command: "echo hi" },
    callId: null,
    status: "pending",
    output: null,
    error: null,
    createdAt: 1_000,
    startedAt: null,
    endedAt: null,
    deadlineAt: null,
    ownerId: ownerA,
    childSessionId: null,
    pid: null,
    pgid: null,
    procStart: null,
    ...fields
  })
