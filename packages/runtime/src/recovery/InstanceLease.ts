import { Instance, makeInstanceId } from "@vigil/domain"
import { InstanceRepo } from "@vigil/store"
import { Clock, Duration, Effect, Schedule } from "effect"
import { InstanceLocks } from "./InstanceLocks.js"
import { ProcessControl } from "../supervision/ProcessControl.js"
import { Settings } from "../Settings.js"

/**
 * This process as an instance: registered with a new id at every boot, its heartbeat renewed at a
 * third of the lease, marked stopped when its scope closes (a clean shutdown). A crash leaves the
 * heartbeat to expire, or, on this host, a pid that is gone.
 */
/** This process as an instance: a fresh id, its pid and start time, its lease. One record, whether registered or not. */
export const thisInstance = Effect.gen(function*() {
  const settings = yield* Settings
  const processes = yield* ProcessControl
  const now = yield* Clock.currentTimeMillis
  return new Instance({
    id: makeInstanceId(),
    pid: processes.pid,
    host: processes.host,
    procStart: yield* processes.selfStartTime,
    startedAt: now,
    heartbeatAt: now,
    leaseMillis: Duration.toMillis(settings.instanceLease),
    stoppedAt: null
  })
})

export class InstanceLease extends Effect.Service<InstanceLease>()("vigil/InstanceLease", {
  scoped: Effect.gen(function*() {
    const repo = yield* InstanceRepo
    const settings = yield* Settings
    const locks = yield* InstanceLocks
    const instance = yield* thisInstance
    // Taken before the row exists and released after it is marked stopped (scope order), so every
    // registered, running instance holds its lock (PostgreSQL; a no-op on SQLite).
    yield* locks.hold(instance.id).pipe(Effect.orDie)
    yield* Effect.acquireRelease(repo.register(instance), () =>
      Clock.currentTimeMillis.pipe(
        Effect.flatMap((at) => repo.stop(instance.id, at)),
        Effect.tap(() => Effect.logInfo("lease released"))
      ))

    const renew = Clock.currentTimeMillis.pipe(
      Effect.flatMap((at) => repo.heartbeat(instance.id, at)),
      Effect.tap((renewed) =>
        renewed ? Effect.void : Effect.logError("lease row is gone or marked stopped: a peer may have declared this instance dead")
      ),
      Effect.catchAllCause((cause) => Effect.logWarning("heartbeat failed", cause))
    )
    const third = Duration.unsafeDivide(settings.instanceLease, 3)
    yield* renew.pipe(
      Effect.delay(third),
      Effect.repeat(Schedule.spaced(third)),
      Effect.annotateLogs({ module: "InstanceLease", instance: instance.id }),
      Effect.forkScoped
    )
    yield* Effect.logInfo("instance registered").pipe(Effect.annotateLogs({ instance: instance.id, pid: instance.pid }))
    return { id: instance.id, instance } as const
  }),
  dependencies: [InstanceLocks.Live]
}) {}
