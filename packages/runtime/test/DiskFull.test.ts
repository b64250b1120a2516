import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { rmSync } from "node:fs"
import { join } from "node:path"
import { fillDisk, mountFullDiskFolder } from "./fullDisk.js"
import { PendingWrites } from "../src/supervision/PendingWrites.js"
import { SessionService } from "../src/agent/SessionService.js"
import { allTestTools, getPart, testRuntime } from "./support.js"

const mountPoint = mountFullDiskFolder()

describe.skipIf(mountPoint === undefined)("a full filesystem under the SQLite file (tmpfs)", () => {
  it.live("a tool that ends while the disk is full frees its session at once; its end is written once there is room", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const pending = yield* PendingWrites
      const session = yield* sessions.create()
      const { done, partId } = yield* sessions.runTool(session.id, { tool: "sleep", input: { ms: 300 } })
      const filler = join(mountPoint!, "filler")
      fillDisk(filler)
      const result = yield* done
      assert.deepStrictEqual(result, { _tag: "Completed", text: "slept 300" })
      assert.isFalse(yield* sessions.isTurnRunningHere(session.id))
      const health = yield* pending.health
      assert.strictEqual(health.status, "degraded")
      assert.isAtLeast(health.pendingWrites, 1)
      assert.strictEqual((yield* getPart(partId)).status, "running")
      rmSync(filler)
      for (let i = 0; i < 100 && (yield* pending.health).pendingWrites > 0; i++) yield* Effect.sleep("100 millis")
      assert.strictEqual((yield* pending.health).status, "ok")
      const part = yield* getPart(partId)
      assert.strictEqual(part.status, "completed")
      assert.strictEqual(part.output, "slept 300")
      assert.strictEqual((yield* sessions.get(session.id)).status, "idle")
    }).pipe(Effect.provide(testRuntime({ tools: allTestTools, file: join(mountPoint!, "vigil.db") }))), 60_000)
})
