import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import { eventually, request, startServer } from "./support.js"

/** A small tmpfs in a temp folder: a real filesystem that fills up. Needs root (and mount); else skipped. */
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

describe.skipIf(mountPoint === undefined)("the server on a filesystem that fills up (tmpfs)", () => {
  it("GET /health shows the store degraded while a tool's end cannot be written, and ok once it is", async () => {
    const server = await startServer({ db: join(mountPoint!, "vigil.db") })
    try {
      const session = (await request(`${server.url}/session`, { body: {} })).body as { id: string }
      const started = await request(`${server.url}/session/${session.id}/tool`, { body: { tool: "bash", input: { command: "sleep 0.5; echo done" } } })
      assert.strictEqual(started.status, 202)
      const partId = started.body.partId as string
      const filler = join(mountPoint!, "filler")
      fill(filler)
      const degraded = await eventually(async () => {
        const health = (await request(`${server.url}/health`)).body
        return health.store.status === "degraded" ? health.store : undefined
      }, 20_000, "a degraded store")
      assert.isAtLeast(degraded.pendingWrites, 1)
      assert.include(degraded.lastError, "disk is full")
      rmSync(filler)
      await eventually(async () => {
        const health = (await request(`${server.url}/health`)).body
        return health.store.status === "ok" ? health : undefined
      }, 60_000, "the store ok again")
      const part = (await request(`${server.url}/part/${partId}`)).body
      assert.strictEqual(part.status, "completed", JSON.stringify(part))
      assert.include(part.output, "done")
      assert.strictEqual((await request(`${server.url}/session/${session.id}`)).body.status, "idle")
    } finally {
      await server.close()
    }
  }, 90_000)
})
