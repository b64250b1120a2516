import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const chainSessionId = (n: number) => `ses_chain${String(n).padStart(7, "0")}`
export const chainPartId = (n: number) => `prt_chain${String(n).padStart(7, "0")}`

/**
 * A chain of `depth` sessions linked by parentId, as a model that always calls `task` leaves it:
 * every session busy with a running `task` part whose child is the next, and the leaf waiting on
 * an `ask`. Inserted inside SQLite in two statements (a recursive sequence), so 100,000 levels
 * take a second, not the minutes the runtime would need to build them.
 */
export const seedChain = (options: { readonly depth: number; readonly ownerId: string; readonly now: number }) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { depth, now, ownerId } = options
    const last = depth - 1
    yield* sql.unsafe(
      `WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < ${last})
       INSERT INTO vigil_sessions (id, parent_id, parent_part_id, title, status, cancel_reason, last_activity_at, owner_id, created_at)
       SELECT printf('ses_chain%07d', n),
         CASE WHEN n = 0 THEN NULL ELSE printf('ses_chain%07d', n - 1) END,
         CASE WHEN n = 0 THEN NULL ELSE printf('prt_chain%07d', n - 1) END,
         'level ' || n, CASE WHEN n = ${last} THEN 'waiting' ELSE 'busy' END, NULL, ${now}, ?, ${now}
       FROM seq`,
      [ownerId]
    )
    yield* sql.unsafe(
      `WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < ${last})
       INSERT INTO vigil_parts (id, session_id, kind, tool, input, call_id, status, output, error, created_at, started_at,
         ended_at, deadline_at, owner_id, child_session_id, pid, pgid, proc_start)
       SELECT printf('prt_chain%07d', n), printf('ses_chain%07d', n), 'tool',
         CASE WHEN n = ${last} THEN 'ask' ELSE 'task' END, '{}', NULL, 'running', NULL, NULL, ${now}, ${now}, NULL,
         ${now + 3_600_000}, ?, CASE WHEN n = ${last} THEN NULL ELSE printf('ses_chain%07d', n + 1) END, NULL, NULL, NULL
       FROM seq`,
      [ownerId]
    )
  })
