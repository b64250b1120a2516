import { assert, describe, it } from "@effect/vitest"
import type { SessionId } from "@vigil/domain"
import { Instance, InstanceId, OrphanedByCrash, WatchdogStuck } from "@vigil/domain"
import { SqlClient } from "@effect/sql"
import { EventLog, InstanceRepo, PartRepo, SessionRepo } from "@vigil/store"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Clock, Duration, Effect, Fiber, Layer, Option, TestClock } from "effect"
import { InstanceLease } from "../src/recovery/InstanceLease.js"
import { SessionService } from "../src/agent/SessionService.js"
import { Watchdog } from "../src/supervision/Watchdog.js"
import { allTestTools, getPart, runningPart, testRuntime } from "./support.js"

const script = (...steps: ReadonlyArray<unknown>) => JSON.stringify(steps)

const runtime = (options: Parameters<typeof testRuntime>[0] = {}) =>
  testRuntime({
    tools: allTestTools,
    ...options,
    settings: {
      watchdogInterval: Option.some(Duration.millis(500)),
      toolTimeout: Option.some(Duration.seconds(1)),
      abortGrace: Duration.seconds(1),
      ...options.settings
    }
  })

/** A running leaf part of this instance whose fiber is gone (a lost supervisor): the watchdog's case. */
const lostLeaf = (sessionId: SessionId, deadlineIn: number) =>
  Effect.gen(function*() {
    const lease = yield* InstanceLease
    const partId = yield* runningPart({ sessionId, tool: "bash", input: { command: "sleep 300" }, ownerId: lease.id, deadlineIn })
    yield* (yield* SessionRepo).transition(sessionId, ["idle"], "busy", { at: yield* Clock.currentTimeMillis })
    return partId
  })

const events = (type: string) => EventLog.pipe(Effect.flatMap((log) => log.list({ type })))

describe("Watchdog", () => {
  it.effect("a stuck leaf: untouched at its threshold, force-errored within one interval past it, its session cancelled", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      const partId = yield* lostLeaf(session.id, 1_000)
      // threshold = its 1 s deadline + twice the 1 s abort grace
      yield* TestClock.adjust(3_000)
      assert.strictEqual((yield* getPart(partId)).status, "running")
      yield* TestClock.adjust(500)
      const part = yield* getPart(partId)
      assert.deepStrictEqual(part.error, new WatchdogStuck({ runningFor: 3_500, threshold: 3_000 }))
      const after = yield* sessions.get(session.id)
      assert.strictEqual(after.status, "cancelled")
      assert.deepStrictEqual(after.cancelReason, new WatchdogStuck({ runningFor: 3_500, threshold: 3_000 }))
      const logged = yield* events("watchdog.stuck_part")
      assert.strictEqual(logged.length, 1)
      assert.strictEqual(logged[0]!.partId, partId)
    }).pipe(Effect.provide(runtime())))

  it.effect("a task whose child stays active for 10× tool_timeout is never force-errored", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const root = yield* sessions.create()
      const child = script(...Array.from({ length: 20 }, () => ({ tool: "sleep", input: { ms: 500 } })), { text: "child done" })
      const fiber = yield* Effect.fork(sessions.runTurn(root.id, { text: script({ tool: "task", input: { prompt: child } }, { text: "root done" }) }))
      for (let i = 0; i < 24; i++) yield* TestClock.adjust(500)
      assert.deepStrictEqual(yield* Fiber.join(fiber), { _tag: "Completed", text: "root done" })
      const task = (yield* sessions.parts(root.id)).find((part) => part.tool === "task")!
      assert.strictEqual(task.status, "completed")
      assert.isAtLeast(task.endedAt! - task.startedAt!, 10_000)
      assert.strictEqual((yield* events("watchdog.stuck_part")).length, 0)
    }).pipe(Effect.provide(runtime())))

  it.effect("the stuck leaf of a grandchild is force-errored and the error reaches the grandparent", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const sql = yield* SqlClient.SqlClient
      const root = yield* sessions.create()
      const grandchild = script({ tool: "ask", input: { question: "anyone?" } }, { text: "never" })
      const child = script({ tool: "task", input: { prompt: grandchild } }, { text: "child done" })
      const fiber = yield* Effect.fork(sessions.runTurn(root.id, { text: script({ tool: "task", input: { prompt: child } }, { text: "root done" }) }))
      yield* TestClock.adjust(0)
      const all = yield* sessions.list()
      const leafSession = all.find((session) => session.status === "waiting")!
      const leaf = (yield* sessions.parts(leafSession.id)).find((part) => part.tool === "ask")!
      // Its supervisor's deadline is lost: the row says 100 ms, the fiber waits on task_timeout.
      yield* sql`UPDATE vigil_parts SET deadline_at = started_at + 100 WHERE id = ${leaf.id}`
      yield* TestClock.adjust(2_000)
      assert.strictEqual((yield* getPart(leaf.id)).status, "running", "not before its threshold")
      yield* TestClock.adjust(500)
      assert.strictEqual((yield* getPart(leaf.id)).error?._tag, "WatchdogStuck")
      assert.deepStrictEqual(yield* Fiber.join(fiber), { _tag: "Completed", text: "root done" })
      const middle = all.find((session) => session.parentId === root.id)!
      const middleTask = (yield* sessions.parts(middle.id)).find((part) => part.tool === "task")!
      assert.strictEqual(middleTask.error?._tag, "WatchdogStuck")
      const rootTask = (yield* sessions.parts(root.id)).find((part) => part.tool === "task")!
      assert.strictEqual(rootTask.status, "completed")
      assert.include(rootTask.output ?? "", "stopped by the watchdog")
      // No task on the way up was force-errored itself: only the leaf.
      const logged = yield* events("watchdog.stuck_part")
      assert.deepStrictEqual(logged.map((event) => event.partId), [leaf.id])
      assert.strictEqual((yield* sessions.get(leafSession.id)).status, "cancelled")
      assert.strictEqual((yield* sessions.get(root.id)).status, "idle")
    }).pipe(Effect.provide(runtime({ settings: { toolTimeout: Option.some(Duration.seconds(1)) } }))))

  it.effect("a task whose child session ended but which still runs past the grace is a stuck leaf", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const parts = yield* PartRepo
      const root = yield* sessions.create()
      const child = yield* sessions.create({ parentId: root.id })
      const partId = yield* lostLeaf(root.id, 60_000)
      const sql = yield* SqlClient.SqlClient
      yield* sql`UPDATE vigil_parts SET tool = 'task', child_session_id = ${child.id} WHERE id = ${partId}`
      // The child is at rest (idle) since t=0: the task has nothing left to wait for.
      yield* TestClock.adjust(5_000)
      assert.strictEqual((yield* getPart(partId)).status, "running")
      yield* TestClock.adjust(500)
      const part = Option.getOrThrow(yield* parts.get(partId))
      assert.deepStrictEqual(part.error, new WatchdogStuck({ runningFor: 5_500, threshold: 5_000 }))
    }).pipe(Effect.provide(runtime())))

  it.effect("a dead owner's work (lease expired, another host) is rescued within one interval, not before", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const instances = yield* InstanceRepo
      const parts = yield* PartRepo
      const repo = yield* SessionRepo
      const other = InstanceId.make("ins_other_host")
      yield* instances.register(new Instance({ id: other, pid: 42, host: "elsewhere", procStart: "1", startedAt: 0, heartbeatAt: 0, leaseMillis: 30_000, stoppedAt: null }))
      const session = yield* sessions.create()
      const partId = yield* lostLeaf(session.id, 600_000)
      const sql = yield* SqlClient.SqlClient
      yield* sql`UPDATE vigil_parts SET owner_id = ${other} WHERE id = ${partId}`
      yield* sql`UPDATE vigil_sessions SET owner_id = ${other} WHERE id = ${session.id}`
      yield* TestClock.adjust(30_000)
      assert.strictEqual((yield* getPart(partId)).status, "running")
      yield* TestClock.adjust(500)
      assert.deepStrictEqual((yield* getPart(partId)).error, new OrphanedByCrash({ ownerId: other }))
      assert.strictEqual(Option.getOrThrow(yield* repo.get(session.id)).status, "error")
      const logged = yield* events("watchdog.orphans_rescued")
      assert.strictEqual(logged.length, 1)
      assert.deepStrictEqual((logged[0]!.data as { cause: string }).cause, "lease-expired")
      assert.strictEqual((yield* parts.activeOwners()).length, 0)
    }).pipe(Effect.provide(runtime())))

  it.effect("a live peer's running part is never touched", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const instances = yield* InstanceRepo
      const peer = InstanceId.make("ins_live_peer")
      yield* instances.register(new Instance({ id: peer, pid: 43, host: "elsewhere", procStart: "1", startedAt: 0, heartbeatAt: 0, leaseMillis: 30_000, stoppedAt: null }))
      const session = yield* sessions.create()
      const partId = yield* lostLeaf(session.id, 1_000)
      const sql = yield* SqlClient.SqlClient
      yield* sql`UPDATE vigil_parts SET owner_id = ${peer} WHERE id = ${partId}`
      for (let t = 0; t < 20; t++) {
        yield* TestClock.adjust(1_000)
        yield* instances.heartbeat(peer, yield* Clock.currentTimeMillis)
      }
      assert.strictEqual((yield* getPart(partId)).status, "running")
    }).pipe(Effect.provide(runtime())))

  it.effect("a scan that fails once does not stop the next", () => {
    let calls = 0
    const flaky = (file: string) =>
      Layer.effect(
        PartRepo,
        PartRepo.pipe(Effect.map((real) =>
          PartRepo.make({
            ...real,
            activeOwners: () => (calls++ === 1 ? Effect.die(new Error("disk on fire")) : real.activeOwners())
          })
        ))
      ).pipe(Layer.provideMerge(SqliteStoreLive(file))) as unknown as ReturnType<typeof SqliteStoreLive>
    return Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      const partId = yield* lostLeaf(session.id, 100)
      yield* TestClock.adjust(500)
      assert.isAtLeast(calls, 2)
      for (let i = 0; i < 6; i++) yield* TestClock.adjust(500)
      assert.strictEqual((yield* getPart(partId)).error?._tag, "WatchdogStuck")
      assert.isDefined(Option.getOrUndefined(yield* (yield* Watchdog).lastScan))
    }).pipe(Effect.provide(runtime({ store: flaky })))
  })

  it.effect("with watchdog_interval off, nothing scans", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      const partId = yield* lostLeaf(session.id, 100)
      yield* TestClock.adjust(600_000)
      assert.strictEqual((yield* getPart(partId)).status, "running")
      assert.isTrue(Option.isNone(yield* (yield* Watchdog).lastScan))
    }).pipe(Effect.provide(runtime({ settings: { watchdogInterval: Option.none() } }))))
})
