import { reservedRoom } from "../packages/store/src/PartRepo.js"
import { SqliteStoreLive } from "../packages/store/src/Sqlite.js"
import type { Database } from "./Database.js"
import { openDatabase } from "./Database.js"
import { Effect, Layer } from "./effect.js"

/** The shape of the large database the recovery and watchdog figures run on. */
export const history = {
  parts: 1_000_000,
  sessions: 100_000,
  /** 1% of the parts are `running` orphans: 10,000 of them. */
  orphanEvery: 100,
  deadInstances: 10,
  /** Busy sessions of the dead instances, holding the orphans (10 each). */
  busySessions: 1_000,
  stoppedInstances: 50,
  /** Dead instances ran on another host: their processes are recorded, never signalled from here. */
  deadHost: "crashed-host"
} as const

export const orphanCount = history.parts / history.orphanEvery

/**
 * Where the orphans sit among the parts. `recent`: the newest 10,000 (part ids sort by creation
 * time, and what a crash leaves running is what was started last), so they share a few hundred
 * pages. `scattered`: every 100th part, so each lies on a page of its own: the worst case for the
 * rescue's writes.
 */
export type OrphanLayout = "recent" | "scattered"

/** The part number of orphan `k` (0 ≤ k < orphanCount). */
export const orphanPart = (layout: OrphanLayout, k: number): number =>
  layout === "recent" ? history.parts - orphanCount + k : k * history.orphanEvery

export const partId = (n: number): string => `prt_bench${String(n).padStart(8, "0")}`
export const sessionId = (n: number): string => `ses_bench${String(n).padStart(7, "0")}`

/** An empty store with the real migrations applied, then closed. */
export const migrate = (file: string) => Effect.scoped(Layer.build(SqliteStoreLive(file))).pipe(Effect.asVoid)

/**
 * One million parts (99% completed, 1% `running` orphans of ten dead instances on another host,
 * with recorded processes and the room vigil's insert reserves in a live row), 100,000 sessions
 * (1,000 busy ones of the dead instances), 60 instance rows: generated inside SQLite in one
 * transaction, on the migrated schema and its indexes.
 */
export const seedHistory = (file: string, layout: OrphanLayout) =>
  Effect.gen(function*() {
    yield* migrate(file)
    const started = performance.now()
    yield* Effect.sync(() => {
      const db = openDatabase(file)
      try {
        db.pragma("cache_size = -262144")
        db.transaction(() => insertHistory(db, Date.now(), layout))()
        db.pragma("wal_checkpoint(TRUNCATE)")
      } finally {
        db.close()
      }
    })
    return { seedMs: performance.now() - started }
  })

const insertHistory = (db: Database, now: number, layout: OrphanLayout) => {
  const day = 86_400_000
  const old = now - 30 * day
  const instance = db.prepare(
    `INSERT INTO vigil_instances (id, pid, host, proc_start, started_at, heartbeat_at, lease_millis, stopped_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
  )
  for (let i = 0; i < history.stoppedInstances; i++) {
    instance.run(`ins_old_${i}`, 10_000 + i, "old-host", "100", old, old + day, 30_000, old + day)
  }
  // Crashed a day ago: never stopped, the heartbeat long expired.
  for (let i = 0; i < history.deadInstances; i++) {
    instance.run(`ins_dead_${i}`, 20_000 + i, history.deadHost, "200", now - 2 * day, now - day, 30_000, null)
  }
  // better-sqlite3 binds JS numbers as REAL: the integer shape of the data is spelled in the SQL.
  const { busySessions: busy, deadInstances: dead, orphanEvery: every, stoppedInstances: stopped } = history
  db.prepare(
    `WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < ${history.sessions - 1})
     INSERT INTO vigil_sessions (id, parent_id, parent_part_id, title, status, cancel_reason, last_activity_at, owner_id, created_at)
     SELECT printf('ses_bench%07d', n), NULL, NULL, 'session ' || n,
       CASE WHEN n < ${busy} THEN 'busy' ELSE 'idle' END,
       NULL,
       CASE WHEN n < ${busy} THEN ${now - day} ELSE ${old} + n END,
       CASE WHEN n < ${busy} THEN 'ins_dead_' || (n % ${dead}) ELSE 'ins_old_' || (n % ${stopped}) END,
       ${old} + n
     FROM seq`
  ).run()
  // Orphan k is in busy session k % 1000, owned by that session's dead owner.
  const orphanK = layout === "recent" ? `n - ${history.parts - orphanCount}` : `n / ${every}`
  const isOrphan = layout === "recent" ? `n >= ${history.parts - orphanCount}` : `n % ${every} = 0`
  db.prepare(
    `WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < ${history.parts - 1}),
     rows AS (SELECT n, ${isOrphan} AS orphan, (${orphanK}) AS k, (${orphanK}) % ${busy} AS busySession FROM seq)
     INSERT INTO vigil_parts (id, session_id, kind, tool, input, call_id, status, output, error, created_at, started_at,
       ended_at, deadline_at, owner_id, child_session_id, pid, pgid, proc_start, reserve)
     SELECT printf('prt_bench%08d', n),
       CASE WHEN orphan THEN printf('ses_bench%07d', busySession) ELSE printf('ses_bench%07d', n % ${history.sessions}) END,
       'tool', 'bash', '{"command":"echo hi"}', 'call_' || n,
       CASE WHEN orphan THEN 'running' ELSE 'completed' END,
       CASE WHEN orphan THEN NULL ELSE 'hi' || char(10) END,
       NULL,
       CASE WHEN orphan THEN ${now - day - 60_000} ELSE ${old} + n END,
       CASE WHEN orphan THEN ${now - day - 60_000} ELSE ${old} + n END,
       CASE WHEN orphan THEN NULL ELSE ${old} + n + 5 END,
       CASE WHEN orphan THEN ${now - day + 540_000} ELSE ${old} + n + 600000 END,
       CASE WHEN orphan THEN 'ins_dead_' || (busySession % ${dead}) ELSE 'ins_old_' || (n % ${stopped}) END,
       NULL,
       CASE WHEN orphan THEN 3000000 + k ELSE NULL END,
       CASE WHEN orphan THEN 3000000 + k ELSE NULL END,
       CASE WHEN orphan THEN '12345' ELSE NULL END,
       CASE WHEN orphan THEN ? ELSE NULL END
     FROM rows`
  ).run(reservedRoom)
}

/**
 * Puts the orphans back as they were before a rescue (running, their sessions busy), so the same
 * rescue can be measured again, the bare way.
 */
export const restoreOrphans = (db: Database, layout: OrphanLayout) =>
  db.transaction(() => {
    const part = db.prepare(`UPDATE vigil_parts SET status = 'running', error = NULL, ended_at = NULL, reserve = ? WHERE id = ?`)
    for (let k = 0; k < orphanCount; k++) part.run(reservedRoom, partId(orphanPart(layout, k)))
    const session = db.prepare(`UPDATE vigil_sessions SET status = 'busy', cancel_reason = NULL WHERE id = ?`)
    for (let s = 0; s < history.busySessions; s++) session.run(sessionId(s))
  })()
