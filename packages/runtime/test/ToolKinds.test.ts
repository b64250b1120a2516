import { assert, describe, it } from "@effect/vitest"
import { makeInstanceId, makeSessionId, Session, WatchdogStuck } from "@vigil/domain"
import { SessionRepo } from "@vigil/store"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import type { AnyTool } from "@vigil/tools"
import { partMarkerName, ProcessTable } from "@vigil/tools"
import { Clock, Duration, Effect, Option, Schema, TestClock } from "effect"
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { afterEach } from "vitest"
import { InstanceLease } from "../src/recovery/InstanceLease.js"
import { Recovery } from "../src/recovery/Recovery.js"
import { SessionService } from "../src/agent/SessionService.js"
import { Tools } from "../src/agent/Tools.js"
import * as Vigil from "../src/Vigil.js"
import { getPart, runningPart, tempDb, testRuntime, testSettings } from "./support.js"

/**
 * A tool is supervised by what its definition says, never by its name: tools of names nothing
 * else knows, one that waits on a child session and one that owns processes, get `task`'s and
 * `bash`'s rules with no edit anywhere but their definitions.
 */
const delegate: AnyTool = {
  name: "delegate",
  description: "waits on a child session, as task does",
  input: Schema.Struct({}),
  waitsOn: "child-session",
  run: () => Effect.never
}

const spawner: AnyTool = {
  name: "spawner",
  description: "starts processes that carry the part's marker, as bash does",
  input: Schema.Struct({}),
  ownsProcesses: true,
  run: () => Effect.never
}

const children = new Set<ChildProcess>()
afterEach(() => {
  for (const child of children) child.kill("SIGKILL")
  children.clear()
})

describe("tool kinds from the definition", () => {
  it.effect("a new tool that waits on a child session is left alone while the child lives, and is stuck once it ended", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const repo = yield* SessionRepo
      const lease = yield* InstanceLease
      const root = yield* sessions.create()
      const child = yield* sessions.create({ parentId: root.id })
      const at = yield* Clock.currentTimeMillis
      yield* repo.transition(root.id, ["idle"], "busy", { at })
      yield* repo.transition(child.id, ["idle"], "busy", { at })
      // Its deadline row says 100 ms: as a leaf it would be stuck after 100 ms and twice the 1 s grace.
      const partId = yield* runningPart({ sessionId: root.id, tool: "delegate", ownerId: lease.id, deadlineIn: 100, childSessionId: child.id })
      for (let i = 0; i < 10; i++) yield* TestClock.adjust(500)
      assert.strictEqual((yield* getPart(partId)).status, "running", "untouched while its child is busy")
      // The child ends: past the task's end grace (5 s), the part is the stuck leaf.
      yield* repo.transition(child.id, ["busy"], "idle", { at: yield* Clock.currentTimeMillis })
      yield* TestClock.adjust(5_000)
      assert.strictEqual((yield* getPart(partId)).status, "running", "not within the grace")
      yield* TestClock.adjust(500)
      assert.deepStrictEqual((yield* getPart(partId)).error, new WatchdogStuck({ runningFor: 10_500, threshold: 5_000 }))
    }).pipe(Effect.provide(testRuntime({
      tools: [delegate],
      settings: { watchdogInterval: Option.some(Duration.millis(500)), toolTimeout: Option.some(Duration.seconds(1)) }
    }))))

  it.live("a new tool that owns processes: recovering its dead owner ends them by the part's marker, with no pid recorded", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionRepo
      const recovery = yield* Recovery
      // An owner with no instance row is dead; its part is on this host (where the marker is).
      const owner = makeInstanceId()
      const sessionId = makeSessionId()
      yield* sessions.insert(
        new Session({
          id: sessionId,
          parentId: null,
          parentPartId: null,
          title: "dead owner's",
          status: "busy",
          cancelReason: null,
          lastActivityAt: 0,
          ownerId: owner,
          createdAt: 0
        })
      )
      const partId = yield* runningPart({ sessionId, tool: "spawner", ownerId: owner, deadlineIn: 600_000 })
      const child = spawn("sleep", ["300"], { env: { ...process.env, [partMarkerName]: partId }, stdio: "ignore" })
      children.add(child)
      const pid = child.pid!
      // Recorded nowhere but in its environment: the marker is what finds it.
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 100)))
      assert.isTrue(yield* ProcessTable.isAlive(pid))
      // The watchdog's trigger: no pass over leftovers, so only the part's kind can lead to the process.
      const report = yield* recovery.recoverDeadOwners({ trigger: "watchdog" })
      assert.strictEqual(report.orphanedParts, 1)
      assert.strictEqual(report.processesKilled, 1)
      assert.isFalse(yield* ProcessTable.isAlive(pid), "the marked process outlived its part's recovery")
      assert.strictEqual((yield* getPart(partId)).error?._tag, "OrphanedByCrash")
    }).pipe(Effect.provide(Vigil.layerRecovery(SqliteStoreLive(tempDb()), { settings: testSettings(), tools: Tools.add(spawner) }))), 30_000)
})
