import { Context, Effect, Layer } from "effect"
import { Events } from "./Events.js"
import type { RescueReport } from "./Rescue.js"
import { Rescue } from "./Rescue.js"

/**
 * Proof that startup recovery ran. Only `StartupRecoveryLive` provides it, and the session service
 * requires it, so the session layer cannot be built before recovery finished: an order in the
 * types, not a convention.
 */
export class RecoveryComplete extends Context.Tag("vigil/RecoveryComplete")<
  RecoveryComplete,
  { readonly report: RescueReport }
>() {}

export const StartupRecoveryLive = Layer.effect(
  RecoveryComplete,
  Effect.gen(function*() {
    const rescue = yield* Rescue
    const events = yield* Events
    const report = yield* rescue.rescueDeadOwners({ trigger: "startup" })
    yield* Effect.logInfo("startup recovery completed").pipe(
      Effect.annotateLogs({
        orphanedParts: report.orphanedParts,
        sessionsFreed: report.sessionsFreed,
        processesKilled: report.processesKilled,
        deadOwners: report.deadOwners.length,
        tookMs: report.tookMs
      })
    )
    yield* events.publish({ type: "recovery.completed", report })
    return { report }
  }).pipe(Effect.withSpan("StartupRecovery"), Effect.annotateLogs({ module: "StartupRecovery" }))
)
