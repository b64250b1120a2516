import type { RecoveryReport } from "@vigil/domain"
import { Context, Effect, Layer } from "effect"
import { Events } from "../events/Events.js"
import { Recovery } from "./Recovery.js"

/** Only startup recovery makes a `Recovered`: set by the class's static block, not exported. */
let makeRecovered: (report: RecoveryReport) => Recovered

/**
 * What startup recovery leaves: its report. It cannot be made by hand: the constructor is private
 * and the private field makes the type nominal (an object literal `{ report }` is not one), so
 * `Layer.succeed(RecoveryComplete, …)` with a value of one's own does not compile
 * (test/LayerOrder.test.ts).
 */
export class Recovered {
  readonly #proof = true
  private constructor(readonly report: RecoveryReport) {}
  /** True for a value startup recovery made (a cast object is not one). */
  static is(value: unknown): value is Recovered {
    return typeof value === "object" && value !== null && #proof in value
  }
  static {
    makeRecovered = (report) => new Recovered(report)
  }
}

/**
 * Proof that startup recovery ran. Only `StartupRecoveryLive` provides it, and the session service
 * requires it, so the session layer cannot be built before recovery finished: an order in the
 * types, not a convention; and its value is a `Recovered`, which only this module can make.
 */
export class RecoveryComplete extends Context.Tag("vigil/RecoveryComplete")<RecoveryComplete, Recovered>() {}

export const StartupRecoveryLive = Layer.effect(
  RecoveryComplete,
  Effect.gen(function*() {
    const recovery = yield* Recovery
    const events = yield* Events
    const report = yield* recovery.recoverDeadOwners({ trigger: "startup" })
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
    return makeRecovered(report)
  }).pipe(Effect.withSpan("StartupRecovery"), Effect.annotateLogs({ module: "StartupRecovery" }))
)
