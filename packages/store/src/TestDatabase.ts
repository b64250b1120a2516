import { SqlClient } from "@effect/sql"
import type { Scope } from "effect"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { PgLive } from "./Postgres.js"

/**
 * The PostgreSQL test database, shared by every package's suites (`@vigil/store/test-database`;
 * not part of the store's main entry). The suites run against `VIGIL_TEST_DATABASE_URL`, which
 * `scripts/with-postgres.sh` sets for a throwaway server (`pnpm test` starts one). Without it they
 * are skipped on a developer's machine, but in CI (`CI=true`) they run and fail: a CI run that
 * silently skipped PostgreSQL would prove nothing.
 */
export const testDatabaseUrl: string | undefined = process.env["VIGIL_TEST_DATABASE_URL"] || undefined
const inCi = ["true", "1"].includes((process.env["CI"] ?? "").toLowerCase())
export const pgSkipped: boolean = testDatabaseUrl === undefined && !inCi

const missingUrl = "VIGIL_TEST_DATABASE_URL is not set, and CI=true: the PostgreSQL suites must run in CI " +
  "(pnpm test starts a server with scripts/with-postgres.sh)"

/** The test server's URL with its sessions' search_path set to `schema`. */
export const urlWithSchema = (url: string, schema: string): string => {
  const parsed = new URL(url)
  parsed.searchParams.set("options", `-c search_path=${schema}`)
  return parsed.toString()
}

/** Runs one statement on the test database (outside any test schema). */
export const adminQuery = (statement: string): Effect.Effect<ReadonlyArray<Record<string, unknown>>> =>
  testDatabaseUrl === undefined
    ? Effect.dieMessage(missingUrl)
    : Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<Record<string, unknown>>(statement)).pipe(
      Effect.provide(PgLive(testDatabaseUrl)),
      Effect.orDie
    )

/**
 * A fresh, empty schema on the test database for the scope, dropped (with everything in it) when
 * the scope closes; returns a URL whose connections see only that schema: for in-process stores
 * and for real server processes alike, as they would a database of their own.
 */
export const freshPgSchema: Effect.Effect<string, never, Scope.Scope> = Effect.gen(function*() {
  if (testDatabaseUrl === undefined) return yield* Effect.dieMessage(missingUrl)
  const schema = `vigil_test_${randomBytes(6).toString("hex")}`
  yield* Effect.acquireRelease(adminQuery(`CREATE SCHEMA ${schema}`), () => adminQuery(`DROP SCHEMA ${schema} CASCADE`))
  return urlWithSchema(testDatabaseUrl, schema)
})
