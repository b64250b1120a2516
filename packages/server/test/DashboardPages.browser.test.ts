import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Instance, InstanceId, Part, PartId, Session, SessionId } from "@vigil/domain"
import { InstanceRepo, PartRepo, SessionRepo } from "@vigil/store"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Effect } from "effect"
import { writeFileSync } from "node:fs"
import { hostname } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll } from "vitest"
import { chromiumAvailable, chromiumPath, ensureOutputDir, inCi, launchBrowser, outputDir } from "./DashboardSupport.js"
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
  Effect.runPromise(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const sessions = yield* SessionRepo
      const parts = yield* PartRepo
      const now = Date.now()
      yield* (yield* InstanceRepo).register(
        new Instance({ id: owner, pid: process.pid, host: hostname(), procStart: null, startedAt: now, heartbeatAt: now, leaseMillis: 86_400_000, stoppedAt: null })
      )
      yield* sql.withTransaction(Effect.gen(function*() {
        for (let i = 0; i < 1_000; i++) {
          const id = SessionId.make(`ses_dash${String(i).padStart(5, "0")}`)
          yield* sessions.insert(
            new Session({ id, parentId: null, parentPartId: null, title: `bench ${i}`, status: "busy", cancelReason: null, lastActivityAt: now, ownerId: owner, createdAt: now - i })
          )
        }
        for (let i = 0; i < 10_000; i++) {
          yield* parts.insert(
            new Part({
              id: PartId.make(`prt_dash${String(i).padStart(6, "0")}`),
              sessionId: SessionId.make(`ses_dash${String(i % 1_000).padStart(5, "0")}`),
              kind: "tool",
              tool: "bash",
              input: { command: "sleep 1" },
              callId: null,
              status: "running",
              output: null,
              error: null,
              createdAt: now - i,
              startedAt: now - i,
              endedAt: null,
              deadlineAt: now + 3_600_000,
              ownerId: owner,
              childSessionId: null,
              pid: null,
              pgid: null,
              procStart: null
            })
          )
        }
      }))
    }).pipe(Effect.provide(SqliteStoreLive(db)))
  )

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
