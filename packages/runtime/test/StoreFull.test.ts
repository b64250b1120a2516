import { assert, describe, it } from "@effect/vitest"
import { EventLog, PartRepo, SessionRepo } from "@vigil/store"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Effect, Exit, Fiber, Layer, Option, TestClock } from "effect"
import { PendingWrites } from "../src/supervision/PendingWrites.js"
import { RecoveryComplete } from "../src/recovery/StartupRecovery.js"
import { SessionService } from "../src/agent/SessionService.js"
import { allTestTools, getPart, tempDb, testRuntime } from "./support.js"

/** What better-sqlite3 throws on a full disk. */
const diskFull = () => Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" })

/**
 * The real store, whose writes are refused while `full.on` (as a full filesystem refuses them):
 * every part, session and event write dies, as the repositories turn an SqlError into a defect.
 */
const refusingStore = (full: { on: boolean }) => (file: string) => {
  const refuse = <A extends ReadonlyArray<unknown>, R, E>(write: (...args: A) => Effect.Effect<R, E>) => (...args: A) =>
    Effect.suspend(() => (full.on ? Effect.die(diskFull()) : write(...args)))
  const parts = Layer.effect(
    PartRepo,
    PartRepo.pipe(Effect.map((real) =>
      PartRepo.make({
        ...real,
        insert: refuse(real.insert),
        complete: refuse(real.complete),
        fail: refuse(real.fail),
        failMany: refuse(real.failMany),
        recordProcess: refuse(real.recordProcess),
        setChildSession: refuse(real.setChildSession)
      })
    ))
  )
  const sessions = Layer.effect(
    SessionRepo,
    SessionRepo.pipe(Effect.map((real) =>
      SessionRepo.make({
        ...real,
        insert: refuse(real.insert),
        transition: refuse(real.transition),
        transitionMany: refuse(real.transitionMany),
        touch: refuse(real.touch)
      })
    ))
  )
  const log = Layer.effect(EventLog, EventLog.pipe(Effect.map((real) => EventLog.make({ ...real, append: refuse(real.append) }))))
  return Layer.mergeAll(parts, sessions, log).pipe(Layer.provideMerge(SqliteStoreLive(file))) as unknown as ReturnType<typeof SqliteStoreLive>
}

const script = (...steps: ReadonlyArray<unknown>) => JSON.stringify(steps)

describe("a store that refuses writes (a full disk)", () => {
  it.effect("frees the session at once, keeps the outcome, shows degraded, and writes it all once the store takes writes", () => {
    const full = { on: false }
    return Effect.gen(function*() {
      const sessions = yield* SessionService
      const pending = yield* PendingWrites
      const session = yield* sessions.create()
      const { done, partId } = yield* sessions.runTool(session.id, { tool: "sleep", input: { ms: 1_000 } })
      const turn = yield* Effect.fork(done)
      yield* TestClock.adjust(0)
      full.on = true
      yield* TestClock.adjust(1_000)
      // The turn ended at once, with the outcome as it happened, although nothing could be written.
      const ended = yield* Fiber.poll(turn)
      assert.isTrue(Option.isSome(ended), "the turn ended without waiting for the store")
      assert.deepStrictEqual(Option.getOrUndefined(ended), Exit.succeed({ _tag: "Completed" as const, text: "slept 1000" }))
      assert.isFalse(yield* sessions.isTurnRunningHere(session.id))
      assert.strictEqual((yield* getPart(partId)).status, "running", "the store has not taken the end yet")
      const degraded = yield* pending.health
      assert.strictEqual(degraded.status, "degraded")
      assert.strictEqual(degraded.pendingWrites, 2, "the part's end and the session's")
      assert.include(degraded.lastError ?? "", "database or disk is full")
      // Retried with backoff while the store still refuses: nothing is lost, nothing is dropped.
      yield* TestClock.adjust(10_000)
      assert.strictEqual((yield* pending.health).pendingWrites, 2)
      // A new prompt is refused while the session's end is not written (its row still says busy).
      const refused = yield* Effect.flip(sessions.prompt(session.id, { text: script({ text: "x" }) }))
      assert.strictEqual(refused._tag, "SessionBusy")

      full.on = false
      yield* TestClock.adjust(30_000)
      const part = yield* getPart(partId)
      assert.strictEqual(part.status, "completed")
      assert.strictEqual(part.output, "slept 1000")
      assert.strictEqual((yield* sessions.get(session.id)).status, "idle")
      const healthy = yield* pending.health
      assert.deepStrictEqual([healthy.status, healthy.pendingWrites, healthy.lastError], ["ok", 0, null])
      const recovered = yield* (yield* EventLog).list({ type: "store.write_recovered" })
      assert.sameMembers(recovered.map((event) => event.partId ?? event.sessionId), [partId, session.id])
      // And the session takes a new prompt.
      assert.deepStrictEqual(yield* sessions.runTurn(session.id, { text: script({ text: "still here" }) }), { _tag: "Completed", text: "still here" })
    }).pipe(Effect.provide(testRuntime({ tools: allTestTools, store: refusingStore(full) })))
  })

  it.effect("a new prompt writes the held end first when the store takes writes again", () => {
    const full = { on: false }
    return Effect.gen(function*() {
      const sessions = yield* SessionService
      const session = yield* sessions.create()
      const { done } = yield* sessions.runTool(session.id, { tool: "sleep", input: { ms: 10 } })
      full.on = true
      yield* TestClock.adjust(10)
      yield* done
      full.on = false
      // Before the retry's backoff has passed.
      assert.deepStrictEqual(yield* sessions.runTurn(session.id, { text: script({ text: "next" }) }), { _tag: "Completed", text: "next" })
    }).pipe(Effect.provide(testRuntime({ tools: allTestTools, store: refusingStore(full) })))
  })

  it.effect("held writes lost with the process: the next start ends the part OrphanedByCrash and its log names the part", () => {
    const full = { on: false }
    const file = tempDb()
    return Effect.gen(function*() {
      const partId = yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(testRuntime({ tools: allTestTools, file, store: refusingStore(full) }))
        return yield* Effect.gen(function*() {
          const sessions = yield* SessionService
          const session = yield* sessions.create()
          const { done, partId } = yield* sessions.runTool(session.id, { tool: "sleep", input: { ms: 10 } })
          full.on = true
          yield* TestClock.adjust(10)
          yield* done
          assert.strictEqual((yield* (yield* PendingWrites).health).pendingWrites, 2)
          return partId
        }).pipe(Effect.provide(context))
      }))
      // The first instance is gone (its held writes with it); the next starts on the same file.
      yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(testRuntime({ tools: allTestTools, file }))
        yield* Effect.gen(function*() {
          const { report } = yield* RecoveryComplete
          assert.include(report.partIds, partId)
          const part = yield* getPart(partId)
          assert.strictEqual(part.status, "error")
          assert.strictEqual(part.error?._tag, "OrphanedByCrash")
          const rescued = yield* (yield* EventLog).list({ type: "recovery.orphans_rescued" })
          assert.isTrue(rescued.some((event) => JSON.stringify(event.data).includes(partId)))
        }).pipe(Effect.provide(context))
      }))
    })
  })
})
