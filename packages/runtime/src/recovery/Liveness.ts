import type { DeathCause, Instance, InstanceId } from "@vigil/domain"
import { leaseExpired } from "@vigil/domain"
import { InstanceRepo } from "@vigil/store"
import { ProcessTable } from "@vigil/tools"
import { Clock, Effect, Option } from "effect"
import { InstanceLease } from "./InstanceLease.js"
import type { InstanceLocksShape } from "./InstanceLocks.js"
import { InstanceLocks, lockConfirmAfter } from "./InstanceLocks.js"
import { ProcessControl, thisHost } from "../supervision/ProcessControl.js"

/** What the rule asks of the world: who asks (never dead to itself), this host and its pids, the store's locks. */
export interface LivenessProbe {
  readonly self: InstanceId | undefined
  readonly host: string
  readonly isAlive: (pid: number, startTime: string | null) => Effect.Effect<boolean>
  readonly isHeld: InstanceLocksShape["isHeld"]
}

/**
 * Why `instance` is dead at `now`, or `null` while it lives: the one rule, for the instances that
 * recover (`Liveness`) and for a reader that is none (`vigil status`, `instanceStates`), so both
 * give the same verdict.
 */
export const causeOfDeath = Effect.fnUntraced(function*(instance: Instance, now: number, probe: LivenessProbe) {
  if (instance.id === probe.self) return null
  if (instance.stoppedAt !== null) return "stopped" as const
  if (leaseExpired(instance, now)) return "lease-expired" as const
  if (instance.host === probe.host) {
    return (yield* probe.isAlive(instance.pid, instance.procStart)) ? null : "process-gone" as const
  }
  // Another host: a lock that stays free means its process is gone (its session ended with it).
  // A live instance's lock is also free for a moment while it re-makes a dropped connection, so
  // a free lock is looked at twice, `lockConfirmAfter` apart. On this host the pid answers
  // sooner. When the store cannot tell (SQLite, a failed check) the lease stays the rule.
  const isFree = Effect.map(probe.isHeld(instance.id), Option.exists((held) => !held))
  if (!(yield* isFree)) return null
  yield* Effect.sleep(lockConfirmAfter)
  return (yield* isFree) ? "lock-released" as const : null
})

/**
 * The verdict on each of `instances` for a reader that is no instance (`vigil status`): the rule
 * of `causeOfDeath` on this host's processes and the store's locks. At once: a free lock is looked
 * at twice, seconds apart, and the instances must not wait in turn.
 */
export const instanceStates = (instances: ReadonlyArray<Instance>, now: number) =>
  Effect.gen(function*() {
    const locks = yield* InstanceLocks
    const probe: LivenessProbe = {
      self: undefined,
      host: yield* thisHost,
      isAlive: (pid, startTime) => ProcessTable.isAlive(pid, startTime ?? undefined),
      isHeld: locks.isHeld
    }
    const states = new Map<InstanceId, DeathCause | null>()
    yield* Effect.forEach(instances, (instance) =>
      Effect.map(causeOfDeath(instance, now, probe), (cause) => void states.set(instance.id, cause)), {
      concurrency: "unbounded",
      discard: true
    })
    return states as ReadonlyMap<InstanceId, DeathCause | null>
  }).pipe(Effect.provide(InstanceLocks.Live))

/**
 * Who is dead. An instance that stopped or whose lease ran out is dead anywhere; a peer on this
 * host is dead at once when its pid is gone or now belongs to another process, so a crash next
 * door is repaired in milliseconds instead of a lease; on PostgreSQL a peer on another host is dead
 * at once when its instance lock is free. This instance is never dead to itself.
 */
export class Liveness extends Effect.Service<Liveness>()("vigil/Liveness", {
  effect: Effect.gen(function*() {
    const instances = yield* InstanceRepo
    const processes = yield* ProcessControl
    const self = yield* InstanceLease
    const locks = yield* InstanceLocks
    const probe: LivenessProbe = { self: self.id, host: processes.host, isAlive: processes.isAlive, isHeld: locks.isHeld }

    const judge = Effect.fn("Liveness.causeOfDeath")((instance: Instance, now: number) => causeOfDeath(instance, now, probe))

    /** The dead among `ids`, with why; an id with no instance row at all is dead too. */
    const deadAmong = Effect.fn("Liveness.deadAmong")(function*(ids: ReadonlyArray<InstanceId>) {
      const now = yield* Clock.currentTimeMillis
      const others = ids.filter((id) => id !== self.id)
      const rows = yield* instances.getMany(others)
      const byId = new Map(rows.map((row) => [row.id, row]))
      const dead = new Map<InstanceId, { readonly cause: DeathCause; readonly instance: Instance | undefined }>()
      // All at once: the second look at several free locks costs one wait, not one each.
      yield* Effect.forEach(others, (id) => {
        const instance = byId.get(id)
        return Effect.map(
          instance === undefined ? Effect.succeed("unknown-instance" as const) : judge(instance, now),
          (cause) => {
            if (cause !== null) dead.set(id, { cause, instance })
          }
        )
      }, { concurrency: "unbounded", discard: true })
      return dead
    })

    return { causeOfDeath: judge, deadAmong } as const
  }),
  dependencies: [InstanceLocks.Live]
}) {}
