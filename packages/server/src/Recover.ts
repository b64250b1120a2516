import type { Settings as SettingsShape, SettingsError } from "@vigil/domain"
import { Instance, makeInstanceId } from "@vigil/domain"
import type { RescueReport } from "@vigil/runtime"
import { Events, InstanceLease, Liveness, ProcessControl, Rescue, Settings } from "@vigil/runtime"
import type { StoreLocation } from "@vigil/store"
import { StoreLive } from "./Database.js"
import { Clock, Duration, Effect, Layer } from "effect"
import { formatRecovery } from "./Server.js"

/**
 * The identity a dry run acts as: never registered, so the database does not learn of it. Rescue
 * only needs an id that owns nothing (this process is never dead to itself).
 */
const UnregisteredLease = Layer.effect(
  InstanceLease,
  Effect.gen(function*() {
    const settings = yield* Settings
    const processes = yield* ProcessControl
    const now = yield* Clock.currentTimeMillis
    const instance = new Instance({
      id: makeInstanceId(),
      pid: processes.pid,
      host: processes.host,
      procStart: yield* processes.selfStartTime,
      startedAt: now,
      heartbeatAt: now,
      leaseMillis: Duration.toMillis(settings.instanceLease),
      stoppedAt: null
    })
    return InstanceLease.make({ id: instance.id, instance })
  })
)

/**
 * What `vigil recover` runs on: the shared rescue, over the store, as a short-lived instance (a
 * registered lease, released at the end) or, for a dry run, an unregistered one that writes nothing.
 */
export const RecoverLive = (options: {
  readonly store: StoreLocation
  readonly dryRun: boolean
  readonly settings: Effect.Effect<SettingsShape, SettingsError>
}) =>
  Layer.unwrapEffect(
    Effect.map(options.settings, (settings) =>
      Rescue.Default.pipe(
        Layer.provideMerge(Liveness.Default),
        Layer.provideMerge(Events.Default),
        Layer.provideMerge(options.dryRun ? UnregisteredLease : InstanceLease.Default),
        Layer.provideMerge(ProcessControl.Live),
        Layer.provideMerge(StoreLive(options.store)),
        Layer.provideMerge(Layer.succeed(Settings, settings))
      ))
  )

export const recover = (options: { readonly dryRun: boolean }) =>
  Effect.flatMap(Rescue, (rescue) => rescue.rescueDeadOwners({ dryRun: options.dryRun, trigger: "cli" }))

/** The report: the one-line summary, then the dead owners and what they left. */
export const formatRescue = (report: RescueReport): string => {
  const lines = [formatRecovery(report)]
  for (const owner of report.deadOwners) lines.push(`  dead owner ${owner.id}: ${owner.cause}`)
  const verb = report.dryRun ? "would end" : "ended"
  if (report.partIds.length > 0) {
    lines.push(`  ${verb} parts (OrphanedByCrash): ${report.partIds.join(", ")}${report.orphanedParts > report.partIds.length ? ", …" : ""}`)
  }
  if (report.sessionIds.length > 0) {
    lines.push(`  freed sessions: ${report.sessionIds.join(", ")}${report.sessionsFreed > report.sessionIds.length ? ", …" : ""}`)
  }
  if (report.deadOwners.length === 0) lines.push("  nothing to recover: every owner of running work is alive")
  return lines.join("\n")
}
