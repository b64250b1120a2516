import { assert, describe, it } from "@effect/vitest"
import { rmSync } from "node:fs"
import { join } from "node:path"
import { fillDisk, mountFullDiskFolder } from "../../runtime/test/fullDisk.js"
import { eventually, request, startServer } from "./support.js"

const mountPoint = mountFullDiskFolder()

describe.skipIf(mountPoint === undefined)("the server on a filesystem that fills up (tmpfs)", () => {
  it("GET /health shows the store degraded while a tool's end cannot be written, and ok once it is", async () => {
    const server = await startServer({ db: join(mountPoint!, "vigil.db") })
    try {
      const session = (await request(`${server.url}/session`, { body: {} })).body as { id: string }
      const started = await request(`${server.url}/session/${session.id}/tool`, { body: { tool: "bash", input: { command: "sleep 0.5; echo done" } } })
      assert.strictEqual(started.status, 202)
      const partId = started.body.partId as string
      const filler = join(mountPoint!, "filler")
      fillDisk(filler)
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
