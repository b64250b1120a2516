import { assert, describe, it } from "@effect/vitest"
import { InstanceId, PartId, SessionId } from "@vigil/domain"
import { Effect } from "effect"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll } from "vitest"
import { chromiumAvailable, chromiumPath, ensureOutputDir, inCi, launchBrowser, outputDir } from "./DashboardSupport.js"
import { bashPartRow, seedDatabase, sessionRow } from "./seed.js"
import type { RunningServer } from "./support.js"
import { removeDirs, startServer, tempDir } from "./support.js"

/**
 * The dashboard on the paged lists (issue 19), measured on a real server holding what the issue
 * measured: 1,000 sessions and 10,000 live parts, owned by a live instance (this test process) so
 * nothing ends them meanwhile. The page reads `/session` and `/part/active` page by page; this
 * times the load to a full state and its first render (test-output/dashboard-pages.json).
 */

const dirs: Array<string> = []
let server: RunningServer
const owner = InstanceId.make("ins_dashpages0live")

const seed = (db: string) =>
  seedDatabase(db, owner, ({ now, parts, sessions }) =>
    Effect.gen(function*() {
      for (let i = 0; i < 1_000; i++) {
        const id = SessionId.make(`ses_dash${String(i).padStart(5, "0")}`)
        yield* sessions.insert(sessionRow({ id, title: `bench ${i}`, status: "busy", lastActivityAt: now, ownerId: owner, createdAt: now - i }))
      }
      for (let i = 0; i < 10_000; i++) {
        yield* parts.insert(bashPartRow({
          id: PartId.make(`prt_dash${String(i).padStart(6, "0")}`),
          sessionId: SessionId.make(`ses_dash${String(i % 1_000).padStart(5, "0")}`),
          input: { command: "sleep 1" },
          status: "running",
          createdAt: now - i,
          deadlineAt: now + 3_600_000,
          ownerId: owner
        }))
      }
    }))

describe.skipIf(!chromiumAvailable && !inCi)("the dashboard on paged lists", () => {
  beforeAll(async () => {
    if (!chromiumAvailable) throw new Error(`no chromium at ${chromiumPath} (set VIGIL_CHROMIUM): CI must run the browser tests`)
    ensureOutputDir()
    const db = join(tempDir(dirs), "vigil.db")
    server = await startServer({ db })
    await seed(db)
  }, 120_000)

  afterAll(async () => {
    await server?.close()
    removeDirs(dirs)
  })

  it("loads 1,000 sessions and 10,000 live parts page by page, and renders them", async () => {
    const { browser, close } = await launchBrowser()
    try {
      const page = await (await browser.newContext({ viewport: { width: 1440, height: 900 } })).newPage()
      const pageRequests: Array<string> = []
      page.on("request", (req) => pageRequests.push(new URL(req.url()).pathname + new URL(req.url()).search))
      const started = Date.now()
      await page.goto(server.url)
      await page.waitForFunction(() => {
        const dash = (window as unknown as { vigilDashboard: { state: { sessions: Map<string, unknown>; parts: Map<string, unknown> }; timings: { renders: number } } }).vigilDashboard
        return dash.state.sessions.size === 1_000 && dash.state.parts.size === 10_000 && dash.timings.renders > 0
      }, undefined, { timeout: 60_000, polling: 50 })
      const loadedMs = Date.now() - started
      const timings = await page.evaluate(() => (window as unknown as { vigilDashboard: { timings: { renders: number; lastMs: number; maxMs: number } } }).vigilDashboard.timings)
      const result = {
        sessions: 1_000,
        parts: 10_000,
        loadToFullStateMs: loadedMs,
        renderMaxMs: Math.round(timings.maxMs * 10) / 10,
        partPages: pageRequests.filter((path) => path.startsWith("/part/active")).length,
        sessionPages: pageRequests.filter((path) => path.startsWith("/session")).length
      }
      writeFileSync(join(outputDir, "dashboard-pages.json"), `${JSON.stringify(result, null, 2)}\n`)
      console.log(`dashboard on pages: ${JSON.stringify(result)}`)
      assert.strictEqual(result.partPages, 10, "10 pages of 1,000 live parts")
      assert.strictEqual(result.sessionPages, 1, "the newest 1,000 sessions in one page")
      // A guard against a page-per-row or quadratic load, not a benchmark.
      assert.isBelow(loadedMs, 30_000, JSON.stringify(result))
    } finally {
      await close()
    }
  }, 120_000)
})
