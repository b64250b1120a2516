import { assert, it } from "@effect/vitest"
import { IdleCancelled, makeInstanceId, makePartId, makeSessionId, ToolTimeout } from "@vigil/domain"
import { EventLog } from "@vigil/store"
import { Effect } from "effect"
import { describeBackends } from "./fixtures.js"

describeBackends("EventLog", ({ withStore }) => {
  it.effect("append returns increasing ids", () =>
    withStore(Effect.gen(function*() {
      const log = yield* EventLog
      const ids: Array<number> = []
      for (let i = 0; i < 5; i++) ids.push(yield* log.append({ type: "watchdog.action", at: 1_000 + i }))
      assert.strictEqual(typeof ids[0], "number")
      for (let i = 1; i < ids.length; i++) assert.isAbove(ids[i]!, ids[i - 1]!)
    })))

  it.effect("every field round-trips; the reason comes back as the same tagged class", () =>
    withStore(Effect.gen(function*() {
      const log = yield* EventLog
      const instanceId = makeInstanceId()
      const sessionId = makeSessionId()
      const partId = makePartId()
      const data = { runningFor: 700_000, tree: [1, "two", { three: null }], ok: true }
      const id = yield* log.append({
        type: "part.timeout",
        at: 5_000,
        instanceId,
        sessionId,
        partId,
        reason: new ToolTimeout({ timeout: 600_000 }),
        data
      })
      const [event] = yield* log.list({ sessionId })
      assert.instanceOf(event!.reason, ToolTimeout)
      assert.deepStrictEqual(
        { ...event! },
        { id, type: "part.timeout", at: 5_000, instanceId, sessionId, partId, reason: new ToolTimeout({ timeout: 600_000 }), data }
      )
    })))

  it.effect("omitted fields are null", () =>
    withStore(Effect.gen(function*() {
      const log = yield* EventLog
      const id = yield* log.append({ type: "recovery.completed", at: 1 })
      const [event] = yield* log.list()
      assert.deepStrictEqual(
        { ...event! },
        { id, type: "recovery.completed", at: 1, instanceId: null, sessionId: null, partId: null, reason: null, data: null }
      )
    })))

  it.effect("lists by session or by type, newest first, with a limit", () =>
    withStore(Effect.gen(function*() {
      const log = yield* EventLog
      const s1 = makeSessionId()
      const s2 = makeSessionId()
      const idle = new IdleCancelled({ idleFor: 2_000, threshold: 1_000 })
      const e1 = yield* log.append({ type: "idle.cancelled", at: 1, sessionId: s1, reason: idle })
      const e2 = yield* log.append({ type: "watchdog.action", at: 2, sessionId: s2 })
      const e3 = yield* log.append({ type: "idle.cancelled", at: 3, sessionId: s2, reason: idle })
      const e4 = yield* log.append({ type: "watchdog.action", at: 4, sessionId: s1 })
      const e5 = yield* log.append({ type: "recovery.completed", at: 5 })

      const idsOf = (events: ReadonlyArray<{ readonly id: number }>) => events.map((e) => e.id)
      assert.deepStrictEqual(idsOf(yield* log.list({ sessionId: s1 })), [e4, e1])
      assert.deepStrictEqual(idsOf(yield* log.list({ sessionId: s2 })), [e3, e2])
      assert.deepStrictEqual(idsOf(yield* log.list({ type: "idle.cancelled" })), [e3, e1])
      assert.deepStrictEqual(idsOf(yield* log.list({ type: "watchdog.action" })), [e4, e2])
      assert.deepStrictEqual(idsOf(yield* log.list()), [e5, e4, e3, e2, e1])
      assert.deepStrictEqual(idsOf(yield* log.list({ limit: 2 })), [e5, e4])
      assert.deepStrictEqual(idsOf(yield* log.list({ type: "idle.cancelled", limit: 1 })), [e3])
      assert.deepStrictEqual(idsOf(yield* log.list({ sessionId: makeSessionId() })), [])
      const [cancelled] = yield* log.list({ type: "idle.cancelled" })
      assert.instanceOf(cancelled!.reason, IdleCancelled)
      assert.deepStrictEqual(cancelled!.reason, idle)
    })))

  it.effect("page: newest first before a cursor id, of one session or all, state markers left out, `more` while older ones remain", () =>
    withStore(Effect.gen(function*() {
      const log = yield* EventLog
      const sessionId = makeSessionId()
      const mine: Array<number> = []
      for (let i = 0; i < 5; i++) {
        mine.push(yield* log.append({ type: "part.timeout", at: 1_000 + i, sessionId }))
        yield* log.append({ type: "watchdog.action", at: 1_000 + i })
      }
      yield* log.appendMany([{ type: "part.updated", at: 2_000, sessionId }])
      const newestFirst = [...mine].reverse()
      const first = yield* log.page({ sessionId, limit: 2 })
      assert.deepStrictEqual(first.items.map((event) => event.id), newestFirst.slice(0, 2))
      assert.isTrue(first.more)
      const rest = yield* log.page({ sessionId, limit: 10, before: first.items[1]!.id })
      assert.deepStrictEqual(rest.items.map((event) => event.id), newestFirst.slice(2))
      assert.isFalse(rest.more)
      const all = yield* log.page({ limit: 100 })
      assert.strictEqual(all.items.length, 10, "every supervision event, no marker")
      assert.isTrue(all.items.every((event) => event.type !== "part.updated"))
    })))

  it.effect("appendMany numbers a batch in order; after/head read positions; markers stay out of list and are pruned alone", () =>
    withStore(Effect.gen(function*() {
      const log = yield* EventLog
      const sessionId = makeSessionId()
      const partId = makePartId()
      const supervision = yield* log.append({ type: "watchdog.action", at: 1, sessionId })
      const ids = yield* log.appendMany([
        { type: "part.updated", at: 2, sessionId, partId },
        { type: "session.updated", at: 3, sessionId },
        { type: "idle.cancelled", at: 4, sessionId, reason: new IdleCancelled({ idleFor: 2, threshold: 1 }) }
      ])
      assert.strictEqual(ids.length, 3)
      assert.isAbove(ids[0]!, supervision)
      assert.isAbove(ids[1]!, ids[0]!)
      assert.isAbove(ids[2]!, ids[1]!)
      assert.strictEqual(yield* log.head, ids[2]!)
      assert.deepStrictEqual((yield* log.after(supervision, 10)).map((event) => [event.id, event.type, event.at]), [
        [ids[0], "part.updated", 2],
        [ids[1], "session.updated", 3],
        [ids[2], "idle.cancelled", 4]
      ])
      assert.deepStrictEqual((yield* log.after(ids[0]!, 1)).map((event) => event.id), [ids[1]])
      // The supervision log leaves the markers out.
      assert.deepStrictEqual((yield* log.list({ sessionId })).map((event) => event.type), ["idle.cancelled", "watchdog.action"])
      assert.deepStrictEqual((yield* log.list()).map((event) => event.type), ["idle.cancelled", "watchdog.action"])
      // Pruning below the last id takes the two markers and nothing else.
      assert.strictEqual(yield* log.pruneMarkers(ids[2]!, 1_000), 2)
      assert.deepStrictEqual((yield* log.after(0, 10)).map((event) => event.type), ["watchdog.action", "idle.cancelled"])
    })))
})
