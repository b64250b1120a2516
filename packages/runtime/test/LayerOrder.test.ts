import { assert, describe, it } from "@effect/vitest"
import { Layer } from "effect"
import { expectTypeOf } from "vitest"
import { SupervisionLive } from "../src/Runtime.js"
import { SessionService } from "../src/SessionService.js"
import type { RecoveryComplete } from "../src/StartupRecovery.js"

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
})
