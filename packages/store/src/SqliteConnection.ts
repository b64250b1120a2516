import * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { createRequire } from "node:module"
import { SqliteAutocommit } from "./SqliteAutocommit.js"

/**
 * vigil's SQLite client: `@effect/sql`'s own client (`SqlClient.make`: its statements, spans,
 * transactions and name transforms) on one better-sqlite3 connection, made as
 * `@effect/sql-sqlite-node` makes it (WAL, prepared statements cached by text, one connection
 * behind a semaphore that a transaction holds from `BEGIN` to its end), with one thing that
 * client cannot give: `SqliteAutocommit`, a write run on the connection at once when no
 * transaction is open on it. That client keeps its connection private, so a caller cannot tell
 * whether a statement would land inside another fiber's transaction; through the client, every
 * statement pays for a scope and a turn at the semaphore, about 90 of the 99 Effect steps a lone
 * write took (figure 3 of `pnpm bench`).
 */

/** The part of better-sqlite3 used here (it ships no types; none of them reach the `.d.ts`). */
interface Driver {
  readonly prepare: (sql: string) => DriverStatement
  readonly pragma: (source: string) => unknown
  readonly close: () => void
  readonly inTransaction: boolean
}

interface DriverStatement {
  readonly reader: boolean
  readonly run: (...params: ReadonlyArray<unknown>) => unknown
  readonly all: (...params: ReadonlyArray<unknown>) => Array<object>
  readonly raw: (on: boolean) => DriverStatement
  readonly safeIntegers: (on: boolean) => DriverStatement
}

type DriverConstructor = new (filename: string, options: { readonly readonly: boolean }) => Driver

// Loaded on first use, so that importing this module (the CLI's help, say) does not load the
// native addon.
let driver: DriverConstructor | undefined
const loadDriver = (): DriverConstructor => driver ??= createRequire(import.meta.url)("better-sqlite3") as DriverConstructor

export interface SqliteClientOptions {
  readonly filename: string
  readonly readonly?: boolean | undefined
  /** Statements kept prepared, by text, least recently used out first (default 200, as `@effect/sql-sqlite-node`). */
  readonly prepareCacheSize?: number | undefined
  readonly transformQueryNames?: ((name: string) => string) | undefined
  readonly transformResultNames?: ((name: string) => string) | undefined
}

const failed = (cause: unknown, message = "Failed to execute statement") => new SqlError({ cause, message })

/** The client and its autocommit lane, on a connection closed with `scope`. */
export const make = (options: SqliteClientOptions) =>
  Effect.gen(function*() {
    const Sqlite = loadDriver()
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new Sqlite(options.filename, { readonly: options.readonly ?? false }),
        catch: (cause) => failed(cause, `Failed to open the SQLite database`)
      }),
      (db) => Effect.sync(() => db.close())
    )
    if (options.readonly !== true) db.pragma("journal_mode = WAL")

    // Least recently used out first: a Map iterates in insertion order, and a hit moves to the end.
    const capacity = options.prepareCacheSize ?? 200
    const prepared = new Map<string, DriverStatement>()
    const prepare = (sql: string): DriverStatement => {
      const known = prepared.get(sql)
      if (known !== undefined) {
        prepared.delete(sql)
        prepared.set(sql, known)
        return known
      }
      const statement = db.prepare(sql)
      prepared.set(sql, statement)
      if (prepared.size > capacity) prepared.delete(prepared.keys().next().value!)
      return statement
    }

    /** Rows for a statement that returns them, else `[]` (or the driver's run info, when raw). */
    const runNow = (statement: DriverStatement, params: ReadonlyArray<unknown>, safeIntegers: boolean, raw = false): ReadonlyArray<object> => {
      statement.safeIntegers(safeIntegers)
      if (statement.reader) return statement.all(...params)
      const info = statement.run(...params)
      return raw ? info as ReadonlyArray<object> : []
    }

    /** A statement run now, how it ended: what both the client's connection and the lane run. */
    const runExit = (
      sql: string,
      params: ReadonlyArray<unknown>,
      prepareIt: (sql: string) => DriverStatement,
      safeIntegers: boolean,
      raw = false
    ): Exit.Exit<ReadonlyArray<object>, SqlError> => {
      try {
        return Exit.succeed(runNow(prepareIt(sql), params, safeIntegers, raw))
      } catch (cause) {
        return Exit.fail(failed(cause))
      }
    }

    const run = (sql: string, params: ReadonlyArray<unknown>, prepareIt: (sql: string) => DriverStatement, raw = false) =>
      Effect.withFiberRuntime<ReadonlyArray<object>, SqlError>((fiber) =>
        runExit(sql, params, prepareIt, Context.get(fiber.currentContext, Client.SafeIntegers), raw)
      )

    const connection: Connection = {
      execute: (sql, params, transformRows) => {
        const rows = run(sql, params, prepare)
        return transformRows ? Effect.map(rows, transformRows) : rows
      },
      executeRaw: (sql, params) => run(sql, params, prepare, true),
      executeUnprepared: (sql, params, transformRows) => {
        const rows = run(sql, params ?? [], (sql) => db.prepare(sql))
        return transformRows ? Effect.map(rows, transformRows) : rows
      },
      executeValues: (sql, params) =>
        Effect.try({
          try: () => {
            const statement = prepare(sql)
            if (!statement.reader) {
              statement.run(...params)
              return []
            }
            statement.raw(true)
            try {
              return statement.all(...params) as ReadonlyArray<ReadonlyArray<unknown>>
            } finally {
              statement.raw(false)
            }
          },
          catch: (cause) => failed(cause)
        }),
      executeStream: () => Effect.dieMessage("executeStream not implemented")
    }

    // As `@effect/sql-sqlite-node`: a statement waits for no transaction to hold the connection;
    // a transaction (or `reserve`) holds it until its scope closes.
    const semaphore = yield* Effect.makeSemaphore(1)
    const acquirer = semaphore.withPermits(1)(Effect.succeed(connection))
    const transactionAcquirer = Effect.uninterruptibleMask((restore) =>
      Effect.as(
        Effect.zipRight(
          restore(semaphore.take(1)),
          Effect.tap(Effect.scope, (scope) => Scope.addFinalizer(scope, semaphore.release(1)))
        ),
        connection
      )
    )

    const client = yield* Client.make({
      acquirer,
      transactionAcquirer,
      compiler: Statement.makeCompilerSqlite(options.transformQueryNames),
      spanAttributes: [["db.system.name", "sqlite"]],
      transformRows: options.transformResultNames === undefined
        ? undefined
        : Statement.defaultTransforms(options.transformResultNames).array
    })

    const autocommit = SqliteAutocommit.of({
      run: (sql, params) => (db.inTransaction ? undefined : runExit(sql, params, prepare, false))
    })
    return { client, autocommit } as const
  })

/** The client as `SqlClient`, with `SqliteAutocommit`, its connection closed with the layer. */
export const layer = (options: SqliteClientOptions): Layer.Layer<Client.SqlClient | SqliteAutocommit, SqlError> =>
  Layer.scopedContext(
    Effect.map(make(options), ({ autocommit, client }) =>
      Context.make(Client.SqlClient, client).pipe(Context.add(SqliteAutocommit, autocommit)))
  ).pipe(Layer.provide(Reactivity.layer))
