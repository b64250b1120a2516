import { assert, describe, it } from "@effect/vitest"
import type { RecoveryReport, SupervisionEvent } from "@vigil/domain"
import { makeSessionId, newPart, OrphanedByCrash, Part, Session } from "@vigil/domain"
import type { Store } from "@vigil/store"
import { EventLog, InstanceRepo, PartRepo, SessionRepo } from "@vigil/store"
import { PgStoreLive } from "@vigil/store/pg"
import { Clock, Effect, Layer, Option } from "effect"
import { Recovery } from "../src/recovery/Recovery.js"
import { peer } from "./peers.js"
import { deadInstance } from "./support.js"
import { freshPgSchema, pgSkipped } from "@vigil/store/test-database"

interface RescuedData {
  readonly ownerId: string
  readonly cause: string
  readonly host: string | null
  readonly parts: number
  readonly partIds: ReadonlyArray<string>
}

const rescuedEvents = Effect.gen(function*() {
  const log = yield* EventLog
  const byWatchdog = yield* log.list({ type: "watchdog.orphans_rescued", limit: 10_000 })
  const byRecovery = yield* log.list({ type: "recovery.orphans_rescued", limit: 10_000 })
  return [...byWatchdog, ...byRecovery]
})

/** How many `…orphans_rescued` events list each part id. */
const listings = (events: ReadonlyArray<SupervisionEvent>) => {
  const count = new Map<string, number>()
  for (const event of events) {
    for (const id of (event.data as RescuedData).partIds) count.set(id, (count.get(id) ?? 0) + 1)
  }
  return count
}

/** A dead owner (its lease ran out long ago) that left `count` running parts in `count` busy sessions. */
const seedDeadOwner = (count: number) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const owner = deadInstance(now)
    yield* (yield* InstanceRepo).register(owner)
    const parts: Array<Part> = []
    for (let i = 0; i < count; i++) {
      const session = new Session({
        id: makeSessionId(),
        parentId: null,
        parentPartId: null,
        title: `orphan ${i}`,
        status: "busy",
        cancelReason: null,
        lastActivityAt: now,
        ownerId: owner.id,
        createdAt: now
      })
      yield* (yield* SessionRepo).insert(session)
      const part = newPart({
        sessionId: session.id,
        kind: "tool",
        tool: "read",
        input: { path: "x" },
        status: "running",
        createdAt: now,
        startedAt: now,
        ownerId: owner.id
      })
      yield* (yield* PartRepo).insert(part)
      parts.push(part)
    }
    return { owner, parts }
  })

describe.skipIf(pgSkipped)("several instances on one PostgreSQL database", () => {
  it.live("two instances rescue the same dead owner at once: disjoint sets, every orphan once, one event listing each", () =>
    Effect.scoped(Effect.gen(function*() {
      const url = yield* freshPgSchema
      const store: Layer.Layer<Store> = Layer.orDie(PgStoreLive(url))
      const [a, b] = yield* Effect.all([Layer.build(peer(store, "host-a")), Layer.build(peer(store, "host-b"))], {
        concurrency: 2
      })
      for (let round = 0; round < 5; round++) {
        const { owner, parts } = yield* seedDeadOwner(60).pipe(Effect.provide(a))
        const recover = (context: typeof a) =>
          Effect.flatMap(Recovery, (recovery) => recovery.recoverDeadOwners({ trigger: "watchdog" })).pipe(Effect.provide(context))
        const reports: ReadonlyArray<RecoveryReport> = yield* Effect.all([recover(a), recover(b)], { concurrency: 2 })
        const ended = reports.flatMap((report) => report.partIds as ReadonlyArray<string>)
        assert.strictEqual(new Set(ended).size, ended.length, "no orphan is ended by both")
        assert.deepStrictEqual([...ended].sort(), parts.map((part) => part.id as string).sort())
        assert.strictEqual(reports[0]!.orphanedParts + reports[1]!.orphanedParts, parts.length)
        const freed = reports.flatMap((report) => report.sessionIds as ReadonlyArray<string>)
        assert.strictEqual(new Set(freed).size, parts.length)
        assert.strictEqual(freed.length, parts.length)

        const events = (yield* rescuedEvents.pipe(Effect.provide(a))).filter((event) =>
          (event.data as RescuedData).ownerId === owner.id
        )
        const listed = listings(events)
        for (const part of parts) assert.strictEqual(listed.get(part.id), 1, `one event lists ${part.id}`)
        for (const part of parts) {
          const row = Option.getOrThrow(yield* Effect.flatMap(PartRepo, (repo) => repo.get(part.id)).pipe(Effect.provide(b)))
          assert.deepStrictEqual([row.status, row.error], ["error", new OrphanedByCrash({ ownerId: owner.id })])
        }
        console.log(`round ${round}: rescued ${reports.map((report) => report.orphanedParts).join(" + ")} orphans`)
      }
    })), 60_000)
})
