import { assert, describe, it } from "@effect/vitest"
import { afterAll, afterEach } from "vitest"
import { outputCapBytes } from "@vigil/domain"
import { connect } from "node:net"
import type { Socket } from "node:net"
import { readFileSync, writeFileSync } from "node:fs"
import type { Database, PartRow } from "./support/Database.js"
import { openDatabase, reasonOf } from "./support/Database.js"
import { sendJson } from "./support/Http.js"
import type { LeakedProcess } from "./support/Invariants.js"
import {
  completedRewritten,
  leakedProcesses,
  partsWithoutLiveOwner,
  sessionsWithoutWork,
  tally,
  unexplainedSupervision,
  wrongFloodResults,
  wrongShellResults
} from "./support/Invariants.js"
import { InstantProvider } from "./support/InstantProvider.js"
import { isLive, readStat } from "./support/Processes.js"
import type { Health, Workspace } from "./support/ServerProcess.js"
import { eventually, killEverything, makeWorkspace, ServerProcess, sleep } from "./support/ServerProcess.js"
import { seededRandom, Workload } from "./support/Workload.js"

/**
 * Proof under fire: the real server, as a child process on one SQLite file, under many concurrent
 * sessions running real shell tools, sub-agents and questions, SIGKILLed at random moments and
 * restarted on the same file and port, then stopped cleanly and started once more. The guarantees
 * are then checked where they live: in the SQLite file, in /proc, and over HTTP.
 *
 * Bounded for CI (`CI` set: fewer workers, shorter rounds, about a minute on 2 cores). A longer
 * run: `VIGIL_CHAOS_ROUNDS=20 npx vitest run packages/e2e/test/Chaos.test.ts`; a replay of the
 * workload's choices: `VIGIL_CHAOS_SEED=<the printed seed>` (timing is never replayed exactly);
 * `VIGIL_CHAOS_KEEP=1` keeps the temp folder (database, config, server log) for a post-mortem;
 * `VIGIL_CHAOS_STRICT=0` prints the two findings below instead of failing on them.
 *
 * A second round runs two servers on the one file, the load spread over both (so prompts, aborts and
 * replies often reach the instance that does not run the turn), aborts A's shells at B, SIGKILLs A
 * mid-tool, and checks that B rescues everything of A and nothing is lost, stuck or leaked.
 *
 * Found by this test and fixed (each also reproduced on its own at the end of the file):
 * - a shell part that ended `AbortIncomplete` could leave its process tree running for good when
 *   the server died during the abandoned hard stop: the runner now hard-stops such a part itself,
 *   and startup recovery ends processes of ended parts whose owner is dead;
 * - a completed shell part could lose its output when a busy event loop let the 100 ms drain
 *   timer fire before the pipes were read: with nothing left holding the pipes, the shell now
 *   waits for them to close.
 */

const ci = (process.env["CI"] ?? "") !== "" && process.env["CI"] !== "false"
const strict = process.env["VIGIL_CHAOS_STRICT"] !== "0"
const rounds = Math.max(1, Number(process.env["VIGIL_CHAOS_ROUNDS"] ?? 5))
const concurrency = Math.max(1, Number(process.env["VIGIL_CHAOS_WORKERS"] ?? (ci ? 10 : 14)))
const seed = Number(process.env["VIGIL_CHAOS_SEED"] ?? Math.floor(Math.random() * 2 ** 31))
/** How long the load runs before each kill. */
const roundMillis = ci ? [3_000, 7_000] as const : [4_000, 9_000] as const

const settings = {
  tool_timeout: "3 seconds",
  task_timeout: "10 seconds",
  idle_timeout: "4 seconds",
  watchdog_interval: "200 ms",
  instance_lease: "2 seconds",
  abort_grace: "500 ms",
  kill_grace: "200 ms"
}
const watchdogMillis = 200

/** Everything a test of this file started, torn down pass or fail. */
const started: Array<{ workspace: Workspace; server: ServerProcess; db?: Database; workload?: Workload }> = []

const teardown = async () => {
  for (const run of started.splice(0)) {
    await run.workload?.stop().catch(() => undefined)
    await run.server.retire()
    const partIds = new Set(run.db === undefined ? [] : (await run.db.parts().catch(() => [] as Array<PartRow>)).map((part) => part.id))
    // The server, then every process carrying the run marker or the marker of a part of this database.
    const killed = killEverything((id) => partIds.has(id))
    if (killed > 0) console.log(`chaos cleanup: killed ${killed} leftover process(es)`)
    await run.db?.close()
    if (process.env["VIGIL_CHAOS_KEEP"] === "1") console.log(`chaos: kept ${run.workspace.dir}`)
    else run.workspace.remove()
  }
}
afterEach(teardown, 60_000)
afterAll(teardown, 60_000)

const isKnownLeak = (leak: LeakedProcess) => !strict && leak.reason === "AbortIncomplete"

/**
 * The server's resident memory must stay under this through floods (megabytes of shell output)
 * and `/event` clients that never read: each holds a bounded buffer, and a flood only its head
 * and tail. Well above an idle server's (~150 MB under tsx), far below what one unbounded flood
 * used to take (+250 MB for 200 MB of output).
 */
const rssBoundBytes = 450 * 1024 * 1024
/** The server's V8 heap limit in this test. */
const heapCapMb = 256

const rssOf = (pid: number | undefined): number => {
  if (pid === undefined) return 0
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))
    return line === undefined ? 0 : Number(line.replace(/\D+/g, "")) * 1024
  } catch {
    return 0
  }
}

/** A client of `/event` that never reads a byte: what the server sends it piles up on the server's side. */
const stalledEventClient = (port: number): Socket => {
  const socket = connect(port, "127.0.0.1", () => {
    socket.write(`GET /event HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`)
    socket.pause()
  })
  socket.on("error", () => undefined)
  return socket
}

describe("chaos: SIGKILL under load, restart, clean stop, restart", () => {
  it(`keeps every guarantee through ${rounds} crash(es), a clean stop and a restart (seed ${seed})`, async () => {
    const random = seededRandom(seed)
    const provider = await InstantProvider.start()
    const workspace = makeWorkspace("vigil-e2e-chaos-", settings, { provider: provider.config })
    // A heap cap, as a deployment would set one: memory that is not bounded kills the server
    // (a restart the test did not cause fails it), and V8 collects before RSS passes the bound.
    const server = new ServerProcess(workspace, { NODE_OPTIONS: `--max-old-space-size=${heapCapMb}` })
    const run: (typeof started)[number] = { workspace, server }
    started.push(run)
    const stalled: Array<Socket> = []
    let peakRss = 0
    const rssSampler = setInterval(() => {
      peakRss = Math.max(peakRss, rssOf(server.pid))
    }, 200)
    const violations: Array<string> = []
    const known = { leaks: new Map<number, string>(), lostOutput: [] as Array<string> }
    const check = (phase: string, found: ReadonlyArray<string>) => {
      for (const violation of found) violations.push(`[${phase}] ${violation}`)
    }
    const checkLeaks = (phase: string, leaks: ReadonlyArray<LeakedProcess>) => {
      for (const leak of leaks) {
        if (isKnownLeak(leak)) known.leaks.set(leak.pid, leak.how)
        else violations.push(`[${phase}] leaked process ${leak.pid}: ${leak.how}`)
      }
    }
    const startedAt = Date.now()
    const timeline: Array<string> = []
    const mark = (what: string) => timeline.push(`${((Date.now() - startedAt) / 1000).toFixed(1)}s ${what}`)

    let health: Health = await server.start()
    mark(`started ${health.instance.id} on port ${server.port}`)
    const db = openDatabase(workspace.db)
    run.db = db
    const workload = new Workload({ url: () => server.url, random, concurrency, instantModel: "instant/fast" })
    run.workload = workload
    const seen = new Map<string, { output: string; sessionId: string }>()

    /** Reads every completed part over HTTP; one seen before with another output is a violation now. */
    const recordCompleted = async (phase: string) => {
      for (const [id, part] of await workload.completedParts()) {
        const before = seen.get(id)
        if (before === undefined) seen.set(id, part)
        else if (before.output !== part.output) {
          violations.push(`[${phase}] completed part ${id} changed output: ${JSON.stringify(before.output)} -> ${JSON.stringify(part.output)}`)
        }
      }
    }

    /**
     * Right after a (re)start answers /health, startup recovery has run: nothing of a previous
     * instance may still be pending/running or busy/waiting, and no process of its parts is left.
     */
    const checkRecovered = async (phase: string) => {
      const [parts, sessions] = [await db.parts(), await db.sessions()]
      check(phase, partsWithoutLiveOwner(parts, health.instance.id))
      const foreign = sessions.filter((session) => (session.status === "busy" || session.status === "waiting") && session.ownerId !== health.instance.id)
      if (foreign.length > 0) {
        check(phase, [`${foreign.length} session(s) busy/waiting, owned by a dead instance: ${foreign.map((s) => `${s.id} (${s.ownerId})`).join(", ")}`])
      }
      checkLeaks(phase, leakedProcesses(parts, { mayRun: (part) => part.ownerId === health.instance.id }))
    }

    workload.start()
    stalled.push(stalledEventClient(server.port))
    let kills = 0
    for (let round = 1; round <= rounds; round++) {
      await sleep(random.int(roundMillis[0], roundMillis[1]))
      await recordCompleted(`before kill ${round}`)
      // Only the test kills it: a server that died by itself (out of memory, a crash) is a violation.
      if (!server.running) violations.push(`[round ${round}] the server had exited by itself before the kill:\n${server.logTail(20)}`)
      workload.serverDown()
      if (server.running) await server.kill()
      kills++
      mark(`SIGKILL ${round} (${seen.size} completed parts recorded so far)`)
      await sleep(random.int(0, 500))
      health = await server.start()
      mark(`restart ${round}: ${health.instance.id}; recovery ended ${health.recovery.orphanedParts} part(s), killed ${health.recovery.processesKilled} process(es)`)
      await checkRecovered(`after restart ${round}`)
      stalled.push(stalledEventClient(server.port))
      workload.serverUp()
    }

    // The last stop is a clean one, with work still running: it must leave nothing running.
    await sleep(random.int(roundMillis[0], roundMillis[1]))
    await recordCompleted("before the clean stop")
    await workload.stop()
    const stopped = await server.stop()
    mark(`SIGTERM: exit ${stopped.code ?? stopped.signal} after ${stopped.tookMs} ms${stopped.forced ? " (forced)" : ""}`)
    if (stopped.code !== 0 || stopped.forced) {
      violations.push(`[clean stop] exit ${stopped.code ?? stopped.signal} after ${stopped.tookMs} ms${stopped.forced ? ", killed after the timeout" : ""}`)
    }
    {
      const [parts, sessions] = [await db.parts(), await db.sessions()]
      const running = parts.filter((part) => part.status === "pending" || part.status === "running")
      if (running.length > 0) violations.push(`[clean stop] ${running.length} part(s) left pending/running: ${running.map((p) => p.id).join(", ")}`)
      const active = sessions.filter((session) => session.status === "busy" || session.status === "waiting")
      if (active.length > 0) violations.push(`[clean stop] ${active.length} session(s) left busy/waiting: ${active.map((s) => s.id).join(", ")}`)
    }

    health = await server.start()
    mark(`final restart: ${health.instance.id}; recovery ended ${health.recovery.orphanedParts} part(s)`)
    await checkRecovered("after the final restart")

    // A rescued session can go on (guarantee 9): a few sessions a crash ended take a new prompt.
    const rescued = [...new Set((await db.parts())
      .filter((part) => reasonOf(part.error)?._tag === "OrphanedByCrash" && workload.sessions.has(part.sessionId))
      .map((part) => part.sessionId))].slice(0, 4)
    const goOn = new Workload({ url: () => server.url, random, concurrency: 0 })
    for (const [index, id] of rescued.entries()) {
      const echo = `went-on-${index}`
      const result = await goOn.goOn(id, echo)
      const ran = result.parts.find((part) => part.tool === "bash" && part.status === "completed" && part.output === `${echo}\n`)
      if (result.status !== "idle" || ran === undefined) {
        violations.push(`[go on] rescued session ${id} ended ${result.status} after a new prompt; its last bash part: ${
          JSON.stringify(result.parts.filter((part) => part.tool === "bash").at(-1) ?? null)
        }`)
      }
    }
    await goOn.stop()
    mark(`${rescued.length} rescued session(s) took a new prompt`)
    await sleep(watchdogMillis + 1_000)

    // The verdict, from the file and /proc.
    const [parts, sessions] = [await db.parts(), await db.sessions()]
    const events = await db.events(["recovery.orphans_rescued", "watchdog.orphans_rescued", "watchdog.stuck_part", "idle.cancelled"])
    check("final", partsWithoutLiveOwner(parts, health.instance.id))
    check("final", sessionsWithoutWork(sessions, parts, health.instance.id))
    check("final", completedRewritten(seen, parts))
    const shell = wrongShellResults(parts, new Map([...workload.commands, ...goOn.commands]))
    check("final", shell.violations)
    check("final", wrongFloodResults(parts, workload.floods, outputCapBytes))
    clearInterval(rssSampler)
    for (const socket of stalled) socket.destroy()
    await provider.close()
    if (peakRss > rssBoundBytes) {
      violations.push(`[memory] the server's RSS peaked at ${(peakRss / 2 ** 20).toFixed(0)} MB, over the ${rssBoundBytes / 2 ** 20} MB bound`)
    }
    if (strict) check("final", shell.lostOutput)
    else known.lostOutput.push(...shell.lostOutput)
    const leaks = leakedProcesses(parts)
    checkLeaks("final", leaks)
    check("final", unexplainedSupervision(parts, sessions, events))
    check("workload", [...workload.problems, ...goOn.problems])

    const { byReason, completed } = tally(parts)
    const reasons = [...byReason].sort(([a], [b]) => a.localeCompare(b)).map(([tag, n]) => `${tag} ${n}`).join(", ")
    console.log([
      `chaos (seed ${seed}, ${concurrency} workers, ${((Date.now() - startedAt) / 1000).toFixed(1)} s):`,
      `  kills ${kills} + 1 clean stop; server starts ${server.starts}`,
      `  sessions ${sessions.length} (${workload.sessions.size} made by the workers, the rest sub-agents); scenarios ${workload.stats.scenarios}`,
      `  parts ${parts.length}: completed ${completed}; errors: ${reasons}`,
      `  recovered (OrphanedByCrash) ${byReason.get("OrphanedByCrash") ?? 0}; completed parts recorded before kills ${seen.size}`,
      `  requests ${workload.stats.requests} (${workload.stats.lostRequests} lost to kills); replies ${workload.stats.replies}; aborts ${workload.stats.aborts}`,
      `  hostile: ${workload.floods.size} floods, ${stalled.length} stalled /event clients, ${provider.requests} instant-provider requests; peak RSS ${
        (peakRss / 2 ** 20).toFixed(0)
      } MB (bound ${rssBoundBytes / 2 ** 20} MB, heap cap ${heapCapMb} MB)`,
      `  supervision events ${events.length}; leaked processes at the end ${leaks.length}; violations ${violations.length}`,
      `  known findings: ${known.leaks.size} process(es) of AbortIncomplete parts left running, ${known.lostOutput.length} completed part(s) with lost output`,
      ...[...known.leaks].map(([pid, how]) => `    leak ${pid}: ${how}`),
      ...known.lostOutput.map((line) => `    lost output: ${line}`),
      ...timeline.map((line) => `  ${line}`)
    ].join("\n"))

    // `pnpm bench` runs the long form and reads its verdict here.
    const summary = process.env["VIGIL_CHAOS_SUMMARY"]
    if (summary !== undefined) {
      writeFileSync(summary, JSON.stringify({
        seed,
        kills,
        seconds: (Date.now() - startedAt) / 1000,
        parts: parts.length,
        completed,
        recovered: byReason.get("OrphanedByCrash") ?? 0,
        floods: workload.floods.size,
        stalledClients: stalled.length,
        instantRequests: provider.requests,
        peakRssBytes: peakRss,
        leaked: leaks.length,
        violations
      }))
    }

    // The run must have exercised what it checks, or its passing proves nothing.
    assert.strictEqual(kills, rounds)
    assert.isAbove(seen.size, 0, "no completed part was recorded before a kill")
    assert.isAbove(byReason.get("OrphanedByCrash") ?? 0, 0, "no kill caught running work: nothing was recovered")
    assert.deepStrictEqual(violations, [], `${violations.length} violation(s):\n${violations.join("\n")}\n\nserver log (tail):\n${server.logTail(40)}`)
  }, 120_000 + rounds * 30_000)
})

describe("chaos: two instances on one file, one SIGKILLed under load", () => {
  it(`the survivor rescues the dead one's work: nothing lost, stuck or leaked, and no session runs two turns (seed ${seed})`, async () => {
    const random = seededRandom(seed)
    const workspace = makeWorkspace("vigil-e2e-chaos2-", settings)
    const a = new ServerProcess(workspace)
    const b = new ServerProcess(workspace)
    const runA: (typeof started)[number] = { workspace, server: a }
    started.push(runA, { workspace, server: b })
    const violations: Array<string> = []
    const check = (phase: string, found: ReadonlyArray<string>) => {
      for (const violation of found) violations.push(`[${phase}] ${violation}`)
    }
    const checkLeaks = (phase: string, leaks: ReadonlyArray<LeakedProcess>) => {
      for (const leak of leaks) if (!isKnownLeak(leak)) violations.push(`[${phase}] leaked process ${leak.pid}: ${leak.how}`)
    }
    const crossAborts: Array<number> = []
    const [healthA, healthB] = await Promise.all([a.start(), b.start()])
    const [idA, idB] = [healthA.instance.id, healthB.instance.id]
    const db = openDatabase(workspace.db)
    runA.db = db
    // Every request goes to either live instance: prompts, aborts and replies land on the owner or not.
    let live: ReadonlyArray<ServerProcess> = [a, b]
    // Many aborts: half of them reach an instance that does not run the turn.
    const workload = new Workload({ url: () => live[random.int(0, live.length - 1)]!.url, random, concurrency, abortChance: 0.4 })
    runA.workload = workload
    workload.start()

    await sleep(random.int(roundMillis[0], roundMillis[1]))
    // Under the load, aborts of A's shells sent to B: each ends the shell on A, and meanwhile a second
    // turn is refused on either instance.
    for (let i = 0; i < 3; i++) {
      const session = (await sendJson(a.url, "POST", "/session", { title: `aborted at B #${i}` })).json as { id: string }
      const accepted = await sendJson(a.url, "POST", `/session/${session.id}/tool`, { tool: "bash", input: { command: `sleep 300; echo never-${i}` } })
      assert.strictEqual(accepted.status, 202, accepted.text)
      const partId = (accepted.json as { partId: string }).partId
      const running = await eventually("the shell to run on A", 30_000, async () => {
        const part = (await sendJson(a.url, "GET", `/part/${partId}`)).json as { pid: number | null; procStart: string | null }
        return part.pid === null ? undefined : part
      })
      for (const server of [a, b]) {
        const second = await sendJson(server.url, "POST", `/session/${session.id}/prompt`, { text: JSON.stringify([{ text: "a second turn" }]) })
        if (second.status !== 409) violations.push(`[cross abort] a second turn at ${server === a ? "A" : "B"} answered ${second.status}`)
      }
      const startedAt = Date.now()
      const aborted = await sendJson(b.url, "POST", `/session/${session.id}/abort`)
      const answeredAt = Date.now()
      const status = (aborted.json as { status?: string } | undefined)?.status
      await eventually(`shell ${running.pid} to be gone`, 10_000, async () => {
        const stat = readStat(running.pid!)
        return isLive(stat) && stat.startTime === running.procStart ? undefined : true
      }).catch(() => violations.push(`[cross abort] the shell ${running.pid} on A still runs 10 s after the abort at B`))
      const goneMs = Date.now() - startedAt
      // Measured from the answer, which the load may delay: the owner ended the shell before B answered.
      // (tool_timeout would end it 3 s in anyway, so that is no proof.)
      if (aborted.status !== 200 || status !== "cancelled" || Date.now() - answeredAt > 1_000) {
        violations.push(`[cross abort] abort at B answered ${aborted.status} (${status}) after ${answeredAt - startedAt} ms; A's shell gone ${
          Date.now() - answeredAt
        } ms after that`)
      }
      crossAborts.push(goneMs)
    }
    const seen = await workload.completedParts()
    // Mid-tool: A has a shell of its own running when it dies (besides whatever the load runs there).
    const mine = (await sendJson(a.url, "POST", "/session", { title: "A's shell at the kill" })).json as { id: string }
    const tool = await sendJson(a.url, "POST", `/session/${mine.id}/tool`, { tool: "bash", input: { command: "sleep 300" } })
    assert.strictEqual(tool.status, 202, tool.text)
    const shell = await eventually("A's shell to run", 30_000, async () => {
      const part = (await sendJson(a.url, "GET", `/part/${(tool.json as { partId: string }).partId}`)).json as { pid: number | null; procStart: string | null }
      return part.pid === null ? undefined : part
    })
    // Read just before the kill: the survivor may rescue them within milliseconds after it.
    const atKill = (await db.parts()).filter((part) => part.ownerId === idA && (part.status === "running" || part.status === "pending"))
    live = [b]
    await a.kill()
    const killedAt = Date.now()

    // The survivor rescues within its watchdog's reach (a peer's pid on this host is checked at once).
    await eventually("B to rescue every part and session of A", 20_000, async () => {
      const [parts, sessions] = [await db.parts(), await db.sessions()]
      const left = parts.filter((part) => part.ownerId === idA && (part.status === "running" || part.status === "pending")).length +
        sessions.filter((session) => session.ownerId === idA && (session.status === "busy" || session.status === "waiting")).length
      return left === 0 ? true : undefined
    })
    const rescueMs = Date.now() - killedAt
    await sleep(watchdogMillis * 3)
    {
      const stat = readStat(shell.pid!)
      if (isLive(stat) && stat.startTime === shell.procStart) violations.push(`[after the rescue] A's shell ${shell.pid} still runs`)
      const parts = await db.parts()
      checkLeaks("after the rescue", leakedProcesses(parts, { mayRun: (part) => part.ownerId === idB }))
      // The rescue's event is appended after the parts and processes it ended: polled, as a loaded
      // machine can put seconds between the two.
      const rescuesOfA = async () =>
        (await db.events(["watchdog.orphans_rescued"])).filter((event) =>
          event.data !== null && (JSON.parse(event.data) as { ownerId?: string }).ownerId === idA
        )
      const rescues = await eventually("B's rescue event", 20_000, async () => {
        const found = await rescuesOfA()
        return found.length > 0 ? found : undefined
      }).catch(() => rescuesOfA())
      if (rescues.length === 0 || rescues.some((event) => event.instanceId !== idB)) {
        violations.push(`[after the rescue] A's work was not rescued by B alone: ${JSON.stringify(rescues.map((event) => event.instanceId))}`)
      }
      for (const part of atKill) {
        const row = parts.find((each) => each.id === part.id)
        // Read just before the kill, a part may still end by itself before A dies (seen on a loaded
        // machine): A wrote that while alive, before `killedAt`. What matters is that no rescued
        // part is rewritten (`completedRewritten`, below) and none is left running.
        if (row?.status === "completed" && row.endedAt !== null && row.endedAt <= killedAt) continue
        const tag = reasonOf(row?.error ?? null)?._tag
        if (row?.status === "completed" || tag === undefined) violations.push(`[after the rescue] ${part.id} of A ended ${row?.status} ${tag}`)
      }
    }

    // The survivor goes on under load, then the rescued sessions take a new prompt on it.
    await sleep(random.int(roundMillis[0], roundMillis[1]))
    await workload.stop()
    const rescued = [...new Set((await db.parts())
      .filter((part) => reasonOf(part.error)?._tag === "OrphanedByCrash" && workload.sessions.has(part.sessionId))
      .map((part) => part.sessionId))].slice(0, 4)
    const goOn = new Workload({ url: () => b.url, random, concurrency: 0 })
    for (const [index, id] of rescued.entries()) {
      const result = await goOn.goOn(id, `two-went-on-${index}`)
      if (result.status !== "idle") violations.push(`[go on] rescued session ${id} ended ${result.status} after a new prompt on B`)
    }
    await goOn.stop()
    const stopped = await b.stop()
    if (stopped.code !== 0 || stopped.forced) violations.push(`[clean stop] B exited ${stopped.code ?? stopped.signal} after ${stopped.tookMs} ms`)

    const [parts, sessions] = [await db.parts(), await db.sessions()]
    const events = await db.events(["recovery.orphans_rescued", "watchdog.orphans_rescued", "watchdog.stuck_part", "idle.cancelled"])
    const stuck = parts.filter((part) => part.status === "pending" || part.status === "running")
    if (stuck.length > 0) violations.push(`[final] ${stuck.length} part(s) left pending/running: ${stuck.map((part) => part.id).join(", ")}`)
    const busy = sessions.filter((session) => session.status === "busy" || session.status === "waiting")
    if (busy.length > 0) violations.push(`[final] ${busy.length} session(s) left busy/waiting: ${busy.map((session) => session.id).join(", ")}`)
    check("final", completedRewritten(seen, parts))
    check("final", wrongShellResults(parts, new Map([...workload.commands, ...goOn.commands])).violations)
    checkLeaks("final", leakedProcesses(parts))
    check("final", unexplainedSupervision(parts, sessions, events))
    check("workload", [...workload.problems, ...goOn.problems])
    // Never two turns: no model step of a session ran on one instance while a turn of the other held it,
    // i.e. within a session, the owners of its model steps change only across a prompt.
    for (const session of sessions) {
      const own = parts.filter((part) => part.sessionId === session.id && (part.kind === "model" || part.kind === "prompt"))
      let owner: string | undefined
      for (const part of own) {
        if (part.kind === "prompt") owner = part.ownerId
        else if (owner !== undefined && part.ownerId !== owner) {
          violations.push(`[final] session ${session.id}: a model step of ${part.ownerId} inside a turn of ${owner} (${part.id})`)
        }
      }
    }
    const statuses = [...workload.stats.statuses].sort(([x], [y]) => x - y).map(([status, n]) => `${status}×${n}`).join(" ")
    console.log(
      `chaos, two instances (seed ${seed}): ${parts.length} parts, ${sessions.length} sessions; A SIGKILLed with ` +
        `${atKill.length} part(s) running, all rescued by B in ${rescueMs} ms; answers ${statuses}; aborts ${workload.stats.aborts} (${workload.stats.shellsAborted} shells); A's shells aborted at B gone in ${crossAborts.join("/")} ms; ${rescued.length} rescued session(s) went on`
    )
    assert.isAbove(atKill.length, 0, "A had no work running when it was killed")
    assert.isAbove(seen.size, 0)
    assert.deepStrictEqual(violations, [], `${violations.length} violation(s):\n${violations.join("\n")}\n\nserver log (tail):\n${b.logTail(40)}`)
  }, 180_000)
})

describe("chaos, known findings reproduced on their own", () => {
  const stubborn = "trap '' TERM; sleep 30; echo never"

  /** One server on a fresh file with these settings, a session, and a TERM-ignoring tool that runs into its deadline. */
  const startStubborn = async (experimental: Record<string, string>) => {
    const workspace = makeWorkspace("vigil-e2e-known-", experimental)
    const server = new ServerProcess(workspace)
    const run: (typeof started)[number] = { workspace, server }
    started.push(run)
    await server.start()
    const db = openDatabase(workspace.db)
    run.db = db
    const session = (await sendJson(server.url, "POST", "/session", {})).json as { id: string }
    const accepted = await sendJson(server.url, "POST", `/session/${session.id}/tool`, { tool: "bash", input: { command: stubborn } })
    assert.strictEqual(accepted.status, 202, accepted.text)
    const partId = (accepted.json as { partId: string }).partId
    const ended = await eventually("the stubborn part to end", 20_000, async () => {
      const part = (await sendJson(server.url, "GET", `/part/${partId}`)).json as { status: string; pid: number | null; procStart: string | null; error: unknown }
      return part.status === "error" ? part : undefined
    })
    return { server, db, partId, ended }
  }

  // runtime/src/agent/Tools.ts offers tools/src/Bash.ts `BashTool`, made once with the shell's default
  // kill grace (2 s): `experimental.kill_grace` only reaches recovery and the watchdog. With
  // `abort_grace` 500 ms, a TERM-ignoring tool's hard stop cannot finish within the abort grace:
  // it ends AbortIncomplete, and its SIGKILL comes 2 s after SIGTERM, from an abandoned fiber.
  it("found by chaos: the shell's hard stop uses experimental.kill_grace (SIGKILL 200 ms after SIGTERM)", async () => {
    const { db, ended, partId } = await startStubborn({ tool_timeout: "1 second", abort_grace: "500 ms", kill_grace: "200 ms" })
    const steps = await eventually("the hard stop's SIGKILL", 10_000, async () => {
      const rows = (await db.events(["shell.term", "shell.kill"])).filter((event) => event.partId === partId)
      return rows.some((event) => event.type === "shell.kill") && rows.some((event) => event.type === "shell.term") ? rows : undefined
    })
    const at = (type: string) => steps.find((event) => event.type === type)!.at
    assert.isBelow(at("shell.kill") - at("shell.term"), 1_000, "SIGKILL came long after the configured kill grace")
    assert.strictEqual(reasonOf(JSON.stringify(ended.error))?._tag, "ToolTimeout", `the part ended ${JSON.stringify(ended.error)}`)
  }, 60_000)

  // runtime/src/supervision/ToolRunner.ts makes a part terminal (AbortIncomplete) while its hard stop still
  // runs in an abandoned fiber; runtime/src/recovery/Recovery.ts only ends the processes of pending/running
  // parts. A server that dies (crash or clean stop) before that hard stop finished leaves the
  // process tree running, and no later start ever looks at it (guarantee 5).
  it("found by chaos: a crash during an abandoned hard stop leaves no process behind after the restart", async () => {
    const { db, ended, server } = await startStubborn({ tool_timeout: "1 second", abort_grace: "500 ms", kill_grace: "3 seconds" })
    assert.strictEqual(reasonOf(JSON.stringify(ended.error))?._tag, "AbortIncomplete")
    await server.kill()
    await server.start()
    await sleep(1_000)
    const shell = ended.pid === null ? undefined : readStat(ended.pid)
    const alive = isLive(shell) && shell.startTime === ended.procStart
    const leaks = leakedProcesses(await db.parts())
    assert.isFalse(alive, `the shell ${ended.pid} of the AbortIncomplete part still runs after the restart`)
    assert.deepStrictEqual(leaks.map((leak) => leak.how), [])
  }, 60_000)
})
