import type { Settings as SettingsShape, SettingsError } from "@vigil/domain"
import type { RescueReport } from "@vigil/runtime"
import { Rescue, Vigil } from "@vigil/runtime"
import type { StoreLocation } from "@vigil/store"
import { StoreLive } from "./Database.js"
import { Effect, Layer } from "effect"
import { formatRecovery } from "./Server.js"

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
    Effect.map(options.settings, (settings) => Vigil.layerRescue(StoreLive(options.store), { settings, dryRun: options.dryRun }))
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
