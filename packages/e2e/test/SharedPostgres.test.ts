import { assert, describe, it } from "@effect/vitest"
import type { SupervisionEvent } from "@vigil/domain"
import { OrphanedByCrash, PartId } from "@vigil/domain"
import type { Store } from "@vigil/store"
import { EventLog, PartRepo } from "@vigil/store"
import { PgStoreLive } from "@vigil/store/pg"
import { freshPgSchema, pgSkipped } from "@vigil/store/test-database"
import { Effect, Layer, Option } from "effect"
import { sendJson } from "./support/Http.js"
import { isLive, readStat } from "./support/Processes.js"
import type { Health } from "./support/ServerProcess.js"
import { eventually, killEverything, makeWorkspace, ServerProcess, sleep } from "./support/ServerProcess.js"

/**
 * Several machines on one PostgreSQL database, played by three real `vigil serve` processes on
 * this one: each is told another host name (`VIGIL_HOST_NAME`), so no peer can see another's pid
 * and only the database can tell that one died. The lease is far longer than the test: a rescue
 * within seconds can only come from the instance's advisory lock vanishing with its process.
 */

const settings = {
  tool_timeout: "10 minutes",
  watchdog_interval: "200 ms",
  instance_lease: "60 seconds",
  kill_grace: "300 ms"
}

interface Running {
  readonly partId: string
  readonly sessionId: string
  readonly shellPid: number
}

interface RescuedData {
  readonly ownerId: string
  readonly cause: string
  readonly host: string | null
  readonly parts: number
  readonly partIds: ReadonlyArray<string>
}

const json = async <A>(response: Promise<{ status: number; json: unknown; text: string }>, status: number): Promise<A> => {
  const answer = await response
  if (answer.status !== status) throw new Error(`expected ${status}, got ${answer.status}: ${answer.text}`)
  return answer.json as A
}

/** On `server`: a session whose `echo done` completed, and `count` sessions each running `sleep 300`. */
const startWork = async (server: ServerProcess, count: number) => {
  const session = (title: string) => json<{ id: string }>(sendJson(server.url, "POST", "/session", { title }), 201)
  const runTool = (sessionId: string, command: string) =>
    json<{ partId: string }>(sendJson(server.url, "POST", `/session/${sessionId}/tool`, { tool: "bash", input: { command } }), 202)
  const part = (id: string) => json<{ status: string; pid: number | null; output: string | null }>(sendJson(server.url, "GET", `/part/${id}`), 200)

  const done = await session("completed before the crash")
  const { partId: completedPartId } = await runTool(done.id, "echo done")
  await eventually("echo done to complete", 20_000, async () => ((await part(completedPartId)).status === "completed" ? true : undefined))
  const running: Array<Running> = []
  for (let i = 0; i < count; i++) {
    const { id: sessionId } = await session(`running at the crash #${i}`)
    const { partId } = await runTool(sessionId, "sleep 300")
    // Recovery needs the shell's pid on record: wait for it, as a crash would find it.
    const shellPid = await eventually("the shell's pid to be recorded", 20_000, async () => (await part(partId)).pid ?? undefined)
    running.push({ partId, sessionId, shellPid })
  }
  return { completedPartId, running }
}

const alive = (pid: number) => isLive(readStat(pid))

describe.skipIf(pgSkipped)("three vigil servers on one PostgreSQL database", () => {
  it.live(
    "one is SIGKILLed mid-tool: exactly one survivor rescues each orphan, live work elsewhere is untouched, nothing is rescued twice",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const url = yield* freshPgSchema
        const workspace = makeWorkspace("vigil-pg-", settings)
        const hosts = ["host-a", "host-b", "host-c"] as const
        const servers = hosts.map((host) => new ServerProcess(workspace, { VIGIL_DATABASE_URL: url, VIGIL_HOST_NAME: host }))
        // Before the schema is dropped: every server and every process they started is gone.
        yield* Effect.addFinalizer(() =>
          Effect.promise(async () => {
            for (const server of servers) await server.retire()
            killEverything()
            workspace.remove()
          })
        )
        const [a, b] = servers as [ServerProcess, ServerProcess, ServerProcess]

        // All three start at once on the empty schema: the migrations run once, in turn.
        const healths: ReadonlyArray<Health> = yield* Effect.promise(() => Promise.all(servers.map((server) => server.start())))
        const [idA, idB, idC] = healths.map((health) => health.instance.id) as [string, string, string]
        assert.strictEqual(new Set([idA, idB, idC]).size, 3)

        const work = yield* Effect.promise(() => Promise.all(servers.map((server) => startWork(server, 3))))
        const [workA, workB, workC] = work as [typeof work[0], typeof work[0], typeof work[0]]
        for (const { shellPid } of work.flatMap((each) => each.running)) assert.isTrue(alive(shellPid))

        const store = yield* Layer.build(Layer.orDie(PgStoreLive(url)))
        const check = <A>(effect: Effect.Effect<A, never, Store>) => Effect.provide(effect, store)
        const partOf = (id: string) =>
          check(Effect.flatMap(PartRepo, (repo) => repo.get(PartId.make(id))).pipe(Effect.map(Option.getOrThrow)))
        const rescuedEvents = check(Effect.gen(function*() {
          const log = yield* EventLog
          const byWatchdog = yield* log.list({ type: "watchdog.orphans_rescued", limit: 10_000 })
          const byRecovery = yield* log.list({ type: "recovery.orphans_rescued", limit: 10_000 })
          return [...byWatchdog, ...byRecovery].filter((event) => (event.data as RescuedData).ownerId === idA)
        }))

        // The crash.
        yield* Effect.promise(() => a.kill())
        const killedAt = Date.now()
        yield* Effect.promise(() =>
          eventually("the killed server's orphans to be rescued", 20_000, async () => {
            const rows = await Effect.runPromise(Effect.forEach(workA.running, ({ partId }) => partOf(partId)))
            return rows.every((row) => row.status === "error") ? true : undefined
          })
        )
        const tookMs = Date.now() - killedAt
        for (const { partId } of workA.running) {
          assert.deepStrictEqual((yield* partOf(partId)).error, new OrphanedByCrash({ ownerId: idA as never }))
        }
        // Far within the 60 s lease: the lock told.
        assert.isBelow(tookMs, 10_000)

        // Many more scans of both survivors: still one listing per orphan, by exactly one of them.
        yield* Effect.promise(() => sleep(2_000))
        const events: ReadonlyArray<SupervisionEvent> = yield* rescuedEvents
        const listed = new Map<string, Array<string>>()
        for (const event of events) {
          const data = event.data as RescuedData
          assert.strictEqual(data.cause, "lock-released")
          assert.strictEqual(data.host, "host-a")
          assert.include([idB, idC], event.instanceId, "only a survivor rescues")
          for (const id of data.partIds) listed.set(id, [...(listed.get(id) ?? []), event.instanceId!])
        }
        assert.deepStrictEqual([...listed.keys()].sort(), workA.running.map((orphan) => orphan.partId).sort())
        for (const [partId, rescuers] of listed) assert.strictEqual(rescuers.length, 1, `${partId} rescued once, by ${rescuers.join(", ")}`)
        assert.strictEqual(events.reduce((sum, event) => sum + (event.data as RescuedData).parts, 0), workA.running.length)

        // The survivors' work is untouched; what completed before the crash stays completed.
        for (const survivor of [workB, workC]) {
          for (const { partId, shellPid } of survivor.running) {
            assert.strictEqual((yield* partOf(partId)).status, "running")
            assert.isTrue(alive(shellPid), "a live peer's shells are never touched")
          }
        }
        for (const each of work) {
          const completed = yield* partOf(each.completedPartId)
          assert.deepStrictEqual([completed.status, completed.output], ["completed", "done\n"])
        }

        // A rescued session goes on, served by a survivor.
        const orphanSession = workA.running[0]!.sessionId
        const again = yield* Effect.promise(() =>
          json<{ partId: string }>(sendJson(b.url, "POST", `/session/${orphanSession}/tool`, { tool: "bash", input: { command: "echo again" } }), 202)
        )
        yield* Effect.promise(() =>
          eventually("the rescued session's new tool to complete", 20_000, async () => {
            const row = await Effect.runPromise(partOf(again.partId))
            return row.status === "completed" ? row : undefined
          })
        )
        assert.deepStrictEqual(((yield* partOf(again.partId)).output), "again\n")
        assert.strictEqual((yield* partOf(again.partId)).ownerId, idB)

        // Another host could not signal host-a's shells: they still run, and that is on record.
        for (const { shellPid } of workA.running) assert.isTrue(alive(shellPid), "a rescue elsewhere does not reach this host")
        const elsewhere = yield* check(Effect.flatMap(EventLog, (log) => log.list({ type: "recovery.processes_elsewhere" })))
        assert.isTrue(elsewhere.some((event) => (event.data as { host: string }).host === "host-a"), JSON.stringify(elsewhere))

        // host-a's next start ends them before it serves.
        const restarted = yield* Effect.promise(() => a.start())
        assert.notStrictEqual(restarted.instance.id, idA)
        assert.isAtLeast(restarted.recovery.processesKilled, workA.running.length)
        for (const { shellPid } of workA.running) assert.isFalse(alive(shellPid), `shell ${shellPid} ended by host-a's restart`)
        const killed = yield* check(Effect.flatMap(EventLog, (log) => log.list({ type: "recovery.processes_killed" })))
        for (const { partId } of workA.running) {
          const event = killed.find((candidate) => candidate.partId === partId)
          assert.isDefined(event, `processes of ${partId} ended on record`)
          assert.strictEqual(event!.instanceId, restarted.instance.id)
          assert.deepInclude(event!.data as object, { ownerId: idA, leftover: true })
        }
        // Its restart rescued nothing of the live peers, and they still run.
        assert.deepStrictEqual(restarted.recovery.orphanedParts, 0)
        for (const survivor of [workB, workC]) {
          for (const { partId, shellPid } of survivor.running) {
            assert.strictEqual((yield* partOf(partId)).status, "running")
            assert.isTrue(alive(shellPid))
          }
        }
        console.log(
          `three servers on PostgreSQL: ${workA.running.length} orphans of a SIGKILLed server rescued in ${tookMs} ms ` +
            `(lease 60000 ms), by ${[...new Set(events.map((event) => event.instanceId))].join(" and ")}`
        )
      })),
    120_000
  )
})
