import { assert, describe, it } from "@effect/vitest"
import { outputCapBytes, ToolTimeout } from "@vigil/domain"
import type { AnyTool } from "@vigil/tools"
import { makeBashTool } from "@vigil/tools"
import { Duration, Effect, Layer, Queue, Schema, TestClock } from "effect"
import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import { OutputFiles } from "../src/supervision/OutputFiles.js"
import { SessionService } from "../src/agent/SessionService.js"
import { getPart, testRuntime } from "./support.js"

const dirs: Array<string> = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "vigil-output-"))
  dirs.push(dir)
  return dir
}

const middle = "m".repeat(1_000) + "\n"
/** Told when the printer has handed on its last chunk (its writes to a file are real I/O, not on the TestClock). */
const printed = Effect.runSync(Queue.unbounded<string>())
/** Prints a head, 200 KB, a last line, then waits for its deadline. */
const printer: AnyTool = {
  name: "printer",
  description: "prints a lot, then hangs",
  input: Schema.Struct({ tail: Schema.String }),
  run: (input: { readonly tail: string }, context) =>
    Effect.gen(function*() {
      yield* context.output("HEAD LINE\n")
      for (let i = 0; i < 200; i++) yield* context.output(middle)
      yield* context.output(input.tail)
      yield* Queue.offer(printed, input.tail)
      return yield* Effect.never
    })
}

const withFiles = (dir: string, bounds: Partial<Parameters<typeof OutputFiles.layer>[0]> = {}) =>
  testRuntime({ tools: [printer, makeBashTool({ killGrace: Duration.millis(200) })] }).pipe(
    Layer.provide(OutputFiles.layer({ dir, ...bounds }))
  )

const runTool = (tool: string, input: unknown, timeout: number) =>
  Effect.gen(function*() {
    const sessions = yield* SessionService
    const session = yield* sessions.create()
    return yield* sessions.runTool(session.id, { tool, input, timeout: Duration.millis(timeout) })
  })

describe("a part's output", () => {
  it.effect("a part stopped by its deadline keeps the head and the tail of what it printed, within the cap", () =>
    Effect.gen(function*() {
      const { partId } = yield* runTool("printer", { tail: "the last line\n" }, 1_000)
      yield* Queue.take(printed)
      yield* TestClock.adjust(1_000)
      const part = yield* getPart(partId)
      assert.deepStrictEqual(part.error, new ToolTimeout({ timeout: 1_000 }))
      const output = part.output!
      assert.isAtMost(Buffer.byteLength(output), outputCapBytes)
      assert.isTrue(output.startsWith("HEAD LINE\n"), output.slice(0, 40))
      assert.isTrue(output.endsWith("m\nthe last line\n"), output.slice(-40))
      // No folder configured: only head and tail are kept, and the marker names no file.
      assert.notInclude(output, "full output:")
    }).pipe(Effect.provide(testRuntime({ tools: [printer] }))))

  it.effect("with an output folder, every byte goes to <dir>/<partId>.log and the part names it", () => {
    const dir = tempDir()
    return Effect.gen(function*() {
      const { partId } = yield* runTool("printer", { tail: "END\n" }, 1_000)
      yield* Queue.take(printed)
      yield* TestClock.adjust(1_000)
      const output = (yield* getPart(partId)).output!
      const file = join(dir, `${partId}.log`)
      assert.include(output, `; full output: ${file}] …`)
      assert.strictEqual(readFileSync(file, "utf8"), "HEAD LINE\n" + middle.repeat(200) + "END\n")
    }).pipe(Effect.provide(withFiles(dir)))
  })

  it.live("a part that prints under the cap makes no file, and its output names none", () => {
    const dir = tempDir()
    return Effect.gen(function*() {
      const { partId } = yield* runTool("bash", { command: "echo small; exit 3" }, 10_000)
      let part = yield* getPart(partId)
      while (part.status === "running") {
        yield* Effect.sleep(Duration.millis(50))
        part = yield* getPart(partId)
      }
      assert.strictEqual(part.output, "small\n\n[exit code 3]")
      assert.deepStrictEqual(readdirSync(dir), [])
    }).pipe(Effect.provide(withFiles(dir)))
  }, 30_000)

  it.effect("a file filled to its bound to the byte still says it stops there when more comes", () => {
    const dir = tempDir()
    return Effect.gen(function*() {
      const output = (yield* OutputFiles).track("exact")
      // 50,000-byte chunks: the second starts the file (past the 64 KiB kept in memory), the fourth fills its 200,000 bytes exactly.
      for (let i = 0; i < 5; i++) yield* output.add("y".repeat(50_000))
      yield* output.close
      const content = readFileSync(join(dir, "exact.log"), "utf8")
      assert.strictEqual(content, "y".repeat(200_000) + "\n… [the output file stops at 200000 bytes, its bound]\n")
    }).pipe(Effect.provide(OutputFiles.layer({ dir, maxFileBytes: 200_000, maxTotalBytes: 1_000_000 })))
  })

  it.effect("the folder is bounded: the oldest files go, and a file stops at its own bound", () => {
    const dir = tempDir()
    // Two stale files from an earlier run, the oldest first.
    for (const [name, age] of [["old-1.log", 3_000], ["old-2.log", 2_000]] as const) {
      writeFileSync(join(dir, name), "x".repeat(10))
      const at = new Date(Date.now() - age * 1_000)
      utimesSync(join(dir, name), at, at)
    }
    return Effect.gen(function*() {
      const first = yield* runTool("printer", { tail: "END\n" }, 1_000)
      yield* Queue.take(printed)
      yield* TestClock.adjust(1_000)
      const second = yield* runTool("printer", { tail: "END\n" }, 1_000)
      yield* Queue.take(printed)
      yield* TestClock.adjust(1_000)
      // maxFiles 3: the oldest stale file made room for the second part's file.
      assert.sameMembers(readdirSync(dir), ["old-2.log", `${first.partId}.log`, `${second.partId}.log`])
      const content = readFileSync(join(dir, `${second.partId}.log`), "utf8")
      assert.isTrue(content.startsWith("HEAD LINE\n" + "m".repeat(100)))
      assert.isTrue(content.endsWith("\n… [the output file stops at 100000 bytes, its bound]\n"), content.slice(-80))
      assert.isAtMost(Buffer.byteLength(content), 100_000 + 100)
    }).pipe(Effect.provide(withFiles(dir, { maxFiles: 3, maxFileBytes: 100_000, maxTotalBytes: 1_000_000 })))
  })

  it.live("a real shell past 64 KiB then stopped by its deadline: the tail and the file survive", () => {
    const dir = tempDir()
    return Effect.gen(function*() {
      const command = "head -c 300000 /dev/zero | tr '\\0' 'x'; echo; echo 'reached the end'; sleep 60"
      const { partId } = yield* runTool("bash", { command }, 1_500)
      let part = yield* getPart(partId)
      while (part.status === "running") {
        yield* Effect.sleep(Duration.millis(100))
        part = yield* getPart(partId)
      }
      assert.strictEqual(part.error?._tag, "ToolTimeout")
      const output = part.output!
      assert.isAtMost(Buffer.byteLength(output), outputCapBytes)
      assert.isTrue(output.startsWith("xxxx"))
      assert.isTrue(output.endsWith("x\nreached the end\n"), output.slice(-60))
      const file = join(dir, `${partId}.log`)
      assert.include(output, `full output: ${file}`)
      assert.strictEqual(readFileSync(file, "utf8"), "x".repeat(300_000) + "\nreached the end\n")
    }).pipe(Effect.provide(withFiles(dir)))
  }, 30_000)
})
