import { closeSync, copyFileSync, fsyncSync, openSync, rmSync } from "node:fs"
import { join } from "node:path"
import { InstanceLease, Recovery, RecoveryComplete } from "../../packages/runtime/src/index.js"
import type { Database } from "../Database.js"
import { openDatabase } from "../Database.js"
import { bareScanTimings } from "../Floors.js"
import { Effect } from "../effect.js"
import type { Row } from "../Report.js"
import { max, median, row, show } from "../Report.js"
import type { OrphanLayout } from "../Seed.js"
import { history, orphanCount, restoreOrphans, seedHistory } from "../Seed.js"
import { benchRuntime, benchTools, buildOpen, timeHealthyScans } from "../Support.js"

const scans = 20
const replayCount = 4
const runningHere = 100
/** Sessions the watchdog figure opens; left busy by that runtime's shutdown, so the bare rescue frees them too. */
const watchdogSessions = 10

/**
 * Figures 1 and 2, on a file of a million parts whose orphans are the newest parts (as a crash
 * leaves them), then figure 1 again on a file whose orphans are scattered over every page.
 */
export const recoveryFigures = (dir: string) =>
  Effect.gen(function*() {
    const recent = yield* onHistory(dir, "recent")
    const scattered = yield* onHistory(dir, "scattered")
    return [...recent.filter((r) => r.figure === 1), ...scattered.filter((r) => r.figure === 1), ...recent.filter((r) => r.figure === 2)]
  })

const layoutLabel = { recent: "orphans newest", scattered: "orphans scattered" } satisfies Record<OrphanLayout, string>

/**
 * On one file of a million parts:
 * 1. the runtime starts on it and its startup recovery (`Recovery.recoverDeadOwners({ trigger:
 *    "startup" })`, run by StartupRecoveryLive while the layers are built) rescues the 10,000
 *    orphans of ten dead instances; the orphans are put back and the rescue called directly four
 *    more times; the same rescue in bare SQL is the floor, once on a copy of the seeded file (the
 *    pages as a start-up meets them) and, once the runtime is closed, on orphans put back;
 * 2. with 100 tools of this instance running (sleeping, deadlines ten minutes away) the watchdog
 *    scans the file 20 times; the scan's reads in bare SQL are the floor.
 */
const onHistory = (dir: string, layout: OrphanLayout) =>
  Effect.gen(function*() {
    const file = join(dir, `history-${layout}.db`)
    const { seedMs } = yield* seedHistory(file, layout)
    // A copy of the seeded file, for the bare floor of the *first* rescue: later rescues find the
    // pages already split by the first one, and are cheaper than what a start-up meets.
    const pristine = join(dir, `history-${layout}-bare.db`)
    yield* Effect.sync(() => copyDurably(file, pristine))
    const runtime = yield* buildOpen(benchRuntime({ file, tools: [benchTools.sleep60] }))
    const measured = yield* Effect.gen(function*() {
      const { report } = yield* RecoveryComplete
      if (report.orphanedParts !== orphanCount || report.sessionsFreed !== history.busySessions) {
        return yield* Effect.dieMessage(
          `startup recovery rescued ${report.orphanedParts} parts and ${report.sessionsFreed} sessions, expected ${orphanCount} and ${history.busySessions}`
        )
      }
      // The same rescue again, called directly, on the orphans put back as they were.
      const recovery = yield* Recovery
      const replays: Array<number> = []
      for (let i = 0; i < replayCount; i++) {
        yield* Effect.sync(() => {
          const db = openDatabase(file)
          try {
            restoreOrphans(db, layout)
          } finally {
            db.close()
          }
        })
        const started = performance.now()
        const replayed = yield* recovery.recoverDeadOwners({ trigger: "startup" })
        replays.push(performance.now() - started)
        if (replayed.orphanedParts !== orphanCount) {
          return yield* Effect.dieMessage(`a replayed rescue ended ${replayed.orphanedParts} parts, expected ${orphanCount}`)
        }
      }
      const lease = yield* InstanceLease
      const timings = yield* timeHealthyScans({ title: "watchdog", sessions: watchdogSessions, running: runningHere, scans })
      const bareScan = yield* Effect.sync(() => {
        const db = openDatabase(file)
        try {
          return bareScanTimings(db, lease.id, { running: runningHere, rounds: scans })
        } finally {
          db.close()
        }
      })
      return { report, replays, timings, bareScan }
    }).pipe(Effect.provide(runtime.context), Effect.onError(() => runtime.close))
    yield* runtime.close

    const bareFirstMs = yield* Effect.sync(() => {
      const db = openDatabase(pristine)
      try {
        return bareRescue(db, 0)
      } finally {
        db.close()
        for (const suffix of ["", "-wal", "-shm"]) rmSync(pristine + suffix, { force: true })
      }
    })
    const bareRescueMs = yield* Effect.sync(() => {
      const db = openDatabase(file)
      try {
        return median(Array.from({ length: 3 }, (_, i) => {
          restoreOrphans(db, layout)
          // The watchdog figure's sessions are left busy by a closed instance: the first rescue frees them too.
          return bareRescue(db, i === 0 ? watchdogSessions : 0)
        }))
      } finally {
        db.close()
      }
    })

    const { report, replays, timings, bareScan } = measured
    return [
      row({
        figure: 1,
        name: `startup recovery, 1M parts / 10k orphans (${layoutLabel[layout]})`,
        value: report.tookMs,
        unit: "ms",
        floor: { value: bareFirstMs, what: "bare SQL, the first rescue on a copy of the seeded file" },
        target: { kind: "max", limit: 1000, text: "well under 1,000 ms", wellUnder: 0.5 },
        note: `${report.orphanedParts} parts and ${report.sessionsFreed} sessions of ${report.deadOwners.length} dead ` +
          `instances rescued by recoverDeadOwners during the runtime's start; bare SQL: once on a copy of the seeded file, ` +
          `then median of 3 on orphans put back (pages already split); seeding the file took ${show(seedMs)} ms`
      }),
      row({
        figure: 1,
        name: `same rescue replayed by direct calls, median of 4 (${layoutLabel[layout]})`,
        value: median(replays),
        unit: "ms",
        floor: { value: bareRescueMs, what: "bare SQL, the rescue again on orphans put back" },
        target: { kind: "max", limit: 1000, text: "well under 1,000 ms", wellUnder: 0.5 },
        note: `recoverDeadOwners({ trigger: "startup" }) timed from outside, orphans restored before each: ${
          replays.map(show).join(", ")
        } ms`
      }),
      row({
        figure: 1,
        name: `runtime start on that file, all layers incl. recovery (${layoutLabel[layout]})`,
        value: runtime.buildMs,
        unit: "ms",
        floor: { value: bareFirstMs, what: "bare SQL first rescue (the start's recovery alone)" }
      }),
      row({
        figure: 2,
        name: "watchdog scan, 1M parts / 100 running (median of 20)",
        value: median(timings),
        unit: "ms",
        floor: { value: median(bareScan), what: "bare SQL, the scan's reads" },
        target: { kind: "max", limit: 5 },
        note: `max ${show(max(timings))} ms; bare SQL reads of the same scan max ${show(max(bareScan))} ms`
      })
    ] satisfies ReadonlyArray<Row>
  })

/** A copy on disk before anything is measured (its writeback would otherwise land in a figure). */
const copyDurably = (from: string, to: string) => {
  copyFileSync(from, to)
  const fd = openSync(to, "r+")
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * The rescue's statements, bare: who owns live work, which of them are dead, then per dead owner
 * the fenced part and session updates (returning what they ended) and one event row.
 */
const bareRescue = (db: Database, extraSessions: number): number => {
  const started = performance.now()
  const now = Date.now()
  const owners = new Set<string>()
  for (const r of db.prepare(`SELECT DISTINCT owner_id FROM vigil_parts WHERE status IN ('pending', 'running')`).all()) {
    owners.add(String(r["owner_id"]))
  }
  for (const r of db.prepare(`SELECT DISTINCT owner_id FROM vigil_sessions WHERE status IN ('busy', 'waiting')`).all()) {
    owners.add(String(r["owner_id"]))
  }
  const ids = [...owners]
  const instances = db.prepare(`SELECT * FROM vigil_instances WHERE id IN (${ids.map(() => "?").join(", ")})`).all(...ids)
  const endParts = db.prepare(
    `UPDATE vigil_parts SET status = 'error', error = ?, ended_at = ?, reserve = NULL WHERE owner_id = ? AND status IN ('pending', 'running')
     RETURNING id, session_id, tool, pid, pgid, proc_start`
  )
  const endSessions = db.prepare(
    `UPDATE vigil_sessions SET status = 'error', cancel_reason = ?, last_activity_at = ? WHERE owner_id = ? AND status IN ('busy', 'waiting') RETURNING id`
  )
  const event = db.prepare(`INSERT INTO vigil_events (type, at, instance_id, reason, data) VALUES (?, ?, ?, ?, ?) RETURNING id`)
  let parts = 0
  let sessions = 0
  for (const instance of instances) {
    const dead = instance["stopped_at"] !== null ||
      Number(instance["heartbeat_at"]) + Number(instance["lease_millis"]) < now
    if (!dead) continue
    const reason = JSON.stringify({ _tag: "OrphanedByCrash", ownerId: instance["id"] })
    const ended = endParts.all(reason, now, instance["id"])
    const freed = endSessions.all(reason, now, instance["id"])
    parts += ended.length
    sessions += freed.length
    event.get("recovery.orphans_rescued", now, "bench", reason, JSON.stringify({ parts: ended.length, sessions: freed.length }))
  }
  const took = performance.now() - started
  if (parts !== orphanCount || sessions !== history.busySessions + extraSessions) {
    throw new Error(`the bare rescue ended ${parts} parts and ${sessions} sessions`)
  }
  return took
}
