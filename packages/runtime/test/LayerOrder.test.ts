import { assert, describe, it } from "@effect/vitest"
import type { RecoveryReport } from "@vigil/domain"
import { Effect, Layer } from "effect"
import { expectTypeOf } from "vitest"
import { SupervisionLive } from "../src/SupervisionLayer.js"
import { SessionService } from "../src/agent/SessionService.js"
import { Recovered, RecoveryComplete } from "../src/recovery/StartupRecovery.js"
import * as Vigil from "../src/Vigil.js"

/**
 * "Startup recovery finishes before sessions are served" is a type: the session layer requires
 * `RecoveryComplete`, which only `StartupRecoveryLive` provides. `pnpm typecheck` compiles this
 * file, so removing the requirement breaks CI.
 */
describe("layer order", () => {
  it("the session layer cannot be built without startup recovery", () => {
    type SessionNeeds = Layer.Layer.Context<typeof SessionService.Default>
    expectTypeOf<RecoveryComplete>().toMatchTypeOf<SessionNeeds>()
    // @ts-expect-error — without a layer that provides RecoveryComplete, the requirement stays open.
    const _unbuildable: Layer.Layer<SessionService, never, Exclude<SessionNeeds, RecoveryComplete>> = SessionService.Default
    assert.isDefined(_unbuildable)
  })

  it("the full supervision graph provides it, so nothing outside has to", () => {
    type GraphNeeds = Layer.Layer.Context<typeof SupervisionLive>
    expectTypeOf<RecoveryComplete>().not.toMatchTypeOf<GraphNeeds>()
    assert.isDefined(SupervisionLive)
  })

  it("the composition provides it too: an app's graph never has to", () => {
    const composed = Vigil.layer()
    expectTypeOf<RecoveryComplete>().not.toMatchTypeOf<Layer.Layer.Context<typeof composed>>()
    expectTypeOf<SessionService>().toMatchTypeOf<Layer.Layer.Success<typeof composed>>()
    assert.isDefined(composed)
  })

  it.effect("RecoveryComplete cannot be made by hand: only startup recovery makes its value", () =>
    Effect.gen(function*() {
      const report: RecoveryReport = {
        dryRun: false,
        orphanedParts: 0,
        sessionsFreed: 0,
        processesKilled: 0,
        deadOwners: [],
        partIds: [],
        sessionIds: [],
        tookMs: 0
      }
      // @ts-expect-error — a plain object is not a `Recovered` (its private field makes the type nominal).
      const forged = Layer.succeed(RecoveryComplete, { report })
      // @ts-expect-error — and its constructor is private.
      const made = () => new Recovered(report)
      // What the types refuse is not one at run time either; what startup recovery made is.
      assert.isFalse(Recovered.is({ report }))
      assert.isDefined(forged)
      assert.isFunction(made)
      const real = yield* Effect.scoped(Effect.flatMap(Layer.build(Vigil.layerTest()), (context) =>
        Effect.provide(RecoveryComplete, context)))
      assert.isTrue(Recovered.is(real))
      assert.isTrue(real instanceof Recovered)
      assert.isFalse(real.report.dryRun)
    }))
})
