import { assert, describe, it } from "@effect/vitest"
import { Instance, InstanceId, makeSessionId, Session } from "@vigil/domain"
import { Liveness, Vigil } from "@vigil/runtime"
import type { Store } from "@vigil/store"
import { InstanceRepo, SessionRepo } from "@vigil/store"
import { PgStoreLive } from "@vigil/store/pg"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { freshPgSchema, pgSkipped } from "@vigil/store/test-database"
import { Clock, Duration, Effect, Layer } from "effect"
import { readStatus } from "../src/Status.js"
import { removeDirs, tempDir } from "./support.js"
import { afterAll } from "vitest"
import { join } from "node:path"

const dirs: Array<string> = []
afterAll(() => removeDirs(dirs))

/**
 * `vigil status` and `/instance` give each owner the same verdict: both apply Liveness's one rule.
 * Three owners on another host: one stopped, one whose lease expired, and one whose lease is fresh
 * but whose instance lock nobody holds (on PostgreSQL that one is dead, `lock-released`, where
 * the status used to say `alive`; on SQLite, where no lock can tell, both say it lives).
 */
const agreement = (store: Layer.Layer<Store>, lockFree: "lock-released" | "alive") =>
  Effect.gen(function*() {
    const instances = yield* InstanceRepo
    const sessions = yield* SessionRepo
    const liveness = yield* Liveness
    const now = yield* Clock.currentTimeMillis
    const owner = (name: string, fields: Partial<Instance>) =>
      new Instance({
        id: InstanceId.make(`ins_${name}`),
        pid: 4242,
        host: "elsewhere",
        procStart: "1",
        startedAt: now - 60_000,
        heartbeatAt: now,
        leaseMillis: 30_000,
        stoppedAt: null,
        ...fields
      })
    const owners = [
      owner("stopped", { stoppedAt: now - 1_000 }),
      owner("expired", { heartbeatAt: now - 600_000 }),
      owner("lockfree", {})
    ]
    for (const instance of owners) {
      yield* instances.register(instance)
      yield* sessions.insert(
        new Session({
          id: makeSessionId(),
          parentId: null,
          parentPartId: null,
          title: instance.id,
          status: "idle",
          cancelReason: null,
          lastActivityAt: now,
          ownerId: instance.id,
          createdAt: now
        })
      )
    }
    const [status, verdicts] = yield* Effect.all([
      readStatus,
      Effect.forEach(owners, (instance) => liveness.causeOfDeath(instance, now), { concurrency: "unbounded" })
    ], { concurrency: 2 })
    const fromStatus = owners.map((instance) => status.instances.get(instance.id)?.state)
    const fromInstance = verdicts.map((cause) => cause ?? "alive")
    assert.deepStrictEqual(fromStatus, fromInstance)
    assert.deepStrictEqual(fromStatus, ["stopped", "lease-expired", lockFree])
  }).pipe(Effect.provide(Vigil.layerRecovery(store, { settings: { instanceLease: Duration.seconds(30) } })))

describe("vigil status and /instance agree", () => {
  it.live("on SQLite: stopped, lease expired, and a fresh lease (no lock to tell)", () =>
    agreement(Layer.orDie(SqliteStoreLive(join(tempDir(dirs), "vigil.db"))), "alive"), 30_000)

  it.live.skipIf(pgSkipped)("on PostgreSQL: stopped, lease expired, and a fresh lease whose lock is free", () =>
    Effect.scoped(Effect.flatMap(freshPgSchema, (url) => agreement(Layer.orDie(PgStoreLive(url)), "lock-released"))), 60_000)
})
