import { randomBytes } from "node:crypto"
import PgBoss from "pg-boss"
import { makePartId, makeSessionId } from "../../packages/domain/src/index.js"
import {
  InstanceLease,
  ProcessControl,
  RecoveryComplete,
  Recovery,
  ToolRunner,
  Tools,
  Vigil
} from "../../packages/runtime/src/index.js"
import { PgStoreLive } from "../../packages/store/src/Postgres.js"
import { adminQuery, freshPgSchema, testDatabaseUrl } from "../../packages/store/src/TestDatabase.js"
import type { PgPool } from "../Database.js"
import { openPg } from "../Database.js"
import { Effect, Layer } from "../effect.js"
import type { Row } from "../Report.js"
import { max, median, row, show } from "../Report.js"
import { benchSettings, benchTools, buildOpen, openSession, timeHealthyScans } from "../Support.js"

/**
 * The PostgreSQL figures, on the test server `scripts/with-postgres.sh` starts (fsync and
 * synchronous_commit off: a throwaway server, so these are the CPU and round-trip costs, not the
 * disk's), each in a fresh schema. Skipped, saying so, without `VIGIL_TEST_DATABASE_URL`.
 */

const skipped = (figure: number, name: string): Row => ({
  figure,
  name,
  value: Number.NaN,
  unit: "",
  floor: "—",
  floorValue: null,
  ratio: null,
  target: "",
  verdict: "skipped: no PostgreSQL (set VIGIL_TEST_DATABASE_URL, e.g. bash scripts/with-postgres.sh npx --yes pnpm@10.34.9 bench 12 13)"
})

const onPostgres = <E>(
  figure: number,
  name: string,
  measure: (url: string) => Effect.Effect<ReadonlyArray<Row>, E>
): Effect.Effect<ReadonlyArray<Row>, E> =>
  testDatabaseUrl === undefined ? Effect.succeed([skipped(figure, name)]) : measure(testDatabaseUrl)

/** The supervision layer on a PostgreSQL store, the OS port faked as `benchRuntime` fakes it. */
const pgRuntime = (url: string) =>
  Vigil.layerWithStore(Layer.orDie(PgStoreLive(url)), {
    settings: benchSettings(),
    tools: Tools.addAll([benchTools.noop, benchTools.sleep60]),
    processes: ProcessControl.test()
  })

/** `count` runs of `job`, `concurrency` at a time, as a rate per second. */
const ratePerSecond = (count: number, concurrency: number, job: () => Promise<unknown>) =>
  Effect.promise(async () => {
    const started = performance.now()
    let next = 0
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++
        await job()
      }
    }))
    return count / ((performance.now() - started) / 1000)
  })

const lifecycles = 500
const barePairs = 1_000
const rounds = 3
const concurrency = 8

/** The two writes of a part, bare: insert it running, update it completed (autocommit each, as the SQLite floor). */
const barePgPairs = async (pool: PgPool) => {
  const now = Date.now()
  const sessionId = makeSessionId()
  await pool.query(
    `INSERT INTO vigil_sessions (id, parent_id, parent_part_id, title, status, cancel_reason, last_activity_at, owner_id, created_at)
     VALUES ($1, NULL, NULL, 'floor', 'busy', NULL, $2, 'ins_floor', $3)`,
    [sessionId, now, now]
  )
  return async () => {
    const id = makePartId()
    const at = Date.now()
    await pool.query(
      `INSERT INTO vigil_parts (id, session_id, kind, tool, input, call_id, status, output, error, created_at, started_at,
         ended_at, deadline_at, owner_id, child_session_id, pid, pgid, proc_start)
       VALUES ($1, $2, 'tool', 'noop', '{}', NULL, 'running', NULL, NULL, $3, $4, NULL, $5, 'ins_floor', NULL, NULL, NULL, NULL)`,
      [id, sessionId, at, at, at + 600_000]
    )
    await pool.query(
      `UPDATE vigil_parts SET status = 'completed', output = '', ended_at = $1 WHERE id = $2 AND status = 'running' AND owner_id = 'ins_floor'`,
      [Date.now(), id]
    )
  }
}

/** pg-boss in a schema of its own on the same server, its background work off: a job's round-trip, explicitly. */
const pgBoss = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const schema = `pgboss_bench_${randomBytes(4).toString("hex")}`
      const boss = new PgBoss({ connectionString: url, schema, max: concurrency + 2, supervise: false, schedule: false })
      boss.on("error", (error) => process.stderr.write(`pg-boss: ${String(error)}\n`))
      await boss.start()
      await boss.createQueue("bench")
      const version = (await import("pg-boss/package.json", { with: { type: "json" } })).default.version
      /** Enqueue, a worker fetches it (the next job: with 8 at once, perhaps another's), completes it. */
      const roundTrip = async () => {
        await boss.send("bench", {})
        let jobs = await boss.fetch("bench")
        while (jobs.length === 0) jobs = await boss.fetch("bench")
        await boss.complete("bench", jobs[0]!.id)
      }
      return { boss, schema, roundTrip, name: `pg-boss ${version}` }
    }),
    ({ boss, schema }) =>
      Effect.promise(() => boss.stop({ graceful: false, wait: true, timeout: 5_000 })).pipe(
        Effect.zipRight(adminQuery(`DROP SCHEMA ${schema} CASCADE`)),
        Effect.ignore
      )
  )

/**
 * Figure 12: the no-op tool lifecycle of figure 3 on PostgreSQL, one at a time and eight at a
 * time; against the floor, the same two writes with bare `pg` (one connection, and eight
 * connections eight at a time); beside a peer doing the same work on the same server: pg-boss's
 * job round-trip (send → fetch → complete). Median of three rounds, the five kinds interleaved.
 */
export const postgresLifecycleFigures = (_dir: string) =>
  onPostgres(12, "no-op tool lifecycle on PostgreSQL", (adminUrl) =>
    Effect.gen(function*() {
      const url = yield* freshPgSchema
      const runtime = yield* buildOpen(pgRuntime(url))
      const one = yield* Effect.acquireRelease(Effect.sync(() => openPg(url, 1)), (pool) => Effect.promise(() => pool.end()))
      const eight = yield* Effect.acquireRelease(Effect.sync(() => openPg(url, concurrency)), (pool) => Effect.promise(() => pool.end()))
      const peer = yield* pgBoss(adminUrl)
      const rates = yield* Effect.gen(function*() {
        const runner = yield* ToolRunner
        const sessionId = yield* openSession("pg throughput")
        const lifecycle = runner.runTool({ sessionId, tool: benchTools.noop, input: {} }).pipe(
          Effect.flatMap((handle) => handle.await),
          Effect.flatMap((outcome) =>
            outcome._tag === "Completed" ? Effect.void : Effect.dieMessage(`a no-op tool did not complete: ${JSON.stringify(outcome)}`)
          )
        )
        const vigil = (count: number, at: number) =>
          Effect.gen(function*() {
            const started = performance.now()
            yield* Effect.forEach(Array.from({ length: count }), () => lifecycle, { concurrency: at, discard: true })
            return count / ((performance.now() - started) / 1000)
          })
        const pairOne = yield* Effect.promise(() => barePgPairs(one))
        const pairEight = yield* Effect.promise(() => barePgPairs(eight))
        yield* vigil(200, concurrency)
        yield* ratePerSecond(200, 1, pairOne)
        yield* ratePerSecond(200, concurrency, pairEight)
        yield* ratePerSecond(200, concurrency, peer.roundTrip)
        const kinds = { vigil1: [] as Array<number>, vigil8: [] as Array<number>, bare1: [] as Array<number>, bare8: [] as Array<number>, boss1: [] as Array<number>, boss8: [] as Array<number> }
        for (let round = 0; round < rounds; round++) {
          kinds.bare1.push(yield* ratePerSecond(barePairs, 1, pairOne))
          kinds.bare8.push(yield* ratePerSecond(barePairs, concurrency, pairEight))
          kinds.vigil1.push(yield* vigil(lifecycles, 1))
          kinds.vigil8.push(yield* vigil(lifecycles, concurrency))
          kinds.boss1.push(yield* ratePerSecond(lifecycles, 1, peer.roundTrip))
          kinds.boss8.push(yield* ratePerSecond(lifecycles, concurrency, peer.roundTrip))
        }
        return Object.fromEntries(Object.entries(kinds).map(([kind, values]) => [kind, median(values)])) as Record<keyof typeof kinds, number>
      }).pipe(Effect.provide(runtime.context), Effect.onError(() => runtime.close))
      yield* runtime.close
      const floor1 = { value: rates.bare1, what: "bare pg insert + update pairs, one connection" }
      const floor8 = { value: rates.bare8, what: `bare pg pairs, ${concurrency} at a time on ${concurrency} connections` }
      return [
        row({
          figure: 12,
          name: "no-op tool lifecycle via runTool on PostgreSQL, sequential",
          value: rates.vigil1,
          unit: "/s",
          floor: floor1,
          peer: { name: peer.name, value: rates.boss1 },
          note: `median of ${rounds} rounds of ${lifecycles} (bare: ${show(barePairs)}), interleaved; ` +
            `the peer: pg-boss's job round-trip (send → fetch → complete) on the same server, its supervision and schedules off`
        }),
        row({
          figure: 12,
          name: `no-op tool lifecycle via runTool on PostgreSQL, concurrency ${concurrency}`,
          value: rates.vigil8,
          unit: "/s",
          floor: floor8,
          peer: { name: peer.name, value: rates.boss8 }
        }),
        row({ figure: 12, name: `peer: ${peer.name} job round-trip, sequential`, value: rates.boss1, unit: "/s", floor: floor1 }),
        row({ figure: 12, name: `peer: ${peer.name} job round-trip, ${concurrency} at a time`, value: rates.boss8, unit: "/s", floor: floor8 })
      ] satisfies ReadonlyArray<Row>
    }).pipe(Effect.scoped))

/**
 * The large PostgreSQL database: half the SQLite one, so that figure 13 (seeding, vacuum, seven
 * rescues) stays under a minute on a loaded 2-core machine (200,000 parts seeded in 6 s at load
 * 10); its orphans scattered over every page as in figure 1's worst case.
 */
const pgHistory = {
  parts: Number(process.env["VIGIL_BENCH_PG_PARTS"] ?? 500_000),
  orphanEvery: 100,
  deadInstances: 10,
  stoppedInstances: 50
} as const
const pgSessions = pgHistory.parts / 10
const pgBusySessions = pgHistory.parts / 1_000
const pgOrphans = pgHistory.parts / pgHistory.orphanEvery
const replays = 3
const scans = 20
const runningHere = 100
const watchdogSessions = 10

/** The shape of Seed.ts's history (99% completed, 1% running orphans of ten dead instances), generated inside PostgreSQL. */
const seedPg = async (pool: PgPool) => {
  const now = Date.now()
  const day = 86_400_000
  const old = now - 30 * day
  const { deadInstances: dead, orphanEvery: every, parts, stoppedInstances: stopped } = pgHistory
  const busy = pgBusySessions
  await pool.query(`BEGIN;
    INSERT INTO vigil_instances (id, pid, host, proc_start, started_at, heartbeat_at, lease_millis, stopped_at)
    SELECT 'ins_old_' || i, 10000 + i, 'old-host', '100', ${old}, ${old + day}, 30000, ${old + day} FROM generate_series(0, ${stopped - 1}) i;
    INSERT INTO vigil_instances (id, pid, host, proc_start, started_at, heartbeat_at, lease_millis, stopped_at)
    SELECT 'ins_dead_' || i, 20000 + i, 'crashed-host', '200', ${now - 2 * day}, ${now - day}, 30000, NULL FROM generate_series(0, ${dead - 1}) i;
    INSERT INTO vigil_sessions (id, parent_id, parent_part_id, title, status, cancel_reason, last_activity_at, owner_id, created_at)
    SELECT 'ses_bench' || lpad(n::text, 7, '0'), NULL, NULL, 'session ' || n,
      CASE WHEN n < ${busy} THEN 'busy' ELSE 'idle' END, NULL,
      CASE WHEN n < ${busy} THEN ${now - day} ELSE ${old} + n END,
      CASE WHEN n < ${busy} THEN 'ins_dead_' || (n % ${dead}) ELSE 'ins_old_' || (n % ${stopped}) END,
      ${old} + n
    FROM generate_series(0, ${pgSessions - 1}) n;
    INSERT INTO vigil_parts (id, session_id, kind, tool, input, call_id, status, output, error, created_at, started_at,
      ended_at, deadline_at, owner_id, child_session_id, pid, pgid, proc_start)
    SELECT 'prt_bench' || lpad(n::text, 8, '0'),
      CASE WHEN orphan THEN 'ses_bench' || lpad(((n / ${every}) % ${busy})::text, 7, '0') ELSE 'ses_bench' || lpad((n % ${pgSessions})::text, 7, '0') END,
      'tool', 'bash', '{"command":"echo hi"}', 'call_' || n,
      CASE WHEN orphan THEN 'running' ELSE 'completed' END,
      CASE WHEN orphan THEN NULL ELSE 'hi' || chr(10) END,
      NULL,
      CASE WHEN orphan THEN ${now - day - 60_000} ELSE ${old} + n END,
      CASE WHEN orphan THEN ${now - day - 60_000} ELSE ${old} + n END,
      CASE WHEN orphan THEN NULL ELSE ${old} + n + 5 END,
      CASE WHEN orphan THEN ${now - day + 540_000} ELSE ${old} + n + 600000 END,
      CASE WHEN orphan THEN 'ins_dead_' || (((n / ${every}) % ${busy}) % ${dead}) ELSE 'ins_old_' || (n % ${stopped}) END,
      NULL,
      CASE WHEN orphan THEN 3000000 + n / ${every} ELSE NULL END,
      CASE WHEN orphan THEN 3000000 + n / ${every} ELSE NULL END,
      CASE WHEN orphan THEN '12345' ELSE NULL END
    FROM (SELECT n, n % ${every} = 0 AS orphan FROM generate_series(0, ${parts - 1}) n) seq;
    COMMIT;`)
  // As a database that has run a while: its statistics and visibility map up to date.
  await pool.query(`VACUUM ANALYZE vigil_parts`)
  await pool.query(`VACUUM ANALYZE vigil_sessions`)
}

/** The orphans running again and their sessions busy, so the same rescue can be measured again. */
const restorePgOrphans = (pool: PgPool) =>
  pool.query(`BEGIN;
    UPDATE vigil_parts SET status = 'running', error = NULL, ended_at = NULL
      WHERE id IN (SELECT 'prt_bench' || lpad((k * ${pgHistory.orphanEvery})::text, 8, '0') FROM generate_series(0, ${pgOrphans - 1}) k);
    UPDATE vigil_sessions SET status = 'busy', cancel_reason = NULL
      WHERE id IN (SELECT 'ses_bench' || lpad(s::text, 7, '0') FROM generate_series(0, ${pgBusySessions - 1}) s);
    COMMIT;`)

/** The watchdog scan's reads (as bench/Floors.ts's), bare on `pg`: timings in ms after three of warm-up. */
const barePgScan = async (pool: PgPool, self: string): Promise<Array<number>> => {
  const mine = await pool.query(`SELECT id FROM vigil_parts WHERE owner_id = $1 AND status IN ('pending', 'running')`, [self])
  if (mine.rows.length !== runningHere) throw new Error("the bare scan does not see this instance's running parts")
  const timings: Array<number> = []
  for (let i = 0; i < scans + 3; i++) {
    const started = performance.now()
    await pool.query(`SELECT DISTINCT owner_id FROM vigil_parts WHERE status IN ('pending', 'running')`)
    await pool.query(`SELECT DISTINCT owner_id FROM vigil_sessions WHERE status IN ('busy', 'waiting')`)
    const candidates = await pool.query(
      `SELECT * FROM vigil_parts WHERE owner_id = $1 AND status IN ('pending', 'running') AND status = 'running'
       AND kind IN ('tool', 'model') AND started_at IS NOT NULL AND (tool = 'task' OR deadline_at <= $2)`,
      [self, Date.now() - 2_000]
    )
    if (candidates.rows.length !== 0) throw new Error("the bare scan found a stuck candidate")
    if (i >= 3) timings.push(performance.now() - started)
  }
  return timings
}

/** The rescue's statements (as Recovery.ts's bareRescue), bare on `pg`, each in autocommit: ms. */
const barePgRescue = async (pool: PgPool, extraSessions: number): Promise<number> => {
  const started = performance.now()
  const now = Date.now()
  const owners = new Set<string>()
  for (const r of (await pool.query(`SELECT DISTINCT owner_id FROM vigil_parts WHERE status IN ('pending', 'running')`)).rows) {
    owners.add(String(r["owner_id"]))
  }
  for (const r of (await pool.query(`SELECT DISTINCT owner_id FROM vigil_sessions WHERE status IN ('busy', 'waiting')`)).rows) {
    owners.add(String(r["owner_id"]))
  }
  const ids = [...owners]
  const instances = (await pool.query(`SELECT * FROM vigil_instances WHERE id = ANY($1)`, [ids])).rows
  let parts = 0
  let sessions = 0
  for (const instance of instances) {
    const dead = instance["stopped_at"] !== null || Number(instance["heartbeat_at"]) + Number(instance["lease_millis"]) < now
    if (!dead) continue
    const reason = JSON.stringify({ _tag: "OrphanedByCrash", ownerId: instance["id"] })
    const ended = await pool.query(
      `UPDATE vigil_parts SET status = 'error', error = $1, ended_at = $2 WHERE owner_id = $3 AND status IN ('pending', 'running')
       RETURNING id, session_id, tool, pid, pgid, proc_start`,
      [reason, now, instance["id"]]
    )
    const freed = await pool.query(
      `UPDATE vigil_sessions SET status = 'error', cancel_reason = $1, last_activity_at = $2 WHERE owner_id = $3 AND status IN ('busy', 'waiting') RETURNING id`,
      [reason, now, instance["id"]]
    )
    parts += ended.rows.length
    sessions += freed.rows.length
    await pool.query(`INSERT INTO vigil_events (type, at, instance_id, reason, data) VALUES ($1, $2, $3, $4, $5) RETURNING id`, [
      "recovery.orphans_rescued",
      now,
      "bench",
      reason,
      JSON.stringify({ parts: ended.rows.length, sessions: freed.rows.length })
    ])
  }
  const took = performance.now() - started
  if (parts !== pgOrphans || sessions !== pgBusySessions + extraSessions) {
    throw new Error(`the bare rescue ended ${parts} parts and ${sessions} sessions`)
  }
  return took
}

/**
 * Figure 13: on a PostgreSQL database of `pgHistory.parts` parts whose 1% orphans (of ten dead
 * instances) are scattered over every page: the startup recovery that rescues them as the runtime
 * starts, the same rescue replayed by direct calls on the orphans put back, and one watchdog scan
 * with 100 tools of this instance running; against the same statements bare on `pg`.
 */
export const postgresRecoveryFigures = (_dir: string) =>
  onPostgres(13, "startup recovery and watchdog scan on PostgreSQL", () =>
    Effect.gen(function*() {
      const url = yield* freshPgSchema
      yield* Effect.scoped(Layer.build(Layer.orDie(PgStoreLive(url))))
      const pool = yield* Effect.acquireRelease(Effect.sync(() => openPg(url, 1)), (p) => Effect.promise(() => p.end()))
      const seedStarted = performance.now()
      yield* Effect.promise(() => seedPg(pool))
      const seedMs = performance.now() - seedStarted
      const runtime = yield* buildOpen(pgRuntime(url))
      const measured = yield* Effect.gen(function*() {
        const { report } = yield* RecoveryComplete
        if (report.orphanedParts !== pgOrphans || report.sessionsFreed !== pgBusySessions) {
          return yield* Effect.dieMessage(
            `startup recovery rescued ${report.orphanedParts} parts and ${report.sessionsFreed} sessions, expected ${pgOrphans} and ${pgBusySessions}`
          )
        }
        const recovery = yield* Recovery
        const replayed: Array<number> = []
        for (let i = 0; i < replays; i++) {
          yield* Effect.promise(() => restorePgOrphans(pool))
          const started = performance.now()
          const again = yield* recovery.recoverDeadOwners({ trigger: "startup" })
          replayed.push(performance.now() - started)
          if (again.orphanedParts !== pgOrphans) return yield* Effect.dieMessage(`a replayed rescue ended ${again.orphanedParts} parts, expected ${pgOrphans}`)
        }
        const lease = yield* InstanceLease
        const timings = yield* timeHealthyScans({ title: "pg watchdog", sessions: watchdogSessions, running: runningHere, scans })
        const bareScan = yield* Effect.promise(() => barePgScan(pool, lease.id))
        return { report, replayed, timings, bareScan }
      }).pipe(Effect.provide(runtime.context), Effect.onError(() => runtime.close))
      yield* runtime.close
      const bareRescues: Array<number> = []
      for (let i = 0; i < replays; i++) {
        yield* Effect.promise(() => restorePgOrphans(pool))
        // The watchdog figure's sessions are left busy by a closed instance: the first rescue frees them too.
        bareRescues.push(yield* Effect.promise(() => barePgRescue(pool, i === 0 ? watchdogSessions : 0)))
      }
      const { report, replayed, timings, bareScan } = measured
      const size = `${show(pgHistory.parts)} parts / ${show(pgOrphans)} orphans scattered`
      const bareRescue = { value: median(bareRescues), what: `bare pg, the rescue's statements on orphans put back (median of ${replays})` }
      return [
        row({
          figure: 13,
          name: `startup recovery on PostgreSQL, ${size}`,
          value: report.tookMs,
          unit: "ms",
          floor: bareRescue,
          note: `${report.orphanedParts} parts and ${report.sessionsFreed} sessions rescued during the runtime's start; ` +
            `${show(pgHistory.parts)} parts (not 1,000,000) so the figure runs in under a minute: seeding them took ` +
            `${show(seedMs / 1000)} s (VIGIL_BENCH_PG_PARTS sets it); bare runs: ${bareRescues.map(show).join(", ")} ms`
        }),
        row({
          figure: 13,
          name: `same rescue replayed by direct calls on PostgreSQL, median of ${replays}`,
          value: median(replayed),
          unit: "ms",
          floor: bareRescue,
          note: `runs: ${replayed.map(show).join(", ")} ms`
        }),
        row({
          figure: 13,
          name: `watchdog scan on PostgreSQL, ${show(pgHistory.parts)} parts / ${runningHere} running (median of ${scans})`,
          value: median(timings),
          unit: "ms",
          floor: { value: median(bareScan), what: "bare pg, the scan's reads" },
          note: `max ${show(max(timings))} ms; bare max ${show(max(bareScan))} ms`
        })
      ] satisfies ReadonlyArray<Row>
    }).pipe(Effect.scoped))
