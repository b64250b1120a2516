import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { spawn } from "node:child_process"
import { hardStop } from "../src/HardStop.js"
import { alive, pidsIn, testRun, waitFor } from "./support.js"

/** A TERM-ignoring sh (not detached: in our own group) with a TERM-ignoring child; prints the child's pid. */
const startStubborn = () => {
  let output = ""
  const child = spawn("/bin/sh", ["-c", "trap '' TERM; (trap '' TERM; sleep 300) & echo child=$!; wait"], {
    env: { ...process.env, [testRun.name]: testRun.value },
    stdio: ["ignore", "pipe", "ignore"]
  })
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()))
  return { pid: child.pid!, output: () => output }
}

describe("hardStop", () => {
  it.live("given only a pid, finds its descendants and kills what ignores SIGTERM", () =>
    Effect.gen(function*() {
      const tree = startStubborn()
      yield* waitFor(() => tree.output().includes("child="))
      const [child] = pidsIn(tree.output(), "child")
      const steps: Array<string> = []
      const report = yield* hardStop({
        pids: [tree.pid],
        termGrace: Duration.millis(200),
        onStep: (step) => Effect.sync(() => steps.push(step))
      })
      assert.isFalse(alive(tree.pid))
      assert.isFalse(alive(child!))
      assert.includeMembers([...report.termed], [tree.pid, child!])
      assert.includeMembers([...report.killed], [tree.pid, child!])
      assert.deepStrictEqual(report.survivors, [])
      assert.deepStrictEqual(steps, ["term", "kill"])
      assert.isAtLeast(report.tookMs, 190)
      assert.isBelow(report.tookMs, 200 + 500)
      console.log(`hardStop by pid (term grace 200 ms): ${report.tookMs} ms`)
    }))

  it.live("nothing to stop is a quick, empty report with no steps", () =>
    Effect.gen(function*() {
      const steps: Array<string> = []
      const report = yield* hardStop({
        pids: [999_999_999],
        marker: { name: "VIGIL_PART_ID", value: "prt_nobody" },
        termGrace: Duration.seconds(5),
        onStep: (step) => Effect.sync(() => steps.push(step))
      })
      assert.deepStrictEqual({ ...report, tookMs: 0 }, { termed: [], killed: [], survivors: [], tookMs: 0 })
      assert.isBelow(report.tookMs, 200)
      assert.deepStrictEqual(steps, [])
    }))
})
