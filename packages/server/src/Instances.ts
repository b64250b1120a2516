import type { InstanceId } from "@vigil/domain"
import { InstanceLease, Liveness, RecoveryComplete } from "@vigil/runtime"
import { InstanceRepo, PartRepo, SessionRepo } from "@vigil/store"
import { Clock, Effect } from "effect"

/**
 * What `GET /instance` answers: the instances not known to have stopped, the owners of live
 * sessions and parts (a dead one among them is what the watchdog is about to rescue), the owners
 * of the newest sessions (a previous boot, stopped), and the dead owners the last startup recovery
 * handled, each with `Liveness`'s verdict. The store keeps one row
 * per boot forever; this reads the few that matter now, never the whole history.
 */
const recentSessions = 100

export const listInstances = Effect.gen(function*() {
  const instances = yield* InstanceRepo
  const sessions = yield* SessionRepo
  const parts = yield* PartRepo
  const liveness = yield* Liveness
  const lease = yield* InstanceLease
  const { report } = yield* RecoveryComplete
  return Effect.gen(function*() {
    const running = yield* instances.listRunning()
    const known = new Set(running.map((instance) => instance.id))
    const others = new Set<InstanceId>([
      ...(yield* sessions.activeOwners()),
      ...(yield* parts.activeOwners()),
      ...(yield* sessions.list({ limit: recentSessions })).map((session) => session.ownerId),
      ...report.deadOwners.map((owner) => owner.id)
    ])
    const extra = yield* instances.getMany([...others].filter((id) => !known.has(id)))
    const now = yield* Clock.currentTimeMillis
    // At once: on PostgreSQL a free lock is looked at twice, seconds apart (Liveness), and the
    // instances must not wait in turn.
    const rows = yield* Effect.forEach([...running, ...extra], (instance) =>
      Effect.map(liveness.causeOfDeath(instance, now), (cause) => ({
        ...instance,
        alive: cause === null,
        deathCause: cause,
        self: instance.id === lease.id,
        heartbeatAgeMs: Math.max(0, now - instance.heartbeatAt)
      })), { concurrency: "unbounded" })
    return { now, instances: rows.sort((a, b) => b.startedAt - a.startedAt) }
  })
})
