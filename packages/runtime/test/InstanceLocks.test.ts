import { assert, describe, it } from "@effect/vitest"
import { Instance, makeInstanceId } from "@vigil/domain"
import { InstanceRepo } from "@vigil/store"
import { PgStoreLive } from "@vigil/store/pg"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Clock, Effect, Layer, Option } from "effect"
import { InstanceLease } from "../src/recovery/InstanceLease.js"
import { InstanceLockError, InstanceLocks } from "../src/recovery/InstanceLocks.js"
import { Liveness } from "../src/recovery/Liveness.js"
import { peer, within } from "./peers.js"
import { adminQuery, freshPgSchema, pgSkipped } from "@vigil/store/test-database"
import { waitUntil } from "./processes.js"
import { tempDb } from "./support.js"

/** An instance row with a fresh lease that holds no lock: a process that died before its lease ran out. */
const unlockedInstance = (host: string, heartbeatAt: number) =>
  new Instance({
    id: makeInstanceId(),
    pid: 4242,
    host,
    procStart: "1",
    startedAt: heartbeatAt,
    heartbeatAt,
    leaseMillis: 60_000,
    stoppedAt: null
  })

const causeOf = (instance: Instance) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    return yield* (yield* Liveness).causeOfDeath(instance, now)
  })

/** The backend pid of the session holding an instance's advisory lock. */
const lockHolder = (instanceId: string) =>
  adminQuery(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
    AND classid = ((hashtextextended('${instanceId}', 0) >> 32) & 4294967295)::oid
    AND objid = (hashtextextended('${instanceId}', 0) & 4294967295)::oid`).pipe(
    Effect.map((rows) => (rows[0] === undefined ? undefined : Number(rows[0]["pid"])))
  )

/**
 * Instance `a` (host-a) and its peer `b` (host-b) on a fresh schema; then the backend holding a's
 * lock is killed, as a dropped connection would be. `before` is that backend's pid.
 */
const dropLockConnection = Effect.gen(function*() {
  const store = Layer.orDie(PgStoreLive(yield* freshPgSchema))
  const a = yield* Layer.build(peer(store, "host-a"))
  const b = yield* Layer.build(peer(store, "host-b"))
  const { id } = yield* within(a, InstanceLease)
  const before = yield* lockHolder(id)
  assert.isDefined(before)
  yield* adminQuery(`SELECT pg_terminate_backend(${before})`)
  return { b, before, id }
})

describe.skipIf(pgSkipped)("InstanceLocks (postgres)", () => {
  it.live("an instance holds its lock for its life: a peer elsewhere sees it alive, a lockless one dead after a second look", () =>
    Effect.scoped(Effect.gen(function*() {
      const url = yield* freshPgSchema
      const store = Layer.orDie(PgStoreLive(url))
      // Two instances start at once on an empty database: the migrations run once, in turn.
      const [a, b] = yield* Effect.all([Layer.build(peer(store, "host-a")), Layer.build(peer(store, "host-b"))], {
        concurrency: 2
      })
      const self = yield* within(a, InstanceLease)
      const [row] = yield* within(b, Effect.flatMap(InstanceRepo, (repo) => repo.getMany([self.id])))
      assert.deepStrictEqual(yield* within(b, Effect.flatMap(InstanceLocks, (locks) => locks.isHeld(self.id))), Option.some(true))
      assert.isNull(yield* within(b, causeOf(row!)))

      // Only one session can hold it: a second hold of the same id is refused.
      const refused = yield* within(b, Effect.flip(Effect.scoped(Effect.flatMap(InstanceLocks, (locks) => locks.hold(self.id)))))
      assert.instanceOf(refused, InstanceLockError)
      assert.strictEqual(refused.message, "the instance lock is held by another session")

      // A row whose lease is fresh but whose lock nobody holds: dead at once from another host,
      // left to the pid (alive, in this fake) on its own host, and the lease still comes first.
      const now = yield* Clock.currentTimeMillis
      const elsewhere = unlockedInstance("host-c", now)
      assert.strictEqual(yield* within(b, causeOf(elsewhere)), "lock-released")
      assert.isNull(yield* within(b, causeOf(unlockedInstance("host-b", now))))
      assert.strictEqual(yield* within(b, causeOf(unlockedInstance("host-c", now - 120_000))), "lease-expired")
    })), 30_000)

  it.live("a dropped connection loses the lock for a moment; the instance takes it again on a new one", () =>
    Effect.scoped(Effect.gen(function*() {
      const { b, before, id } = yield* dropLockConnection
      const isHeld = within(b, Effect.flatMap(InstanceLocks, (locks) => locks.isHeld(id)))
      const took = yield* Effect.promise(() =>
        waitUntil(async () => {
          const holder = await Effect.runPromise(lockHolder(id))
          return holder !== undefined && holder !== before
        }, 10_000, "the lock to be taken again")
      )
      assert.deepStrictEqual(yield* isHeld, Option.some(true))
      console.log(`instance lock taken again ${took} ms after its connection was killed`)
    })), 30_000)

  it.live("a live peer whose lock connection drops is not taken for dead while it takes the lock again", () =>
    Effect.scoped(Effect.gen(function*() {
      const { b, id } = yield* dropLockConnection
      const [row] = yield* within(b, Effect.flatMap(InstanceRepo, (repo) => repo.getMany([id])))
      // Looked at while the lock is free: a single look would call it dead.
      yield* Effect.promise(() =>
        waitUntil(async () => (await Effect.runPromise(lockHolder(id))) === undefined, 5_000, "the lock to be free")
      )
      assert.deepStrictEqual(yield* within(b, Effect.flatMap(InstanceLocks, (locks) => locks.isHeld(id))), Option.some(false))
      const [cause, dead] = yield* within(
        b,
        Effect.all([causeOf(row!), Effect.flatMap(Liveness, (liveness) => liveness.deadAmong([id]))], { concurrency: 2 })
      )
      assert.isNull(cause)
      assert.strictEqual(dead.size, 0)
      assert.isDefined(yield* lockHolder(id))
    })), 30_000)

  it.live("a clean stop marks the row stopped, then frees the lock", () =>
    Effect.scoped(Effect.gen(function*() {
      const url = yield* freshPgSchema
      const store = Layer.orDie(PgStoreLive(url))
      const b = yield* Layer.build(peer(store, "host-b"))
      const id = yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* Layer.build(peer(store, "host-a"))
        const { id } = yield* within(a, InstanceLease)
        assert.isDefined(yield* lockHolder(id))
        return id
      }))
      assert.isUndefined(yield* lockHolder(id))
      const [row] = yield* within(b, Effect.flatMap(InstanceRepo, (repo) => repo.getMany([id])))
      assert.isNotNull(row!.stoppedAt)
      assert.strictEqual(yield* within(b, causeOf(row!)), "stopped")
      assert.deepStrictEqual(yield* within(b, Effect.flatMap(InstanceLocks, (locks) => locks.isHeld(id))), Option.some(false))
    })), 30_000)
})

describe("InstanceLocks (sqlite)", () => {
  it.live("there is nothing to hold: the store cannot tell, so the lease and the pid decide", () =>
    Effect.scoped(Effect.gen(function*() {
      const b = yield* Layer.build(peer(Layer.orDie(SqliteStoreLive(tempDb())), "host-b"))
      const now = yield* Clock.currentTimeMillis
      const elsewhere = unlockedInstance("host-c", now)
      assert.deepStrictEqual(yield* within(b, Effect.flatMap(InstanceLocks, (locks) => locks.isHeld(elsewhere.id))), Option.none())
      assert.isNull(yield* within(b, causeOf(elsewhere)))
      assert.strictEqual(yield* within(b, causeOf(unlockedInstance("host-c", now - 120_000))), "lease-expired")
    })))
})
