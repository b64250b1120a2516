import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { spawn } from "node:child_process"
import * as ProcessTable from "../src/ProcessTable.js"
import { testRun } from "./support.js"

const startSleeper = (env: Record<string, string> = {}) => {
  const child = spawn("sleep", ["30"], { env: { ...process.env, ...env, [testRun.name]: testRun.value }, stdio: "ignore" })
  return child
}

describe("ProcessTable", () => {
  it.live("start time identifies a process: a pid with another start time is not alive", () =>
    Effect.gen(function*() {
      const child = startSleeper()
      try {
        const pid = child.pid!
        const start = Option.getOrThrow(yield* ProcessTable.startTime(pid))
        assert.isTrue(yield* ProcessTable.isAlive(pid))
        assert.isTrue(yield* ProcessTable.isAlive(pid, start))
        assert.isFalse(yield* ProcessTable.isAlive(pid, String(Number(start) + 1)))
        assert.isTrue(Option.isSome(yield* ProcessTable.selfStartTime().pipe(Effect.map(Option.fromNullable))))
      } finally {
        child.kill("SIGKILL")
      }
    }))

  it.live("a dead pid and a zombie are not alive", () =>
    Effect.gen(function*() {
      const child = startSleeper()
      const pid = child.pid!
      // Killed but not yet reaped by us: a zombie until node's exit handler runs.
      process.kill(pid, "SIGKILL")
      yield* Effect.sleep("50 millis")
      assert.isFalse(yield* ProcessTable.isAlive(pid))
      assert.isFalse(yield* ProcessTable.isAlive(999_999_999))
    }))

  it.live("finds processes by their environment marker, and descendants by parent", () =>
    Effect.gen(function*() {
      const child = startSleeper({ VIGIL_PART_ID: "prt_marker_test" })
      try {
        const found = yield* ProcessTable.withEnvMarker("VIGIL_PART_ID", "prt_marker_test")
        assert.deepStrictEqual([...found], [child.pid!])
        const batch = yield* ProcessTable.withEnvMarkers("VIGIL_PART_ID", new Set(["prt_marker_test", "prt_other"]))
        assert.deepStrictEqual([...(batch.get("prt_marker_test") ?? [])], [child.pid!])
        assert.isFalse(batch.has("prt_other"))
        const mine = yield* ProcessTable.descendants([process.pid])
        assert.isTrue(mine.has(child.pid!))
      } finally {
        child.kill("SIGKILL")
      }
    }))
})
