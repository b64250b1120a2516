import type { Instance, InstanceId } from "@vigil/domain"
import { leaseExpired } from "@vigil/domain"
import { InstanceRepo } from "@vigil/store"
import { Clock, Effect, Option } from "effect"
import { InstanceLease } from "./InstanceLease.js"
import { InstanceLocks, lockConfirmAfter } from "./InstanceLocks.js"
import { ProcessControl } from "../supervision/ProcessControl.js"

export type DeathCause = "stopped" | "lease-expired" | "process-gone" | "lock-released" | "unknown-instance"

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

    const causeOfDeath = Effect.fn("Liveness.causeOfDeath")(function*(instance: Instance, now: number) {
      if (instance.id === self.id) return null
      if (instance.stoppedAt !== null) return "stopped" as const
      if (leaseExpired(instance, now)) return "lease-expired" as const
      if (instance.host === processes.host) {
        return (yield* processes.isAlive(instance.pid, instance.procStart)) ? null : "process-gone" as const
      }
      // Another host: a lock that stays free means its process is gone (its session ended with it).
      // A live instance's lock is also free for a moment while it re-makes a dropped connection, so
      // a free lock is looked at twice, `lockConfirmAfter` apart. On this host the pid answers
      // sooner. When the store cannot tell (SQLite, a failed check) the lease stays the rule.
      const isFree = Effect.map(locks.isHeld(instance.id), Option.exists((held) => !held))
      if (!(yield* isFree)) return null
      yield* Effect.sleep(lockConfirmAfter)
      return (yield* isFree) ? "lock-released" as const : null
    })

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
          instance === undefined ? Effect.succeed("unknown-instance" as const) : causeOfDeath(instance, now),
          (cause) => {
            if (cause !== null) dead.set(id, { cause, instance })
          }
        )
      }, { concurrency: "unbounded", discard: true })
      return dead
    })

    return { causeOfDeath, deadAmong } as const
  }),
  dependencies: [InstanceLocks.Live]
}) {}
