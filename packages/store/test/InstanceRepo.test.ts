import { assert, it } from "@effect/vitest"
import { Instance, makeInstanceId } from "@vigil/domain"
import { InstanceRepo } from "@vigil/store"
import { Effect } from "effect"
import { describeBackends } from "./fixtures.js"

const makeInstance = (fields: Partial<ConstructorParameters<typeof Instance>[0]> = {}) =>
  new Instance({
    id: makeInstanceId(),
    pid: 1234,
    host: "host-a",
    procStart: "98765",
    startedAt: 1_000,
    heartbeatAt: 1_000,
    leaseMillis: 30_000,
    stoppedAt: null,
    ...fields
  })

describeBackends("InstanceRepo", ({ withStore }) => {
  it.effect("register, then getMany returns the row", () =>
    withStore(Effect.gen(function*() {
      const repo = yield* InstanceRepo
      const a = makeInstance()
      const b = makeInstance({ procStart: null, host: "host-b", pid: 1 })
      yield* repo.register(a)
      yield* repo.register(b)
      assert.deepStrictEqual(yield* repo.getMany([a.id]), [a])
      const both = yield* repo.getMany([b.id, a.id, makeInstanceId()])
      assert.deepStrictEqual([...both].sort((x, y) => x.id.localeCompare(y.id)), [a, b].sort((x, y) => x.id.localeCompare(y.id)))
      assert.deepStrictEqual(yield* repo.getMany([]), [])
    })))

  it.effect("heartbeat renews the lease until the instance is stopped", () =>
    withStore(Effect.gen(function*() {
      const repo = yield* InstanceRepo
      const instance = makeInstance()
      yield* repo.register(instance)

      assert.isTrue(yield* repo.heartbeat(instance.id, 11_000))
      assert.strictEqual((yield* repo.getMany([instance.id]))[0]!.heartbeatAt, 11_000)

      yield* repo.stop(instance.id, 12_000)
      const [stopped] = yield* repo.getMany([instance.id])
      assert.deepStrictEqual([stopped!.stoppedAt, stopped!.heartbeatAt], [12_000, 11_000])

      assert.isFalse(yield* repo.heartbeat(instance.id, 13_000))
      const [after] = yield* repo.getMany([instance.id])
      assert.deepStrictEqual([after!.stoppedAt, after!.heartbeatAt], [12_000, 11_000])

      // a second stop keeps the first stop time
      yield* repo.stop(instance.id, 14_000)
      assert.strictEqual((yield* repo.getMany([instance.id]))[0]!.stoppedAt, 12_000)
    })))

  it.effect("heartbeat of an unknown instance is false", () =>
    withStore(Effect.gen(function*() {
      assert.isFalse(yield* (yield* InstanceRepo).heartbeat(makeInstanceId(), 1_000))
    })))

  it.effect("listRunning returns the instances not stopped, newest first", () =>
    withStore(Effect.gen(function*() {
      const repo = yield* InstanceRepo
      const old = makeInstance({ startedAt: 1_000 })
      const recent = makeInstance({ startedAt: 3_000 })
      const stopped = makeInstance({ startedAt: 2_000 })
      const stoppedAtBirth = makeInstance({ startedAt: 4_000, stoppedAt: 4_500 })
      for (const instance of [old, stopped, recent, stoppedAtBirth]) yield* repo.register(instance)
      yield* repo.stop(stopped.id, 5_000)
      assert.deepStrictEqual(yield* repo.listRunning(), [recent, old])
    })))
})
