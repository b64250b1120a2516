import { assert, describe, it } from "@effect/vitest"
import type { Session } from "@vigil/domain"
import { IdleCancelled, OrphanedByCrash, SessionCancelled } from "@vigil/domain"
import { SessionRepo } from "@vigil/store"
import { Effect, Option } from "effect"
import { describeBackends, makeSession, ownerA, ownerB } from "./fixtures.js"

const insertAll = (...sessions: ReadonlyArray<Session>) =>
  Effect.flatMap(SessionRepo, (repo) => Effect.forEach(sessions, repo.insert, { discard: true }))

const read = (session: Session) =>
  Effect.flatMap(SessionRepo, (repo) => repo.get(session.id)).pipe(Effect.map(Option.getOrThrow))

const ids = (sessions: ReadonlyArray<Session>) => sessions.map((s) => s.id).sort()

describeBackends("SessionRepo", ({ withStore }) => {
  it.effect("insert and get round-trip every field", () =>
    withStore(Effect.gen(function*() {
      const repo = yield* SessionRepo
      const parent = makeSession({ title: "parent" })
      const child = makeSession({
        parentId: parent.id,
        status: "cancelled",
        cancelReason: new IdleCancelled({ idleFor: 2_000, threshold: 1_000 }),
        lastActivityAt: 5_000,
        createdAt: 4_000
      })
      yield* insertAll(parent, child)
      assert.deepStrictEqual(yield* read(parent), parent)
      const back = yield* read(child)
      assert.deepStrictEqual(back, child)
      assert.instanceOf(back.cancelReason, IdleCancelled)
      assert.deepStrictEqual(yield* repo.get(makeSession().id), Option.none())
    })))

  describe("transition", () => {
    it.effect("is a compare-and-set: busy → idle succeeds once, the second fails", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const session = makeSession({ status: "busy" })
        yield* insertAll(session)
        assert.isTrue(yield* repo.transition(session.id, ["busy"], "idle", { at: 2_000 }))
        assert.isFalse(yield* repo.transition(session.id, ["busy"], "idle", { at: 3_000 }))
        const row = yield* read(session)
        assert.deepStrictEqual([row.status, row.lastActivityAt, row.cancelReason], ["idle", 2_000, null])
      })))

    it.effect("two concurrent writers: exactly one wins and the row is the winner's", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const sessions = Array.from({ length: 10 }, () => makeSession({ status: "waiting" }))
        yield* insertAll(...sessions)
        const cancel = new IdleCancelled({ idleFor: 1_900_000, threshold: 1_800_000 })
        for (const session of sessions) {
          const [ended, cancelled] = yield* Effect.all([
            repo.transition(session.id, ["busy", "waiting"], "idle", { at: 2_000 }),
            repo.transition(session.id, ["busy", "waiting"], "cancelled", { at: 2_001, cancelReason: cancel })
          ], { concurrency: "unbounded" })
          assert.strictEqual(Number(ended) + Number(cancelled), 1)
          const row = yield* read(session)
          const expected: ReadonlyArray<unknown> = ended ? ["idle", null, 2_000] : ["cancelled", cancel, 2_001]
          assert.deepStrictEqual([row.status, row.cancelReason, row.lastActivityAt], expected)
        }
      })))

    it.effect("refused from a status not in `from`: the row is unchanged", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const session = makeSession({ status: "idle" })
        yield* insertAll(session)
        assert.isFalse(yield* repo.transition(session.id, ["busy", "waiting"], "cancelled", {
          at: 9_000,
          cancelReason: new SessionCancelled({ by: "user" })
        }))
        assert.deepStrictEqual(yield* read(session), session)
        assert.isFalse(yield* repo.transition(makeSession().id, ["busy"], "idle", { at: 9_000 }))
      })))

    it.effect("records a cancel reason, clears it with null, and can take a new owner", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const session = makeSession({ status: "busy" })
        yield* insertAll(session)
        const reason = new SessionCancelled({ by: "user" })
        assert.isTrue(yield* repo.transition(session.id, ["busy"], "cancelled", { at: 2_000, cancelReason: reason }))
        const cancelled = yield* read(session)
        assert.deepStrictEqual([cancelled.status, cancelled.cancelReason], ["cancelled", reason])
        assert.instanceOf(cancelled.cancelReason, SessionCancelled)

        // a cancelled session takes a new prompt; omitting cancelReason leaves it, null clears it
        assert.isTrue(yield* repo.transition(session.id, ["cancelled"], "busy", { at: 3_000, ownerId: ownerB }))
        const resumed = yield* read(session)
        assert.deepStrictEqual([resumed.status, resumed.cancelReason, resumed.ownerId], ["busy", reason, ownerB])
        assert.isTrue(yield* repo.transition(session.id, ["busy"], "idle", { at: 4_000, cancelReason: null }))
        const idle = yield* read(session)
        assert.deepStrictEqual([idle.status, idle.cancelReason, idle.ownerId, idle.lastActivityAt], ["idle", null, ownerB, 4_000])
      })))
  })

  describe("touch", () => {
    it.effect("moves lastActivityAt forward, never back", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const a = makeSession({ lastActivityAt: 1_000 })
        const b = makeSession({ lastActivityAt: 5_000 })
        const untouched = makeSession({ lastActivityAt: 1_000 })
        yield* insertAll(a, b, untouched)

        yield* repo.touch([a.id, b.id], 3_000)
        assert.strictEqual((yield* read(a)).lastActivityAt, 3_000)
        assert.strictEqual((yield* read(b)).lastActivityAt, 5_000)

        yield* repo.touch([a.id], 2_000)
        assert.strictEqual((yield* read(a)).lastActivityAt, 3_000)

        yield* repo.touch([], 9_000)
        assert.strictEqual((yield* read(untouched)).lastActivityAt, 1_000)
      })))
  })

  describe("reads", () => {
    it.effect("active returns only busy and waiting sessions", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const busy = makeSession({ status: "busy" })
        const waiting = makeSession({ status: "waiting", ownerId: ownerB })
        yield* insertAll(
          busy,
          waiting,
          makeSession({ status: "idle" }),
          makeSession({ status: "cancelled", cancelReason: new SessionCancelled({ by: "user" }) }),
          makeSession({ status: "error" })
        )
        assert.deepStrictEqual(ids(yield* repo.active()), ids([busy, waiting]))
        assert.deepStrictEqual([...(yield* repo.activeOwners())].sort(), [ownerA, ownerB].sort())
      })))

    it.effect("active decodes whole rows as get does; activeLinks gives their links and activity", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const parent = makeSession({ status: "busy", lastActivityAt: 7_000 })
        const child = makeSession({ status: "waiting", parentId: parent.id, cancelReason: new SessionCancelled({ by: "x" }), ownerId: ownerB })
        yield* insertAll(parent, child, makeSession({ status: "idle" }))
        const active = yield* repo.active()
        assert.deepStrictEqual(active.find((s) => s.id === child.id), yield* read(child))
        assert.instanceOf(active.find((s) => s.id === child.id)?.cancelReason, SessionCancelled)
        const links = yield* repo.activeLinks()
        assert.deepStrictEqual(
          links.map((link) => [link.id, link.parentId, link.status, link.lastActivityAt, link.ownerId]).sort(),
          [
            [parent.id, null, "busy", 7_000, ownerA],
            [child.id, parent.id, "waiting", child.lastActivityAt, ownerB]
          ].sort()
        )
      })))

    it.effect("transitionMany and getMany: guarded like transition, over more ids than one statement binds", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const busy = Array.from({ length: 1_200 }, () => makeSession({ status: "busy" }))
        const resting = makeSession({ status: "idle" })
        yield* insertAll(...busy, resting)
        const reason = new SessionCancelled({ by: "tree" })
        const changed = yield* repo.transitionMany([...busy.map((s) => s.id), resting.id], ["busy", "waiting"], "cancelled", {
          at: 9_000,
          cancelReason: reason
        })
        assert.deepStrictEqual([...changed].sort(), ids(busy))
        const rows = yield* repo.getMany([...busy.map((s) => s.id), resting.id])
        assert.strictEqual(rows.length, 1_201)
        for (const row of rows.filter((r) => r.id !== resting.id)) {
          assert.deepStrictEqual([row.status, row.lastActivityAt, row.cancelReason], ["cancelled", 9_000, reason])
        }
        assert.deepStrictEqual(yield* read(resting), resting)
        assert.deepStrictEqual(yield* repo.transitionMany(busy.map((s) => s.id), ["busy"], "idle", { at: 10_000 }), [])
      })))

    it.effect("children returns a session's direct children in creation order", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const parent = makeSession()
        const first = makeSession({ parentId: parent.id })
        const second = makeSession({ parentId: parent.id, status: "idle" })
        const grandchild = makeSession({ parentId: first.id })
        const unrelated = makeSession()
        yield* insertAll(parent, first, second, grandchild, unrelated)
        assert.deepStrictEqual(yield* repo.children(parent.id), [first, second])
        assert.deepStrictEqual(yield* repo.children(first.id), [grandchild])
        assert.deepStrictEqual(yield* repo.children(unrelated.id), [])
      })))

    it.effect("list returns the newest first and honours the limit", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const old = makeSession({ createdAt: 1_000 })
        const mid = makeSession({ createdAt: 2_000 })
        const recent = makeSession({ createdAt: 3_000 })
        yield* insertAll(mid, recent, old)
        assert.deepStrictEqual(yield* repo.list(), [recent, mid, old])
        assert.deepStrictEqual(yield* repo.list({ limit: 2 }), [recent, mid])
      })))
  })

  describe("endActiveOfOwner", () => {
    it.effect("frees only that owner's busy and waiting sessions", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const busy = makeSession({ status: "busy" })
        const waiting = makeSession({ status: "waiting" })
        const idle = makeSession({ status: "idle" })
        const otherBusy = makeSession({ status: "busy", ownerId: ownerB })
        yield* insertAll(busy, waiting, idle, otherBusy)
        const reason = new OrphanedByCrash({ ownerId: ownerA })

        const ended = yield* repo.endActiveOfOwner(ownerA, reason, 7_000)

        assert.deepStrictEqual([...ended].sort(), ids([busy, waiting]))
        for (const session of [busy, waiting]) {
          const row = yield* read(session)
          assert.deepStrictEqual([row.status, row.cancelReason, row.lastActivityAt], ["error", reason, 7_000])
        }
        assert.deepStrictEqual(yield* read(idle), idle)
        assert.deepStrictEqual(yield* read(otherBusy), otherBusy)
        assert.deepStrictEqual(yield* repo.endActiveOfOwner(ownerA, reason, 8_000), [])
      })))
  })

  describe("turn claims", () => {
    it.effect("a claim is a compare-and-set from rest: of many concurrent claims exactly one wins, with its owner and turn", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        for (const status of ["idle", "cancelled", "error"] as const) {
          const session = makeSession({ status, cancelReason: status === "idle" ? null : new SessionCancelled({ by: "api" }) })
          yield* insertAll(session)
          const claims = Array.from({ length: 8 }, (_, i) => ({ ownerId: i % 2 === 0 ? ownerA : ownerB, turnId: `turn-${i}`, at: 2_000 + i }))
          const won = yield* Effect.all(claims.map((claim) => repo.claim(session.id, claim)), { concurrency: "unbounded" })
          assert.strictEqual(won.filter(Boolean).length, 1, `one claim of a ${status} session wins`)
          const winner = claims[won.indexOf(true)]!
          assert.deepStrictEqual(Option.getOrThrow(yield* repo.holder(session.id)), {
            status: "busy",
            ownerId: winner.ownerId,
            turnId: winner.turnId
          })
          const row = yield* read(session)
          assert.deepStrictEqual([row.status, row.ownerId, row.cancelReason, row.lastActivityAt], ["busy", winner.ownerId, null, winner.at])
          // Busy, and waiting too: no claim while a turn holds it.
          assert.isFalse(yield* repo.claim(session.id, { ownerId: ownerA, turnId: "late", at: 3_000 }))
          assert.isTrue(yield* repo.transition(session.id, ["busy"], "waiting", { at: 3_000, turnId: winner.turnId }))
          assert.isFalse(yield* repo.claim(session.id, { ownerId: ownerB, turnId: "late", at: 3_001 }))
        }
        assert.isFalse(yield* repo.claim(makeSession().id, { ownerId: ownerA, turnId: "t", at: 1 }))
        assert.deepStrictEqual(yield* repo.holder(makeSession().id), Option.none())
      })))

    it.effect("a turn that lost its session moves nothing: transitions fenced on the turn id", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const session = makeSession({ status: "idle" })
        yield* insertAll(session)
        assert.isTrue(yield* repo.claim(session.id, { ownerId: ownerA, turnId: "old", at: 2_000 }))
        // The old turn's session is ended elsewhere (a rescue), then claimed by a new turn.
        yield* repo.endActiveOfOwner(ownerA, new OrphanedByCrash({ ownerId: ownerA }), 2_500)
        assert.isTrue(yield* repo.claim(session.id, { ownerId: ownerB, turnId: "new", at: 3_000 }))
        for (const [from, to] of [[["busy", "waiting"], "idle"], [["busy"], "waiting"], [["busy", "waiting"], "cancelled"]] as const) {
          assert.isFalse(yield* repo.transition(session.id, from, to, { at: 4_000, turnId: "old" }), `old turn: → ${to}`)
        }
        assert.deepStrictEqual(Option.getOrThrow(yield* repo.holder(session.id)), { status: "busy", ownerId: ownerB, turnId: "new" })
        assert.isTrue(yield* repo.transition(session.id, ["busy", "waiting"], "idle", { at: 5_000, turnId: "new" }))
        assert.strictEqual((yield* read(session)).status, "idle")
      })))

    it.effect("a cancel request reaches only its owner, only for the turn it was made for, and is gone at rest", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* SessionRepo
        const mine = makeSession({ status: "idle" })
        const theirs = makeSession({ status: "idle", ownerId: ownerB })
        yield* insertAll(mine, theirs)
        yield* repo.claim(mine.id, { ownerId: ownerA, turnId: "a1", at: 2_000 })
        yield* repo.claim(theirs.id, { ownerId: ownerB, turnId: "b1", at: 2_000 })
        assert.deepStrictEqual(yield* repo.cancelRequests(ownerA), [])
        const api = new SessionCancelled({ by: "api" })
        assert.isFalse(yield* repo.requestCancel(mine.id, { turnId: "a0", reason: api }), "not for another turn")
        assert.isTrue(yield* repo.requestCancel(mine.id, { turnId: "a1", reason: api }))
        // A second request keeps the first reason.
        assert.isTrue(yield* repo.requestCancel(mine.id, { turnId: "a1", reason: new IdleCancelled({ idleFor: 2, threshold: 1 }) }))
        yield* repo.requestCancel(theirs.id, { turnId: "b1", reason: api })
        const requests = yield* repo.cancelRequests(ownerA)
        assert.deepStrictEqual(requests, [{ id: mine.id, turnId: "a1", reason: api }])
        assert.instanceOf(requests[0]!.reason, SessionCancelled)
        assert.deepStrictEqual((yield* repo.cancelRequests(ownerB)).map((request) => request.id), [theirs.id])

        // Served: the session at rest has no request left, and the next turn starts without one.
        assert.isTrue(yield* repo.transition(mine.id, ["busy", "waiting"], "cancelled", { at: 3_000, cancelReason: api, turnId: "a1" }))
        assert.deepStrictEqual(yield* repo.cancelRequests(ownerA), [])
        assert.isFalse(yield* repo.requestCancel(mine.id, { turnId: "a1", reason: api }), "not for a turn that ended")
        yield* repo.claim(mine.id, { ownerId: ownerA, turnId: "a2", at: 4_000 })
        assert.deepStrictEqual(yield* repo.cancelRequests(ownerA), [])
        // A rescue of a dead owner clears its requests too.
        yield* repo.endActiveOfOwner(ownerB, new OrphanedByCrash({ ownerId: ownerB }), 5_000)
        assert.deepStrictEqual(yield* repo.cancelRequests(ownerB), [])
      })))
  })
})
