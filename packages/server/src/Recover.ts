import type { Settings as SettingsShape, SettingsError } from "@vigil/domain"
import { Recovery, Vigil } from "@vigil/runtime"
import type { StoreLocation } from "@vigil/store"
import { StoreLive } from "./Database.js"
import { Effect, Layer } from "effect"

/**
 * What `vigil recover` runs on: the shared recovery, over the store, as a short-lived instance (a
 * registered lease, released at the end) or, for a dry run, an unregistered one that writes nothing.
 */
export const RecoverLive = (options: {
  readonly store: StoreLocation
  readonly dryRun: boolean
  readonly settings: Effect.Effect<SettingsShape, SettingsError>
}) =>
  Layer.unwrapEffect(
    Effect.map(options.settings, (settings) => Vigil.layerRecovery(StoreLive(options.store), { settings, dryRun: options.dryRun }))
  )

export const recover = (options: { readonly dryRun: boolean }) =>
  Effect.flatMap(Recovery, (recovery) => recovery.recoverDeadOwners({ dryRun: options.dryRun, trigger: "cli" }))
