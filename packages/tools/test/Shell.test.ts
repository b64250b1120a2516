import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Schema } from "effect"
import { tmpdir } from "node:os"
import { BashTool } from "../src/Bash.js"
import * as ProcessTable from "../src/ProcessTable.js"
import type { ShellOptions } from "../src/Shell.js"
import { runShell } from "../src/Shell.js"
import { alive, pidsIn, testRun } from "./support.js"

const shell = (command: string, options: Partial<ShellOptions> = {}) => {
  const started: Array<number> = []
  const steps: Array<string> = []
  const effect = runShell({
    command,
    cwd: tmpdir(),
    env: { [testRun.name]: testRun.value },
    marker: { name: "VIGIL_PART_ID", value: `test-${Math.random()}` },
    killGrace: Duration.millis(300),
    onStart: (proc) => Effect.sync(() => started.push(proc.pid)),
    onStep: (step) => Effect.sync(() => steps.push(step)),
    ...options
  })
  return { effect, started, steps }
}

/** Waits (real time) until `output` has every label printed. */
const waitForOutput = (read: () => string, labels: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      if (labels.every((label) => read().includes(`${label}=`))) return
      yield* Effect.sleep(Duration.millis(20))
    }
    throw new Error(`never printed ${labels.join(", ")}: ${read()}`)
  })

describe("runShell", () => {
  it.live("a tree that ignores SIGTERM, with a background and a setsid grandchild, is gone after the hard stop", () =>
    Effect.gen(function*() {
      let output = ""
      const { effect, started, steps } = shell(
        [
          "trap '' TERM",
          "(trap '' TERM; sleep 300) & echo bg=$!",
          "setsid sh -c 'trap \"\" TERM; sleep 300' & echo setsid=$!",
          "echo shell=$$",
          "sleep 300"
        ].join("\n"),
        { onOutput: (chunk) => Effect.sync(() => (output += chunk)) }
      )
      const fiber = yield* Effect.fork(effect)
      yield* waitForOutput(() => output, ["bg", "setsid", "shell"])
      const pids = [...pidsIn(output, "bg"), ...pidsIn(output, "setsid"), ...pidsIn(output, "shell")]
      assert.strictEqual(pids.length, 3)
      // The setsid grandchild really left the tool's process group.
      const setsidInfo = yield* ProcessTable.info(pidsIn(output, "setsid")[0]!)
      assert.notStrictEqual(setsidInfo._tag === "Some" ? setsidInfo.value.pgid : -1, started[0])
      for (const pid of pids) assert.isTrue(alive(pid), `pid ${pid} should run before the stop`)
      const stopAt = performance.now()
      yield* Fiber.interrupt(fiber)
      const tookMs = performance.now() - stopAt
      for (const pid of [...pids, ...started]) assert.isFalse(alive(pid), `pid ${pid} survived the hard stop`)
      assert.includeMembers(steps, ["term", "kill"])
      assert.isBelow(tookMs, 300 + 500)
      console.log(`hard stop of a TERM-ignoring tree (kill grace 300 ms): dead after ${tookMs.toFixed(0)} ms`)
    }))

  it.live("`sleep 300 &` holding stdout does not keep a finished command running, and is ended", () =>
    Effect.gen(function*() {
      const { effect, steps } = shell("sleep 300 & echo bg=$!; echo done")
      const startedAt = performance.now()
      const result = yield* effect
      const tookMs = performance.now() - startedAt
      assert.isBelow(tookMs, 1_000)
      assert.include(result.output, "done")
      const [bg] = pidsIn(result.output, "bg")
      assert.isFalse(alive(bg!), "the background job is ended with its tool")
      assert.include(steps, "survivors")
      assert.strictEqual(result.exitCode, 0)
    }))

  it.live("output over the cap is truncated with a marker; normal output is kept whole", () =>
    Effect.gen(function*() {
      const big = yield* shell("head -c 300000 /dev/zero | tr '\\0' 'x'; echo; echo the-end", { outputCap: 1_024 }).effect
      assert.isTrue(big.truncated)
      assert.match(big.output, /\[output truncated: \d+ bytes omitted\]/)
      assert.isTrue(big.output.startsWith("x".repeat(512)))
      assert.include(big.output, "the-end")
      assert.isBelow(big.output.length, 1_200)
      const small = yield* shell("printf 'a\\nb\\n'").effect
      assert.strictEqual(small.output, "a\nb\n")
      assert.isFalse(small.truncated)
    }))

  it.live("a non-zero exit is a result with its code, not a failure; a bad cwd is a clear error", () =>
    Effect.gen(function*() {
      const failed = yield* shell("echo oops >&2; exit 3").effect
      assert.strictEqual(failed.exitCode, 3)
      assert.strictEqual(failed.output, "oops\n\n[exit code 3]")
      const missing = yield* Effect.flip(shell("true", { cwd: "/nonexistent/dir" }).effect)
      assert.include(missing.message, "cannot")
    }))

  it.live("progress is handed on while the command runs", () =>
    Effect.gen(function*() {
      const chunks: Array<string> = []
      yield* shell("echo one; sleep 0.3; echo two", { onOutput: (chunk) => Effect.sync(() => chunks.push(chunk)) }).effect
      assert.isAtLeast(chunks.length, 2)
      assert.strictEqual(chunks.join(""), "one\ntwo\n")
    }))
})

describe("bash tool input", () => {
  it.effect("a missing command is refused by the schema", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Schema.decodeUnknown(BashTool.input)({ cwd: "." }))
      assert.include(String(error), "command")
      const timeout = yield* Effect.flip(Schema.decodeUnknown(BashTool.input)({ command: "ls", timeout: -1 }))
      assert.include(String(timeout), "timeout")
    }))
})
