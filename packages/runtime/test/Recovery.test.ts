import { assert, describe, it } from "@effect/vitest"
import { OrphanedByCrash, PartId, SessionId } from "@vigil/domain"
import { EventLog, PartRepo } from "@vigil/store"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Containment } from "@vigil/tools"
import { Duration, Effect, Option } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach } from "vitest"
import { SessionService } from "../src/agent/SessionService.js"
import { RecoveryComplete } from "../src/recovery/StartupRecovery.js"
import * as Vigil from "../src/Vigil.js"
import { isAlive, killHard, startInstance, waitUntil } from "./processes.js"
import { tempDb } from "./support.js"

interface ToolReady {
  readonly instanceId: string
  readonly pid: number
  readonly completedPartId: string
  readonly runningPartId: string
  readonly sessionId: string
  readonly shellPid: number
}

/** This test process as a restarted server on the same file, with the live OS port. */
const restarted = (file: string) =>
  Vigil.layerWithStore(SqliteStoreLive(file), {
    settings: { watchdogInterval: Option.none(), killGrace: Duration.millis(300) }
  })

/**
 * Escapees drop every marker, the test run's too: their pids (and the groups the tests made) are
 * kept so a failed test still ends them and leaves no group behind.
 */
const escapees = new Set<number>()
const groups = new Set<string>()
afterEach(async () => {
  for (const pid of escapees) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // gone
    }
  }
  escapees.clear()
  for (const key of groups) {
    const group = Containment.groupOf(key)
    if (group !== undefined) await waitUntil(() => Containment.removeGroup(group), 5_000, `the group ${key} to empty`).catch(() => undefined)
  }
  groups.clear()
})

// In CI (root, cgroupfs mounted) the cgroup path is the one under test: a fallback there fails, not skips.
const cgroupsExpected = ["true", "1"].includes((process.env["CI"] ?? "").toLowerCase()) && process.getuid?.() === 0
const contained = Containment.current().mechanism !== "marker"

const partOf = (id: string) => PartRepo.pipe(Effect.flatMap((parts) => parts.get(PartId.make(id))), Effect.map(Option.getOrThrow))

describe("startup recovery (real processes)", () => {
  it.live("a server killed with SIGKILL mid-tool: the restart ends its part, its shell, and keeps what completed", () =>
    Effect.gen(function*() {
      const file = tempDb()
      const crashed = yield* Effect.promise(() => startInstance<ToolReady>(file, "tool"))
      const { ready } = crashed
      yield* Effect.promise(() => killHard(crashed.child))
      // The shell outlives its server: this is the orphan recovery must end.
      assert.isTrue(isAlive(ready.shellPid), "the shell should survive its server's SIGKILL")

      yield* Effect.gen(function*() {
        const { report } = yield* RecoveryComplete
        // Recovery ran in the layer's acquisition: the first session call already sees its result.
        const sessions = yield* SessionService
        const session = yield* sessions.get(SessionId.make(ready.sessionId))
        assert.strictEqual(session.status, "error")
        assert.deepStrictEqual(session.cancelReason, new OrphanedByCrash({ ownerId: ready.instanceId }))
        assert.strictEqual(report.orphanedParts, 1)
        assert.deepStrictEqual(report.deadOwners.map((owner) => [owner.id as string, owner.cause]), [[ready.instanceId, "process-gone"]])
        assert.deepStrictEqual(report.partIds as ReadonlyArray<string>, [ready.runningPartId])
        assert.isAtLeast(report.processesKilled, 1)
        const orphan = yield* partOf(ready.runningPartId)
        assert.strictEqual(orphan.status, "error")
        assert.deepStrictEqual(orphan.error, new OrphanedByCrash({ ownerId: ready.instanceId }))
        const completed = yield* partOf(ready.completedPartId)
        assert.strictEqual(completed.status, "completed")
        assert.strictEqual(completed.output, "done\n")
        assert.isFalse(isAlive(ready.shellPid), "the orphaned shell is gone")
        const logged = yield* (yield* EventLog).list({ sessionId: SessionId.make(ready.sessionId) })
        assert.isTrue(logged.some((event) => event.type === "recovery.processes_killed"))
        // A rescued session takes a new prompt.
        const again = yield* sessions.runTurn(session.id, { text: JSON.stringify([{ text: "back" }]) })
        assert.deepStrictEqual(again, { _tag: "Completed", text: "back" })
        console.log(`recovery after SIGKILL: ${report.tookMs} ms, ${report.processesKilled} process(es) ended`)
      }).pipe(Effect.provide(restarted(file)))
    }), 60_000)

  it.live.skipIf(!contained && !cgroupsExpected)("a crash does not free a tool's escapee that dropped the marker: the restart's recovery ends it", () =>
    Effect.gen(function*() {
      const file = tempDb()
      const pidFile = join(mkdtempSync(join(tmpdir(), "vigil-escapee-")), "pid")
      // Leaves session, group, ancestry and every marker (the part's and the test run's), and ignores SIGTERM.
      const command = `setsid -f env -u VIGIL_PART_ID -u VIGIL_TEST_RUN /bin/sh -c 'trap "" TERM; echo $$ > "$0"; exec sleep 600' '${pidFile}'; sleep 300`
      const crashed = yield* Effect.promise(() => startInstance<ToolReady>(file, "tool", { TOOL_COMMAND: command }))
      const { ready } = crashed
      yield* Effect.promise(() => waitUntil(() => existsSync(pidFile) && /^\d+\n$/.test(readFileSync(pidFile, "utf8")), 10_000, "the escapee's pid"))
      const escapee = Number(readFileSync(pidFile, "utf8").trim())
      escapees.add(escapee)
      yield* Effect.promise(() => killHard(crashed.child))
      assert.isTrue(isAlive(escapee), "the escapee should survive its server's SIGKILL")
      // None under the marker fallback: then the escapee is out of reach, and this test fails below.
      const group = Containment.groupOf(ready.runningPartId)
      groups.add(ready.runningPartId)
      const groupOutlivedServer = group !== undefined && existsSync(group.path)

      yield* Effect.gen(function*() {
        const { report } = yield* RecoveryComplete
        assert.deepStrictEqual(report.partIds as ReadonlyArray<string>, [ready.runningPartId])
        assert.isFalse(isAlive(escapee), "recovery ended the escapee")
        assert.isFalse(isAlive(ready.shellPid), "and the shell")
        assert.isTrue(groupOutlivedServer, "the part's group outlived the server")
        assert.isFalse(existsSync(group!.path), "and recovery removed the emptied group")
        const killed = (yield* (yield* EventLog).list({ type: "recovery.processes_killed" }))
          .filter((event) => event.partId === ready.runningPartId)
          .flatMap((event) => (event.data as { pids: ReadonlyArray<number> }).pids)
        assert.include(killed, escapee)
        console.log(`recovery ended a marker-less escapee (${Containment.current().mechanism}) in ${report.tookMs} ms`)
      }).pipe(Effect.provide(restarted(file)))
    }), 60_000)

  it.live.skipIf(!contained && !cgroupsExpected)("a group left for an ended part of a dead owner is emptied and removed; another database's group is not touched", () =>
    Effect.gen(function*() {
      const file = tempDb()
      const crashed = yield* Effect.promise(() => startInstance<ToolReady>(file, "tool"))
      const { ready } = crashed
      // What a hard stop cut short by the crash leaves: a marker-less process in the group of a
      // part that already completed. And a group this database knows nothing of (a peer's, on
      // another database on this host): recovery cannot judge it, so it must leave it alone.
      const inGroup = (key: string) => {
        const command = Containment.spawnCommand(key, "/bin/sh", ["-c", "exec sleep 600"])
        groups.add(key)
        const child = spawn(command.file, [...command.args], { stdio: "ignore", detached: true, env: {} })
        escapees.add(child.pid!)
        return { pid: child.pid!, group: command.group! }
      }
      const leftover = inGroup(ready.completedPartId)
      const stranger = inGroup(`prt_not_in_this_db_${Math.random().toString(36).slice(2)}`)
      yield* Effect.promise(() =>
        waitUntil(() => Containment.membersOf(leftover.group).has(leftover.pid) && Containment.membersOf(stranger.group).has(stranger.pid), 10_000, "both in their groups")
      )
      yield* Effect.promise(() => killHard(crashed.child))

      yield* Effect.gen(function*() {
        const { report } = yield* RecoveryComplete
        assert.isFalse(isAlive(leftover.pid), "the ended part's leftover is gone")
        assert.isFalse(existsSync(leftover.group.path), "and its group removed")
        assert.isTrue(isAlive(stranger.pid), "a part this database does not know is not touched")
        assert.isTrue(existsSync(stranger.group.path))
        const completed = yield* partOf(ready.completedPartId)
        assert.strictEqual(completed.status, "completed", "a completed part stays completed")
        const killed = (yield* (yield* EventLog).list({ type: "recovery.processes_killed" }))
          .filter((event) => event.partId === ready.completedPartId)
        assert.strictEqual(killed.length, 1)
        assert.include((killed[0]!.data as { pids: ReadonlyArray<number> }).pids, leftover.pid)
        assert.isAtLeast(report.processesKilled, 2)
      }).pipe(Effect.provide(restarted(file)))
    }), 60_000)

  it.live("two processes on one file: a restart never touches the other's running part; a kill is rescued by the other", () =>
    Effect.gen(function*() {
      const file = tempDb()
      const a = yield* Effect.promise(() => startInstance<ToolReady>(file, "tool"))
      const b = yield* Effect.promise(() => startInstance<ToolReady>(file, "tool"))
      // Restart B: its orphan is rescued (by A's watchdog, which sees B's pid gone, or by B's own
      // restart, whichever comes first), and A's live work is not touched.
      yield* Effect.promise(() => killHard(b.child))
      const b2 = yield* Effect.promise(() => startInstance<{ instanceId: string }>(file, "idle"))
      const check = <A>(effect: Effect.Effect<A, never, PartRepo | EventLog>) =>
        Effect.runPromise(effect.pipe(Effect.provide(SqliteStoreLive(file))))
      yield* Effect.promise(() =>
        waitUntil(async () => (await check(partOf(b.ready.runningPartId))).status === "error", 10_000, "B's orphan to be rescued")
      )
      assert.deepStrictEqual((yield* Effect.promise(() => check(partOf(b.ready.runningPartId)))).error, new OrphanedByCrash({ ownerId: b.ready.instanceId }))
      yield* Effect.promise(() => waitUntil(() => !isAlive(b.ready.shellPid), 5_000, "B's shell to be ended"))
      const aPart = yield* Effect.promise(() => check(partOf(a.ready.runningPartId)))
      assert.strictEqual(aPart.status, "running")
      assert.isTrue(isAlive(a.ready.shellPid))
      // Kill A: B2's watchdog rescues A's orphan (same host: the pid is gone, no lease to wait out).
      yield* Effect.promise(() => killHard(a.child))
      const took = yield* Effect.promise(() =>
        waitUntil(async () => (await check(partOf(a.ready.runningPartId))).status === "error", 10_000, "A's orphan to be rescued")
      )
      const rescued = yield* Effect.promise(() => check(partOf(a.ready.runningPartId)))
      assert.deepStrictEqual(rescued.error, new OrphanedByCrash({ ownerId: a.ready.instanceId }))
      yield* Effect.promise(() => waitUntil(() => !isAlive(a.ready.shellPid), 5_000, "A's shell to be ended"))
      const completedA = yield* Effect.promise(() => check(partOf(a.ready.completedPartId)))
      assert.strictEqual(completedA.status, "completed")
      // The rescue records its event after it has ended the orphan's processes: polled, not read once
      // (on a loaded machine the shell may be gone a moment before the event is written).
      const rescuedA = () =>
        check(EventLog.pipe(Effect.flatMap((log) => log.list({ type: "watchdog.orphans_rescued" })))).then((events) =>
          events.some((event) => (event.data as { ownerId: string }).ownerId === a.ready.instanceId)
        )
      yield* Effect.promise(() => waitUntil(rescuedA, 10_000, "the rescue of A's orphan in the event log"))
      console.log(`a live peer rescued a killed instance's orphan in ${took} ms`)
      yield* Effect.promise(() => killHard(b2.child))
    }), 90_000)
})
