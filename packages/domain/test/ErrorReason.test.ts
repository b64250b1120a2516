import { assert, describe, it } from "@effect/vitest"
import {
  AbortIncomplete,
  describeReason,
  ErrorReason,
  IdleCancelled,
  OrphanedByCrash,
  SessionCancelled,
  ToolFailed,
  ToolTimeout,
  WatchdogStuck
} from "@vigil/domain"
import { Effect, Schema } from "effect"

describe("describeReason", () => {
  it("ToolTimeout", () => {
    assert.strictEqual(describeReason(new ToolTimeout({ timeout: 600_000 })), "tool timed out after 10m")
    assert.strictEqual(describeReason(new ToolTimeout({ timeout: 90_000 })), "tool timed out after 1m 30s")
  })

  it("OrphanedByCrash", () => {
    assert.strictEqual(
      describeReason(new OrphanedByCrash({ ownerId: "ins_dead" })),
      "interrupted: the server running it (ins_dead) stopped unexpectedly"
    )
  })

  it("WatchdogStuck", () => {
    assert.strictEqual(
      describeReason(new WatchdogStuck({ runningFor: 5_400_000, threshold: 3_600_000 })),
      "stopped by the watchdog: running for 1h 30m, over the limit of 1h"
    )
  })

  it("IdleCancelled", () => {
    assert.strictEqual(
      describeReason(new IdleCancelled({ idleFor: 1_860_000, threshold: 1_800_000 })),
      "cancelled: no activity for 31m (limit 30m)"
    )
  })

  it("SessionCancelled", () => {
    assert.strictEqual(describeReason(new SessionCancelled({ by: "user" })), "cancelled by user")
  })

  it("AbortIncomplete, with and without what the abort was for", () => {
    assert.strictEqual(
      describeReason(new AbortIncomplete({ grace: 5_000 })),
      "the abort did not finish within 5s, the work was abandoned"
    )
    assert.strictEqual(
      describeReason(new AbortIncomplete({ grace: 1_500, cause: "tool timed out after 10m" })),
      "tool timed out after 10m; the abort did not finish within 1s 500ms, the work was abandoned"
    )
  })

  it("ToolFailed is its message", () => {
    assert.strictEqual(describeReason(new ToolFailed({ message: "exit code 2: no such file" })), "exit code 2: no such file")
  })

  it("fractional milliseconds are rounded", () => {
    assert.strictEqual(describeReason(new ToolTimeout({ timeout: 1_999.6 })), "tool timed out after 2s")
  })
})

describe("ErrorReason schema", () => {
  it.effect("round-trips every reason through JSON as the same tagged class", () =>
    Effect.gen(function*() {
      const json = Schema.parseJson(ErrorReason)
      const reasons: ReadonlyArray<ErrorReason> = [
        new ToolTimeout({ timeout: 1 }),
        new OrphanedByCrash({ ownerId: "ins_x" }),
        new WatchdogStuck({ runningFor: 2, threshold: 1 }),
        new IdleCancelled({ idleFor: 3, threshold: 2 }),
        new SessionCancelled({ by: "api" }),
        new AbortIncomplete({ grace: 4, cause: "timeout" }),
        new ToolFailed({ message: "boom" })
      ]
      for (const reason of reasons) {
        const text = yield* Schema.encode(json)(reason)
        assert.strictEqual(JSON.parse(text)._tag, reason._tag)
        const back = yield* Schema.decode(json)(text)
        assert.strictEqual(back.constructor, reason.constructor)
        assert.deepStrictEqual(back, reason)
      }
    }))

  it.effect("rejects an unknown tag", () =>
    Effect.gen(function*() {
      const result = yield* Effect.either(Schema.decodeUnknown(ErrorReason)({ _tag: "Gone", x: 1 }))
      assert.strictEqual(result._tag, "Left")
    }))
})
