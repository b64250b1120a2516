import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, ManagedRuntime, String } from "effect"

/**
 * The SQLite file as the server left it, read directly (better-sqlite3 through
 * `@effect/sql-sqlite-node`), beside the running server: WAL lets a reader in while it writes.
 * Only SELECTs: the tests observe, they never repair. Rows are what Migrations.ts creates.
 */

export interface PartRow {
  readonly id: string
  readonly sessionId: string
  readonly kind: string
  readonly tool: string
  readonly input: string
  readonly callId: string | null
  readonly status: string
  readonly output: string | null
  readonly error: string | null
  readonly ownerId: string
  readonly childSessionId: string | null
  readonly pid: number | null
  readonly procStart: string | null
  readonly endedAt: number | null
}

export interface SessionRow {
  readonly id: string
  readonly parentId: string | null
  readonly status: string
  readonly cancelReason: string | null
  readonly ownerId: string
}

export interface EventRow {
  readonly id: number
  readonly type: string
  readonly at: number
  readonly instanceId: string | null
  readonly sessionId: string | null
  readonly partId: string | null
  readonly reason: string | null
  readonly data: string | null
}

export interface InstanceRow {
  readonly id: string
  readonly pid: number
  readonly stoppedAt: number | null
}

/** An error reason as stored (JSON of a tagged class), or undefined. */
export const reasonOf = (json: string | null): { readonly _tag: string; readonly [key: string]: unknown } | undefined =>
  json === null ? undefined : (JSON.parse(json) as { _tag: string })

export const openDatabase = (filename: string) => {
  const runtime = ManagedRuntime.make(
    SqliteClient.layer({ filename, transformResultNames: String.snakeToCamel, transformQueryNames: String.camelToSnake })
  )
  const run = <A>(query: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>): Promise<A> =>
    runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, query))
  return {
    parts: () =>
      run((sql) =>
        sql<PartRow>`SELECT id, session_id, kind, tool, input, call_id, status, output, error, owner_id,
          child_session_id, pid, proc_start, ended_at FROM vigil_parts ORDER BY id`
      ),
    sessions: () => run((sql) => sql<SessionRow>`SELECT id, parent_id, status, cancel_reason, owner_id FROM vigil_sessions ORDER BY id`),
    events: (types: ReadonlyArray<string>) =>
      run((sql) =>
        sql<EventRow>`SELECT id, type, at, instance_id, session_id, part_id, reason, data FROM vigil_events
          WHERE type IN ${sql.in(types)} ORDER BY id`
      ),
    instances: () => run((sql) => sql<InstanceRow>`SELECT id, pid, stopped_at FROM vigil_instances`),
    /** Row counts of the tables a request may write. */
    counts: () =>
      run((sql) =>
        sql<{ sessions: number; parts: number }>`SELECT (SELECT COUNT(*) FROM vigil_sessions) AS sessions,
          (SELECT COUNT(*) FROM vigil_parts) AS parts`.pipe(Effect.map((rows) => rows[0]!))
      ),
    ids: () =>
      run((sql) =>
        Effect.all({
          sessions: sql<{ id: string; parentId: string | null }>`SELECT id, parent_id FROM vigil_sessions`,
          parts: sql<{ id: string; sessionId: string; kind: string; callId: string | null }>`SELECT id, session_id, kind, call_id FROM vigil_parts`
        })
      ),
    close: () => runtime.dispose()
  }
}

export type Database = ReturnType<typeof openDatabase>
