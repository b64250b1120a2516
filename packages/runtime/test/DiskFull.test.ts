import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync, writeSync, openSync, closeSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import { PendingWrites } from "../src/PendingWrites.js"
import { SessionService } from "../src/SessionService.js"
import { allTestTools, getPart, testRuntime } from "./support.js"

/** A small tmpfs in a temp folder: a real filesystem that fills up. Needs root (and mount); else the test is skipped. */
const mountPoint = (() => {
  if (process.getuid?.() !== 0) return undefined
  const dir = mkdtempSync(join(tmpdir(), "vigil-full-"))
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", dir], { stdio: "ignore" })
    return dir
  } catch {
    rmSync(dir, { recursive: true, force: true })
    return undefined
  }
})()

afterAll(() => {
  if (mountPoint === undefined) return
  try {
    execFileSync("umount", ["-l", mountPoint], { stdio: "ignore" })
  } finally {
    rmSync(mountPoint, { recursive: true, force: true })
  }
})

const ci = (process.env["CI"] ?? "") !== "" && process.env["CI"] !== "false"

// In CI (root, as CI runs) the real full disk must be exercised: a skip there would pass on nothing.
it.runIf(ci && process.getuid?.() === 0 && mountPoint === undefined)("in CI as root a tmpfs can be mounted for the full-disk test", () => {
  assert.fail("mount -t tmpfs failed as root with CI=true: the full-disk test did not run")
})

/** Writes a file until the filesystem refuses more (ENOSPC). */
const fill = (file: string) => {
  const fd = openSync(file, "w")
  const block = Buffer.alloc(64 * 1024, 1)
  try {
    for (;;) writeSync(fd, block)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error
  } finally {
    closeSync(fd)
  }
}

describe.skipIf(mountPoint === undefined)("a full filesystem under the SQLite file (tmpfs)", () => {
  it.live("a tool that ends while the disk is full frees its session at once; its end is written once there is room", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionService
      const pending = yield* PendingWrites
      const session = yield* sessions.create()
      const { done, partId } = yield* sessions.runTool(session.id, { tool: "sleep", input: { ms: 300 } })
      const filler = join(mountPoint!, "filler")
      fill(filler)
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
