import { assert, describe, it } from "@effect/vitest"
import type { SessionId } from "@vigil/domain"
import { makeInstanceId, makeSessionId, newPart, OrphanedByCrash, Session, SessionCancelled } from "@vigil/domain"
import { EventLog, InstanceRepo, PartRepo, SessionRepo } from "@vigil/store"
import type { Context } from "effect"
import { Clock, Effect, Fiber, Layer, Option, TestClock } from "effect"
import { InstanceLease } from "../src/recovery/InstanceLease.js"
import { ProcessControl } from "../src/supervision/ProcessControl.js"
import { SessionService } from "../src/agent/SessionService.js"
import { allTestTools, deadInstance, tempDb, testRuntime } from "./support.js"

const script = (...steps: ReadonlyArray<unknown>) => JSON.stringify(steps)

const runtime = (options: Parameters<typeof testRuntime>[0] = {}) => testRuntime({ tools: allTestTools, ...options })
type Services = Layer.Layer.Success<ReturnType<typeof runtime>>

/** Polls (on the wall clock) until `check` holds; fails naming `what` after `timeoutMs`. */
const until = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, timeoutMs = 20_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for ${what}`)
      yield* Effect.sleep("20 millis")
    }
  })

const partsOf = (id: SessionId) => Effect.flatMap(PartRepo, (repo) => repo.bySession(id))

describe("turn claims", () => {
  it.effect("a turn that lost its session (taken for dead while it ran) stops at its next step and moves nothing", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const repo = yield* SessionRepo
      const { id: self } = yield* InstanceLease
      const session = yield* sessions.create()
      const turn = yield* Effect.fork(
        sessions.runTurn(session.id, { text: script({ tool: "sleep", input: { ms: 1_000 } }, { text: "the old turn went on" }) })
      )
      for (let i = 0; i < 100 && !(yield* partsOf(session.id)).some((part) => part.tool === "sleep"); i++) {
        yield* TestClock.adjust(0)
      }
      // A rescue that took this live instance for dead, and a turn of another instance after it.
      const other = makeInstanceId()
      const at = yield* Clock.currentTimeMillis
      yield* repo.endActiveOfOwner(self, new OrphanedByCrash({ ownerId: self }), at)
      assert.isTrue(yield* repo.claim(session.id, { ownerId: other, turnId: "turn_other", at }))

      yield* TestClock.adjust("1 second")
      const result = yield* Fiber.join(turn)
      assert.strictEqual(result._tag, "Failed")
      assert.strictEqual(result._tag === "Failed" ? result.reason._tag : undefined, "SessionCancelled")
      // The other turn still holds the session; the old one ran no step after it lost it.
      assert.deepStrictEqual(Option.getOrThrow(yield* repo.holder(session.id)), { status: "busy", ownerId: other, turnId: "turn_other" })
      const parts = yield* partsOf(session.id)
      assert.deepStrictEqual(parts.map((part) => part.kind), ["prompt", "model", "tool"])
      assert.deepStrictEqual(parts.filter((part) => part.kind === "text"), [])
    }).pipe(Effect.provide(runtime())))

  it.live("an abort at another instance reaches the owner: its turn and the child's end there, at once, and the session goes on", () =>
    Effect.scoped(Effect.gen(function*() {
      const file = tempDb()
      // Two hosts, so neither takes the other for dead by a pid the fake OS port does not know.
      const a: Context.Context<Services> = yield* Layer.build(runtime({ file, processes: ProcessControl.test({ host: "host-a" }) }))
      const b: Context.Context<Services> = yield* Layer.build(runtime({ file, processes: ProcessControl.test({ host: "host-b" }) }))
      const onA = <X, E>(effect: Effect.Effect<X, E, Services>) => Effect.provide(effect, a)
      const onB = <X, E>(effect: Effect.Effect<X, E, Services>) => Effect.provide(effect, b)
      const idA = (yield* onA(InstanceLease)).id
      const idB = (yield* onB(InstanceLease)).id

      const root = yield* onA(Effect.flatMap(SessionService, (sessions) => sessions.create()))
      yield* onA(Effect.flatMap(SessionService, (sessions) =>
        sessions.prompt(root.id, { text: script({ tool: "task", input: { prompt: script({ tool: "forever", input: {} }) } }) })))
      const child = yield* until(
        "the child's tool to run on A",
        onB(Effect.map(partsOf(root.id), (parts) => parts.some((part) => part.childSessionId !== null)))
      ).pipe(
        Effect.zipRight(onB(Effect.map(partsOf(root.id), (parts) => parts.find((part) => part.childSessionId !== null)!.childSessionId!)))
      )
      yield* until("the forever tool to run", onB(Effect.map(partsOf(child), (parts) => parts.some((part) => part.tool === "forever"))))

      // Refused at B while A's turn runs, naming A.
      const refused = yield* onB(Effect.flip(Effect.flatMap(SessionService, (sessions) => sessions.prompt(root.id, { text: script() }))))
      assert.deepStrictEqual([refused._tag, refused._tag === "SessionBusy" ? refused.ownerId : undefined], ["SessionBusy", idA])

      const started = Date.now()
      const after = yield* onB(Effect.flatMap(SessionService, (sessions) => sessions.abort(root.id, new SessionCancelled({ by: "api" }))))
      const tookMs = Date.now() - started
      assert.deepStrictEqual([after.status, after.cancelReason], ["cancelled", new SessionCancelled({ by: "api" })])
      assert.isBelow(tookMs, 5_000, "served by the owner's next poll, not a lease")
      assert.isFalse(yield* onA(Effect.flatMap(SessionService, (sessions) => sessions.isTurnRunningHere(root.id))))
      const childRow = yield* onB(Effect.flatMap(SessionService, (sessions) => sessions.get(child)))
      assert.strictEqual(childRow.status, "cancelled")
      for (const part of [...(yield* onB(partsOf(root.id))), ...(yield* onB(partsOf(child)))]) {
        assert.notInclude(["pending", "running"], part.status, `${part.tool} ended`)
        if (part.tool === "forever" || part.tool === "task") assert.strictEqual(part.ownerId, idA, "ended by its owner")
      }
      const requested = yield* onB(Effect.flatMap(EventLog, (log) => log.list({ type: "session.cancel_requested" })))
      assert.deepStrictEqual(requested.map((event) => [event.instanceId, event.sessionId, (event.data as { ownerId: string }).ownerId]), [
        [idB, root.id, idA]
      ])

      // At rest, the session takes a turn at either instance: here at B, which now owns it.
      const again = yield* onB(Effect.flatMap(SessionService, (sessions) => sessions.runTurn(root.id, { text: script({ text: "went on" }) })))
      assert.deepStrictEqual(again, { _tag: "Completed", text: "went on" })
      assert.strictEqual((yield* onA(Effect.flatMap(SessionService, (sessions) => sessions.get(root.id)))).ownerId, idB)
      console.log(`abort at B of a turn on A: answered in ${tookMs} ms`)
    })), 60_000)

  it.live("an abort at another instance of a dead owner's session rescues it at once, and the session takes a new prompt", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const { part, session } = yield* leftByDeadOwner
      const after = yield* sessions.abort(session.id, new SessionCancelled({ by: "api" }))
      const dead = session.ownerId
      assert.deepStrictEqual([after.status, after.cancelReason], ["error", new OrphanedByCrash({ ownerId: dead })])
      const row = Option.getOrThrow(yield* Effect.flatMap(PartRepo, (parts) => parts.get(part.id)))
      assert.deepStrictEqual([row.status, row.error], ["error", new OrphanedByCrash({ ownerId: dead })])
      const result = yield* sessions.runTurn(session.id, { text: script({ text: "went on" }) })
      assert.deepStrictEqual(result, { _tag: "Completed", text: "went on" })
    }).pipe(Effect.provide(runtime())), 60_000)

  it.live("a prompt for a session a dead owner left busy is not refused: its work is rescued first, and the turn runs", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const { part, session } = yield* leftByDeadOwner
      // No watchdog runs here (its interval is off): only the refused claim can rescue it.
      const result = yield* sessions.runTurn(session.id, { text: script({ text: "went on" }) })
      assert.deepStrictEqual(result, { _tag: "Completed", text: "went on" })
      const row = Option.getOrThrow(yield* Effect.flatMap(PartRepo, (parts) => parts.get(part.id)))
      assert.deepStrictEqual([row.status, row.error], ["error", new OrphanedByCrash({ ownerId: session.ownerId })])
      assert.strictEqual((yield* sessions.get(session.id)).ownerId, (yield* InstanceLease).id)
    }).pipe(Effect.provide(runtime())), 60_000)
})

/** A busy session, held by a turn of an instance whose lease ran out long ago, with a running part. */
const leftByDeadOwner = Effect.gen(function*() {
  const repo = yield* SessionRepo
  const now = Date.now()
  const dead = deadInstance(now)
  yield* Effect.flatMap(InstanceRepo, (instances) => instances.register(dead))
  const session = new Session({
    id: makeSessionId(),
    parentId: null,
    parentPartId: null,
    title: "left by a dead owner",
    status: "idle",
    cancelReason: null,
    lastActivityAt: now,
    ownerId: dead.id,
    createdAt: now
  })
  yield* repo.insert(session)
  yield* repo.claim(session.id, { ownerId: dead.id, turnId: "turn_dead", at: now })
  const part = newPart({
    sessionId: session.id,
    kind: "tool",
    tool: "sleep",
    input: { ms: 1 },
    callId: "call_1",
    status: "running",
    createdAt: now,
    startedAt: now,
    ownerId: dead.id
  })
  yield* Effect.flatMap(PartRepo, (parts) => parts.insert(part))
  return { part, session: new Session({ ...session, status: "busy", ownerId: dead.id }) }
})
