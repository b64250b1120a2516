import { assert, describe, it } from "@effect/vitest"
import { InstanceId, PartId, SessionId } from "@vigil/domain"
import type { Part } from "@vigil/domain"
import { Effect } from "effect"
import { join } from "node:path"
import { afterAll, beforeAll } from "vitest"
import type { RunningServer } from "./support.js"
import { bashPartRow, seedDatabase, sessionRow } from "./seed.js"
import { removeDirs, request, rowCounts, startServer, tempDir } from "./support.js"

/**
 * Issue 19, "pages, not floods": every list comes in pages (`{items, next}`), with `limit` and a
 * cursor, and is never cut without saying so. Seeded straight into the database, as a long-lived
 * server holds it: 2,500 sessions (with runs of equal `createdAt`, so the keyset's tie-break on
 * the id is exercised), 2,300 parts of 4 KiB in one session, and 10,000 live parts (the dashboard's figure) owned by a live
 * instance (this test process), so neither recovery nor the watchdog ends them meanwhile.
 */

const dirs: Array<string> = []
let server: RunningServer
let url: string
const sessionCount = 2_500
const bigSessionParts = 2_300
const activeCount = 10_000
const bigSession = SessionId.make("ses_big")
const owner = InstanceId.make("ins_pages0live")

const seed = (db: string) =>
  seedDatabase(db, owner, ({ now, parts, sessions }) =>
    Effect.gen(function*() {
      const session = (id: SessionId, createdAt: number) => sessionRow({ id, ownerId: owner, createdAt })
      const part = (id: string, sessionId: SessionId, status: Part["status"], output: string | null) =>
        bashPartRow({ id: PartId.make(id), sessionId, status, output, ownerId: owner, createdAt: now })
      // Ten sessions share each millisecond.
      for (let i = 0; i < sessionCount; i++) {
        yield* sessions.insert(session(SessionId.make(`ses_p${String(i).padStart(5, "0")}`), now - 1_000_000 + Math.floor(i / 10)))
      }
      yield* sessions.insert(session(bigSession, now - 2_000_000))
      const output = "o".repeat(4096)
      for (let i = 0; i < bigSessionParts; i++) {
        yield* parts.insert(part(`prt_b${String(i).padStart(5, "0")}`, bigSession, "completed", output))
      }
      for (let i = 0; i < activeCount; i++) {
        const sessionId = SessionId.make(`ses_p${String(i % sessionCount).padStart(5, "0")}`)
        yield* parts.insert(part(`prt_a${String(i).padStart(5, "0")}`, sessionId, i % 2 === 0 ? "running" : "pending", null))
        if (i % 5 === 0) yield* parts.insert(part(`prt_e${String(i).padStart(5, "0")}`, sessionId, "completed", "done"))
      }
    }))

beforeAll(async () => {
  const db = join(tempDir(dirs), "vigil.db")
  server = await startServer({ db })
  url = server.url
  await seed(db)
}, 120_000)

afterAll(async () => {
  await server?.close()
  removeDirs(dirs)
})

interface Page {
  readonly items: Array<{ readonly id: string; readonly createdAt: number; readonly status: string }>
  readonly next: string | null
}

/** Every page of a list, following `next`; with the size of the largest page's body. */
const allPages = async (path: string, limit?: number) => {
  const items: Array<Page["items"][number]> = []
  let cursor: string | null = null
  let pages = 0
  let largestBytes = 0
  const started = performance.now()
  do {
    const query = new URLSearchParams()
    if (limit !== undefined) query.set("limit", String(limit))
    if (cursor !== null) query.set("cursor", cursor)
    const response = await fetch(`${url}${path}?${query}`)
    const text = await response.text()
    assert.strictEqual(response.status, 200, text)
    largestBytes = Math.max(largestBytes, text.length)
    const page = JSON.parse(text) as Page
    assert.isAtMost(page.items.length, limit ?? 100)
    items.push(...page.items)
    cursor = page.next
    pages++
  } while (cursor !== null)
  return { items, pages, largestBytes, tookMs: Math.round(performance.now() - started) }
}

describe("pages", () => {
  it("GET /session: 100 by default with a next cursor; following it yields every session once, newest first", async () => {
    const first = (await request(`${url}/session`)).body as Page
    assert.strictEqual(first.items.length, 100)
    assert.isString(first.next)
    const all = await allPages("/session", 1_000)
    const ids = all.items.map((session) => session.id)
    assert.strictEqual(ids.length, sessionCount + 1, "nothing cut, nothing repeated")
    assert.strictEqual(new Set(ids).size, ids.length)
    assert.strictEqual(all.pages, 3)
    for (let i = 1; i < all.items.length; i++) {
      const [a, b] = [all.items[i - 1]!, all.items[i]!]
      assert.isTrue(a.createdAt > b.createdAt || (a.createdAt === b.createdAt && a.id > b.id), `${a.id} before ${b.id}`)
    }
    // Pages of 7 cut through the runs of equal createdAt: still each session once.
    const small = await allPages("/session", 7)
    assert.deepStrictEqual(small.items.map((session) => session.id), ids)
    console.log(`GET /session: ${sessionCount + 1} sessions in ${all.pages} pages of 1,000, ${all.tookMs} ms, largest page ${all.largestBytes} bytes`)
  }, 60_000)

  it("GET /session/:id/part: a session's parts in order, in pages of bounded size, none cut", async () => {
    const all = await allPages(`/session/${bigSession}/part`, 200)
    assert.strictEqual(all.items.length, bigSessionParts)
    assert.deepStrictEqual(all.items.map((part) => part.id), [...all.items.map((part) => part.id)].sort())
    // 200 parts of 4 KiB: about a MiB a page, where the whole list was 9.6 MB in one answer.
    assert.isBelow(all.largestBytes, 1_100_000)
    const empty = (await request(`${url}/session/ses_p00001/part`)).body as Page
    assert.deepStrictEqual(empty.next, null)
    assert.strictEqual((await request(`${url}/session/ses_nope/part`)).status, 404)
  }, 60_000)

  it("GET /part/active: every live part exactly once, no ended one", async () => {
    // As the dashboard reads it: pages of 1,000.
    const all = await allPages("/part/active", 1_000)
    assert.strictEqual(all.pages, 10)
    const ids = all.items.map((part) => part.id)
    assert.strictEqual(ids.length, activeCount)
    assert.strictEqual(new Set(ids).size, activeCount)
    assert.isTrue(all.items.every((part) => part.status === "pending" || part.status === "running"))
    console.log(`GET /part/active: ${activeCount} parts in ${all.pages} pages of 1,000, ${all.tookMs} ms, largest page ${all.largestBytes} bytes`)
  }, 60_000)

  it("a bad limit or cursor is a 400 naming it", async () => {
    for (const path of ["/session", "/part/active", `/session/${bigSession}/part`]) {
      for (const limit of ["0", "1001", "1.5", "x", "-1"]) {
        const response = await request(`${url}${path}?limit=${limit}`)
        assert.strictEqual(response.status, 400, `${path}?limit=${limit}`)
        assert.include(JSON.stringify(response.body), "limit")
      }
      const response = await request(`${url}${path}?cursor=${encodeURIComponent("not a cursor!")}`)
      assert.strictEqual(response.status, 400, JSON.stringify(response.body))
      assert.include(JSON.stringify(response.body), "cursor")
    }
    const forged = Buffer.from("soon:ses_x").toString("base64url")
    assert.strictEqual((await request(`${url}/session?cursor=${forged}`)).status, 400)
  })
})

describe("methods and bodies", () => {
  it("a method a path does not take is a 405 with Allow; an unknown path stays a 404", async () => {
    const wrong = await request(`${url}/session`, { method: "DELETE" })
    assert.strictEqual(wrong.status, 405, JSON.stringify(wrong.body))
    assert.strictEqual(wrong.body._tag, "MethodNotAllowed")
    assert.sameMembers(wrong.headers.get("allow")!.split(", "), ["GET", "POST", "HEAD"])
    const part = await request(`${url}/session/ses_x/part`, { method: "POST", body: {} })
    assert.strictEqual(part.status, 405)
    assert.sameMembers(part.headers.get("allow")!.split(", "), ["GET", "HEAD"])
    assert.strictEqual((await request(`${url}/metrics`, { method: "POST", body: {} })).status, 405)
    assert.strictEqual((await request(`${url}/no/such`)).status, 404)
  })

  it("an unknown body field is refused (400 naming it) and writes nothing", async () => {
    const before = await rowCounts(server.db)
    const response = await request(`${url}/session`, { body: { title: "x", tilte: "typo" } })
    assert.strictEqual(response.status, 400, JSON.stringify(response.body))
    assert.include(JSON.stringify(response.body), "tilte")
    const tool = await request(`${url}/session/${bigSession}/tool`, {
      body: { tool: "bash", input: { command: "true" }, timeut: 5 }
    })
    assert.strictEqual(tool.status, 400)
    assert.include(JSON.stringify(tool.body), "timeut")
    assert.deepStrictEqual(await rowCounts(server.db), before)
  })
})
