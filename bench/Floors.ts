import { makePartId, makeSessionId } from "../packages/domain/src/index.js"
import type { Database } from "./Database.js"

/**
 * The bare ways of the work the figures measure, on better-sqlite3 directly: what a figure is set
 * against in the same run (its floor).
 */

/**
 * The watchdog scan's reads, bare: who owns live parts and sessions, then this instance's stuck
 * candidates (its running tasks and its leaves past their deadline plus twice the abort grace;
 * none here, so the active sessions and parts a task's subtree needs are not read either).
 * `rounds` timings in ms, after three of warm-up.
 */
export const bareScanTimings = (db: Database, self: string, options: { readonly running: number; readonly rounds: number }): Array<number> => {
  const partOwners = db.prepare(`SELECT DISTINCT owner_id FROM vigil_parts WHERE status IN ('pending', 'running')`)
  const sessionOwners = db.prepare(`SELECT DISTINCT owner_id FROM vigil_sessions WHERE status IN ('busy', 'waiting')`)
  const mine = db.prepare(`SELECT id FROM vigil_parts WHERE owner_id = ? AND status IN ('pending', 'running')`)
  const candidates = db.prepare(
    `SELECT * FROM vigil_parts WHERE owner_id = ? AND status IN ('pending', 'running') AND status = 'running'
     AND kind IN ('tool', 'model') AND started_at IS NOT NULL AND (tool = 'task' OR deadline_at <= ?)`
  )
  if (mine.all(self).length !== options.running) throw new Error("the bare scan does not see this instance's running parts")
  const timings: Array<number> = []
  for (let i = 0; i < options.rounds + 3; i++) {
    const started = performance.now()
    partOwners.all()
    sessionOwners.all()
    if (candidates.all(self, Date.now() - 2_000).length !== 0) throw new Error("the bare scan found a stuck candidate")
    if (i >= 3) timings.push(performance.now() - started)
  }
  return timings
}

/** The owner of the bare rows (as an instance id would be). */
export const bareOwner = "ins_floor"

/**
 * A tool part's writes as PartRepo writes its columns, as SQL text with `?` parameters, for the
 * floors to run bare (better-sqlite3) or through a client (`sql.unsafe`), the same statements:
 * - `insertRunning`: id, session id, created and started at, deadline;
 * - `complete`: ended at, id (completed with an empty output);
 * - `fail`: the error, ended at, id.
 */
export const barePartWrites = (tool: string) => ({
  insertRunning: `INSERT INTO vigil_parts (id, session_id, kind, tool, input, call_id, status, output, error, created_at, started_at,
       ended_at, deadline_at, owner_id, child_session_id, pid, pgid, proc_start)
     VALUES (?, ?, 'tool', '${tool}', '{}', NULL, 'running', NULL, NULL, ?, ?, NULL, ?, '${bareOwner}', NULL, NULL, NULL, NULL)`,
  complete: `UPDATE vigil_parts SET status = 'completed', output = '', ended_at = ? WHERE id = ? AND status = 'running' AND owner_id = '${bareOwner}'`,
  fail: `UPDATE vigil_parts SET status = 'error', error = ?, ended_at = ? WHERE id = ? AND status = 'running' AND owner_id = '${bareOwner}'`
})

/**
 * A busy session of `bareOwner` and the writes of a `tool` part bare (`barePartWrites`): insert
 * it running (deadline ten minutes away), then complete it or end it with an error.
 */
export const bareParts = (db: Database, tool = "sleep60") => {
  const now = Date.now()
  const sessionId = makeSessionId()
  db.prepare(
    `INSERT INTO vigil_sessions (id, parent_id, parent_part_id, title, status, cancel_reason, last_activity_at, owner_id, created_at)
     VALUES (?, NULL, NULL, 'floor', 'busy', NULL, ?, '${bareOwner}', ?)`
  ).run(sessionId, now, now)
  const writes = barePartWrites(tool)
  const insert = db.prepare(writes.insertRunning)
  const complete = db.prepare(writes.complete)
  const fail = db.prepare(writes.fail)
  return {
    insertRunning: (): string => {
      const id = makePartId()
      const at = Date.now()
      insert.run(id, sessionId, at, at, at + 600_000)
      return id
    },
    complete: (id: string) => complete.run(Date.now(), id),
    end: (id: string, reason: string) => fail.run(reason, Date.now(), id)
  }
}
