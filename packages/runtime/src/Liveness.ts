import type { Instance, InstanceId } from "@vigil/domain"
import { leaseExpired } from "@vigil/domain"
import { InstanceRepo } from "@vigil/store"
import { Clock, Effect, Option } from "effect"
import { InstanceLease } from "./InstanceLease.js"
import { InstanceLocks } from "./InstanceLocks.js"
import { ProcessControl } from "./ProcessControl.js"

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
      // Another host: a free lock means its process is gone (its session ended with it). On this
      // host the pid answers more precisely (a lock can also be free while its connection is being
      // re-made). When the store cannot tell (SQLite, a failed check) the lease stays the rule.
      if (Option.exists(yield* locks.isHeld(instance.id), (held) => !held)) return "lock-released" as const
      return null
    })

    /** The dead among `ids`, with why; an id with no instance row at all is dead too. */
    const deadAmong = Effect.fn("Liveness.deadAmong")(function*(ids: ReadonlyArray<InstanceId>) {
      const now = yield* Clock.currentTimeMillis
      const others = ids.filter((id) => id !== self.id)
      const rows = yield* instances.getMany(others)
      const byId = new Map(rows.map((row) => [row.id, row]))
      const dead = new Map<InstanceId, { readonly cause: DeathCause; readonly instance: Instance | undefined }>()
      for (const id of others) {
        const instance = byId.get(id)
        const cause = instance === undefined ? "unknown-instance" as const : yield* causeOfDeath(instance, now)
        if (cause !== null) dead.set(id, { cause, instance })
      }
      return dead
    })

    return { causeOfDeath, deadAmong } as const
  }),
  dependencies: [InstanceLocks.Live]
}) {}
