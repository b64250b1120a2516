import { realpathSync } from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

/**
 * better-sqlite3 used directly: for seeding a million rows fast and for the "bare SQLite" floors
 * the runtime is compared with. The driver is the one the store's SQLite client loads (the root
 * does not depend on it, and it ships no types), so only what the benchmark calls is typed here.
 */
export interface Statement {
  readonly run: (...params: ReadonlyArray<unknown>) => { readonly changes: number }
  readonly all: (...params: ReadonlyArray<unknown>) => Array<Record<string, unknown>>
  readonly get: (...params: ReadonlyArray<unknown>) => Record<string, unknown> | undefined
}

export interface Database {
  readonly prepare: (source: string) => Statement
  readonly exec: (source: string) => Database
  readonly pragma: (source: string) => unknown
  readonly transaction: <A>(body: () => A) => () => A
  readonly close: () => void
}

type DatabaseConstructor = new (filename: string) => Database

// Resolved from the store's folder, whose SQLite client loads it (pnpm keeps better-sqlite3 there, not in the root).
const driverFolder = realpathSync(fileURLToPath(new URL("../packages/store/package.json", import.meta.url)))
const BetterSqlite3 = createRequire(driverFolder)("better-sqlite3") as DatabaseConstructor

/** A connection with the store's own per-connection settings (the file is already in WAL mode). */
export const openDatabase = (filename: string): Database => {
  const db = new BetterSqlite3(filename)
  db.pragma("journal_mode = WAL")
  db.pragma("busy_timeout = 5000")
  db.pragma("foreign_keys = ON")
  db.pragma("synchronous = NORMAL")
  return db
}

/** `pg` used directly, for the "bare `pg`" floors of the PostgreSQL figures (typed as the benchmark calls it). */
export interface PgPool {
  readonly query: (
    text: string,
    values?: ReadonlyArray<unknown>
  ) => Promise<{ readonly rows: Array<Record<string, unknown>>; readonly rowCount: number | null }>
  readonly end: () => Promise<void>
}

type PgModule = { readonly Pool: new (options: { readonly connectionString: string; readonly max: number }) => PgPool }

/**
 * A pool of `connections` to `url`. `pg` is the one `@effect/sql-pg` loads, from its real folder
 * (the root does not depend on it); required when first used, so a run without PostgreSQL never
 * loads it.
 */
export const openPg = (url: string, connections: number): PgPool => {
  const folder = realpathSync(fileURLToPath(new URL("../packages/store/node_modules/@effect/sql-pg/package.json", import.meta.url)))
  const pg = createRequire(folder)("pg") as PgModule
  return new pg.Pool({ connectionString: url, max: connections })
}
