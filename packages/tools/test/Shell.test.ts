import { assert, describe, it } from "@effect/vitest"
import { PartId, SessionId } from "@vigil/domain"
import { Clock, Duration, Effect, Exit, Fiber, Option, Schema } from "effect"
import { mkdirSync, mkdtempSync, realpathSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BashTool, makeBashTool } from "../src/Bash.js"
import * as ProcessTable from "../src/ProcessTable.js"
import type { ShellOptions } from "../src/Shell.js"
import { pendingHighWater, runShell } from "../src/Shell.js"
import { outputCapBytes } from "../src/internal/CappedOutput.js"
import type { ProcessRecord, ToolContext } from "../src/Tool.js"
import { alive, pidsIn, testRun, waitFor } from "./support.js"

const killGraceMillis = 300

const shell = (command: string, options: Partial<ShellOptions> = {}) => {
  const started: Array<number> = []
  const steps: Array<string> = []
  const marker = { name: "VIGIL_PART_ID", value: `test-${Math.random()}` }
  const effect = runShell({
    command,
    cwd: tmpdir(),
    env: { [testRun.name]: testRun.value },
    marker,
    killGrace: Duration.millis(killGraceMillis),
    onStart: (proc) => Effect.sync(() => started.push(proc.pid)),
    onStep: (step) => Effect.sync(() => steps.push(step)),
    ...options
  })
  return { effect, started, steps, marker }
}

const markerHolders = (marker: { name: string; value: string }) => Effect.runSync(ProcessTable.withEnvMarker(marker.name, marker.value))

/** Waits (real time) until `output` has every label printed. */
const waitForOutput = (read: () => string, labels: ReadonlyArray<string>) =>
  waitFor(() => labels.every((label) => read().includes(`${label}=`)))

/** A shell that ignores SIGTERM, with a TERM-ignoring background job and a TERM-ignoring `setsid` escapee. */
const stubbornTree = [
  "trap '' TERM",
  "(trap '' TERM; sleep 300) & echo bg=$!",
  "setsid sh -c 'trap \"\" TERM; sleep 300' & echo setsid=$!",
  "echo shell=$$",
  "sleep 300"
].join("\n")

describe("runShell", () => {
  it.live("a tree that ignores SIGTERM, with a background and a setsid grandchild, is gone after the hard stop", () =>
    Effect.gen(function*() {
      let output = ""
      const { effect, marker, started, steps } = shell(stubbornTree, {
        onOutput: (chunk) => Effect.sync(() => (output += chunk))
      })
      const fiber = yield* Effect.fork(effect)
      yield* waitForOutput(() => output, ["bg", "setsid", "shell"])
      const pids = [...pidsIn(output, "bg"), ...pidsIn(output, "setsid"), ...pidsIn(output, "shell")]
      assert.strictEqual(pids.length, 3)
      // The setsid grandchild really left the tool's process group (only the marker can find it).
      const setsidInfo = Option.getOrThrow(yield* ProcessTable.info(pidsIn(output, "setsid")[0]!))
      assert.notStrictEqual(setsidInfo.pgid, started[0])
      for (const pid of pids) assert.isTrue(alive(pid), `pid ${pid} should run before the stop`)
      // The shell and its `sleep 300`, the subshell (dash execs its last command: one process), the
      // setsid sh and its sleep. The last `sleep 300` starts after the echoes: wait for the whole tree.
      yield* waitFor(() => markerHolders(marker).size >= 5)
      const tree = markerHolders(marker)

      const stopAt = performance.now()
      yield* Fiber.interrupt(fiber)
      const tookMs = performance.now() - stopAt

      for (const pid of [...pids, ...started, ...tree]) assert.isFalse(alive(pid), `pid ${pid} survived the hard stop`)
      assert.strictEqual(markerHolders(marker).size, 0, "no process with the part's marker is left")
      assert.deepStrictEqual(steps, ["term", "kill"])
      assert.isAtLeast(tookMs, killGraceMillis - 50, "SIGTERM was ignored, so only SIGKILL after the grace ends it")
      assert.isBelow(tookMs, killGraceMillis + 500)
      console.log(`hard stop of a TERM-ignoring tree of ${tree.size} processes (kill grace ${killGraceMillis} ms): dead after ${tookMs.toFixed(0)} ms`)
    }))

  it.live("a tree that honours SIGTERM is gone without waiting for the kill grace", () =>
    Effect.gen(function*() {
      let output = ""
      const { effect, marker, steps } = shell("sleep 300 & echo bg=$!; sleep 300", {
        killGrace: Duration.seconds(5),
        onOutput: (chunk) => Effect.sync(() => (output += chunk))
      })
      const fiber = yield* Effect.fork(effect)
      yield* waitForOutput(() => output, ["bg"])
      const stopAt = performance.now()
      yield* Fiber.interrupt(fiber)
      const tookMs = performance.now() - stopAt
      assert.strictEqual(markerHolders(marker).size, 0)
      assert.deepStrictEqual(steps, ["term"])
      assert.isBelow(tookMs, 1_000)
    }))

  it.live("`sleep 300 &` holding stdout does not keep a finished command running, and is ended", () =>
    Effect.gen(function*() {
      const { effect, marker, steps } = shell("sleep 300 & echo bg=$!; echo done")
      const startedAt = performance.now()
      const result = yield* effect
      const tookMs = performance.now() - startedAt
      assert.isBelow(tookMs, 1_000)
      assert.strictEqual(result.output, `bg=${pidsIn(result.output, "bg")[0]}\ndone\n`)
      const [bg] = pidsIn(result.output, "bg")
      assert.isFalse(alive(bg!), "the background job is ended with its tool")
      assert.strictEqual(markerHolders(marker).size, 0)
      assert.deepStrictEqual(steps, ["term", "survivors"])
      assert.strictEqual(result.exitCode, 0)
      console.log(`\`sleep 300 & echo done\`: done and cleaned up after ${tookMs.toFixed(0)} ms`)
    }))

  it.live("output over the cap is truncated with a marker; normal output is kept whole", () =>
    Effect.gen(function*() {
      const big = yield* shell("head -c 300000 /dev/zero | tr '\\0' 'x'; echo; echo the-end", { outputCap: 1_024 }).effect
      assert.isTrue(big.truncated)
      assert.match(big.output, /^x+\n… \[output truncated: \d+ bytes omitted\] …\nx+\nthe-end\n$/)
      assert.isAtMost(Buffer.byteLength(big.output), 1_024)
      const small = yield* shell("printf 'a\\nb\\n'").effect
      assert.strictEqual(small.output, "a\nb\n")
      assert.isFalse(small.truncated)
    }))

  it.live("over 64 KiB ending in an error: the head, the tail (the last stderr line) and the exit code are all kept", () =>
    Effect.gen(function*() {
      const command = "head -c 200000 /dev/zero | tr '\\0' 'x'; echo; echo 'fatal: the last stderr line' >&2; exit 3"
      const result = yield* shell(command, { fullOutput: () => "/data/output/p.log" }).effect
      assert.strictEqual(result.exitCode, 3)
      assert.isTrue(result.truncated)
      assert.isAtMost(Buffer.byteLength(result.output), outputCapBytes)
      assert.isTrue(result.output.startsWith("x".repeat(1_000)))
      // stdout and stderr are two pipes: the last line's place among the last bytes is not fixed.
      assert.isTrue(result.output.endsWith("\n[exit code 3]"), result.output.slice(-100))
      assert.include(result.output.slice(-100), "fatal: the last stderr line\n")
      assert.include(result.output, "; full output: /data/output/p.log] …")
    }))

  it.live("a flood is handed on in bounded batches, every byte of it, in order", () =>
    Effect.gen(function*() {
      let total = 0
      let largest = 0
      let last = ""
      const result = yield* shell("seq 1 2000000", {
        onOutput: (chunk) =>
          Effect.sync(() => {
            total += chunk.length
            largest = Math.max(largest, chunk.length)
            last = chunk
          }).pipe(Effect.zipRight(Effect.sleep(Duration.millis(5))))
      }).effect
      assert.strictEqual(result.exitCode, 0)
      // seq 1 2000000 prints 14,888,896 bytes.
      assert.strictEqual(total, 14_888_896)
      assert.isTrue(last.endsWith("2000000\n"))
      // The high-water mark plus at most one read (64 KiB) past it.
      assert.isAtMost(largest, pendingHighWater + 64 * 1024)
    }))

  it.live("a character split across two writes is decoded whole", () =>
    Effect.gen(function*() {
      const result = yield* shell("printf '\\303'; sleep 0.05; printf '\\251\\n'").effect
      assert.strictEqual(result.output, "é\n")
    }))

  it.live("a non-zero exit is a result with its code, not a failure; a bad cwd is a clear error", () =>
    Effect.gen(function*() {
      const failed = yield* shell("echo oops >&2; exit 3").effect
      assert.strictEqual(failed.exitCode, 3)
      assert.strictEqual(failed.output, "oops\n\n[exit code 3]")
      const missing = yield* Effect.flip(shell("true", { cwd: "/nonexistent/dir" }).effect)
      assert.strictEqual(missing.message, "working directory does not exist: /nonexistent/dir")
      const file = yield* Effect.flip(shell("true", { cwd: "/etc/hostname" }).effect)
      assert.strictEqual(file.message, "working directory is not a directory: /etc/hostname")
    }))

  it.live("progress is handed on while the command runs", () =>
    Effect.gen(function*() {
      const chunks: Array<string> = []
      yield* shell("echo one; sleep 0.3; echo two", { onOutput: (chunk) => Effect.sync(() => chunks.push(chunk)) }).effect
      assert.isAtLeast(chunks.length, 2)
      assert.strictEqual(chunks.join(""), "one\ntwo\n")
    }))

  // Plain `it.effect`: TestClock is installed and never adjusted. The drain and the hard stop wait on
  // real processes, so they must run on the live clock; the caller's callbacks keep the caller's clock.
  it.effect("under TestClock, the drain and the hard stop still finish, and callbacks see the caller's clock", () =>
    Effect.gen(function*() {
      const outputAt: Array<number> = []
      const stepAt: Array<number> = []
      const { effect, marker } = shell("sleep 300 & echo done", {
        onOutput: () => Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => outputAt.push(now))),
        onStep: () => Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => stepAt.push(now)))
      })
      const result = yield* effect
      assert.strictEqual(result.output, "done\n")
      assert.strictEqual(markerHolders(marker).size, 0)
      assert.deepStrictEqual(outputAt, [0])
      assert.isAtLeast(stepAt.length, 1)
      assert.isTrue(stepAt.every((at) => at === 0), `steps stamped with test time: ${stepAt.join(", ")}`)

      let output = ""
      const stubborn = shell(stubbornTree, { onOutput: (chunk) => Effect.sync(() => (output += chunk)) })
      const fiber = yield* Effect.fork(stubborn.effect)
      yield* waitForOutput(() => output, ["bg", "setsid", "shell"])
      const exit = yield* Fiber.interrupt(fiber)
      assert.isTrue(Exit.isInterrupted(exit))
      assert.strictEqual(markerHolders(stubborn.marker).size, 0)
    }))
})

describe("bash tool", () => {
  const sandbox = () => {
    const root = realpathSync(mkdtempSync(join(tmpdir(), "vigil-bash-")))
    mkdirSync(join(root, "sub"))
    return root
  }
  const contextIn = (root: string) => {
    const records: Array<ProcessRecord> = []
    const events: Array<string> = []
    const output: Array<string> = []
    const context: ToolContext = {
      partId: PartId.make(`prt_${Math.random()}`),
      sessionId: SessionId.make("ses_test"),
      root,
      output: (chunk) => Effect.sync(() => output.push(chunk)),
      recordProcess: (record) => Effect.sync(() => records.push(record)),
      event: (type) => Effect.sync(() => events.push(type))
    }
    return { context, records, events, output }
  }
  const tool = makeBashTool({ killGrace: Duration.millis(killGraceMillis) })

  it.live("runs in the root or a folder inside it, records its process, streams output, marks its tree", () =>
    Effect.gen(function*() {
      const root = sandbox()
      const { context, records, output } = contextIn(root)
      const env = `${testRun.name}=${testRun.value}`
      const here = yield* tool.run({ command: `export ${env}; pwd; echo "$VIGIL_PART_ID"` }, context)
      assert.strictEqual(here, `${root}\n${context.partId}\n`)
      assert.strictEqual(output.join(""), here)
      assert.strictEqual(records.length, 1)
      assert.strictEqual(records[0]!.pgid, records[0]!.pid)
      assert.match(records[0]!.startTime, /^\d+$/)
      assert.strictEqual(yield* tool.run({ command: "pwd", cwd: "sub" }, context), `${join(root, "sub")}\n`)
      const outside = yield* Effect.flip(tool.run({ command: "pwd", cwd: ".." }, context))
      assert.include(outside.message, `path ".." is outside the working directory`)
    }))

  it.live("escalation steps reach the event log as shell.* events", () =>
    Effect.gen(function*() {
      const { context, events } = contextIn(sandbox())
      yield* tool.run({ command: `export ${testRun.name}=${testRun.value}; sleep 300 & echo started` }, context)
      assert.deepStrictEqual(events, ["shell.term", "shell.survivors"])
      assert.strictEqual(markerHolders({ name: "VIGIL_PART_ID", value: context.partId }).size, 0)
    }))

  it.effect("the input schema refuses a missing command and a non-positive timeout; timeoutOf reads it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Schema.decodeUnknown(BashTool.input)({ cwd: "." }))
      assert.include(String(error), "command")
      const timeout = yield* Effect.flip(Schema.decodeUnknown(BashTool.input)({ command: "ls", timeout: -1 }))
      assert.include(String(timeout), "timeout")
      const input = yield* Schema.decodeUnknown(BashTool.input)({ command: "ls", timeout: 1_500 })
      assert.deepStrictEqual(BashTool.timeoutOf?.(input), Duration.millis(1_500))
      assert.isUndefined(BashTool.timeoutOf?.({ command: "ls" }))
    }))
})
