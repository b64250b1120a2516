import { assert, describe, it } from "@effect/vitest"
import { Instance, InstanceId } from "@vigil/domain"
import { InstanceRepo } from "@vigil/store"
import { Effect } from "effect"
import { createSession as createServerSession, eventually, request, serverPerFile, withStore } from "./support.js"

/** The dashboard's page and assets, and the read-only routes it reads its state from. */

const served = serverPerFile()
const createSession = (body: Record<string, unknown> = {}) => createServerSession(served.url, body)

const runTool = async (sessionId: string, body: Record<string, unknown>) => {
  const response = await request(`${served.url}/session/${sessionId}/tool`, { body })
  assert.strictEqual(response.status, 202, JSON.stringify(response.body))
  return response.body.partId as string
}

const partEnded = (id: string) =>
  eventually(async () => {
    const part = (await request(`${served.url}/part/${id}`)).body
    return part.status === "completed" || part.status === "error" ? part : undefined
  }, 10_000, `part ${id} to end`)

describe("the dashboard's page and assets", () => {
  it("GET / is the page; its script and stylesheet come from the server, nothing from elsewhere", async () => {
    const page = await fetch(`${served.url}/`)
    assert.strictEqual(page.status, 200)
    assert.include(page.headers.get("content-type") ?? "", "text/html")
    const html = await page.text()
    assert.include(html, `<script type="module" src="/dashboard/app.js">`)
    assert.include(html, `href="/dashboard/app.css"`)

    const script = await fetch(`${served.url}/dashboard/app.js`)
    assert.strictEqual(script.status, 200)
    assert.include(script.headers.get("content-type") ?? "", "text/javascript")
    const js = await script.text()
    // Bundled: the view modules are inside, no import is left to resolve.
    assert.include(js, "/event/log")
    assert.include(js, "EventSource")
    assert.notMatch(js, /\bimport\s*[{*"']/)
    const css = await fetch(`${served.url}/dashboard/app.css`)
    assert.strictEqual(css.status, 200)
    assert.include(css.headers.get("content-type") ?? "", "text/css")
    const stylesheet = await css.text()
    for (const asset of [html, js, stylesheet]) assert.notMatch(asset, /https?:\/\/|\/\/cdn|@import/)
  })

  it("/doc and /openapi.json still work, and the new routes are documented", async () => {
    assert.strictEqual((await fetch(`${served.url}/doc`)).status, 200)
    const spec = (await request(`${served.url}/openapi.json`)).body
    for (const path of ["/part/active", "/event/log", "/instance", "/session", "/event"]) assert.property(spec.paths, path)
  })
})

describe("the dashboard's read-only routes", () => {
  it("GET /part/active lists the pending and running parts of every session, not the ended ones", async () => {
    const a = await createSession()
    const b = await createSession()
    const running = await runTool(a.id, { tool: "bash", input: { command: "sleep 30" } })
    const done = await runTool(b.id, { tool: "bash", input: { command: "true" } })
    await partEnded(done)
    const active = await eventually(async () => {
      const parts = (await request(`${served.url}/part/active?limit=1000`)).body.items as Array<{ id: string; pid: number | null }>
      const part = parts.find((p) => p.id === running)
      return part?.pid ? parts : undefined
    }, 5_000, "the running part with its pid")
    const ids = active.map((part) => part.id)
    assert.include(ids, running)
    assert.notInclude(ids, done)
    const part = active.find((p) => p.id === running) as unknown as { status: string; deadlineAt: number; startedAt: number }
    assert.strictEqual(part.status, "running")
    // The configured tool_timeout (10 minutes) is its deadline.
    assert.strictEqual(part.deadlineAt - part.startedAt, 600_000)
    await request(`${served.url}/session/${a.id}/abort`, { method: "POST" })
    await partEnded(running)
    assert.notInclude(((await request(`${served.url}/part/active?limit=1000`)).body.items as Array<{ id: string }>).map((p) => p.id), running)
  })

  it("GET /event/log: supervision actions newest first, with their reasons, of one session with ?sessionId=", async () => {
    const slow = await createSession()
    const other = await createSession()
    const first = await runTool(slow.id, { tool: "bash", input: { command: "sleep 30" }, timeout: 200 })
    await partEnded(first)
    const second = await runTool(slow.id, { tool: "bash", input: { command: "sleep 30" }, timeout: 300 })
    await partEnded(second)
    const elsewhere = await runTool(other.id, { tool: "bash", input: { command: "sleep 30" }, timeout: 200 })
    await partEnded(elsewhere)

    const log = (await request(`${served.url}/event/log?sessionId=${slow.id}`)).body.items as Array<{
      id: number
      type: string
      sessionId: string
      partId: string
      reason: unknown
    }>
    assert.isTrue(log.every((event) => event.sessionId === slow.id))
    const timeouts = log.filter((event) => event.type === "part.timeout")
    assert.deepStrictEqual(timeouts.map((event) => event.partId), [second, first])
    assert.deepStrictEqual(timeouts[0]!.reason, { _tag: "ToolTimeout", timeout: 300 })
    const ids = log.map((event) => event.id)
    assert.deepStrictEqual(ids, [...ids].sort((x, y) => y - x))

    const whole = (await request(`${served.url}/event/log`)).body as { items: Array<{ id: number; partId: string }>; next: string | null }
    assert.include(whole.items.map((event) => event.partId), elsewhere)
    assert.isNull(whole.next, "every event fits the default page: no next")
    // Page by page, one event each: the same events in the same order, each once, then no next.
    const paged: Array<number> = []
    for (let cursor: string | null = "", pages = 0; cursor !== null; pages++) {
      assert.isBelow(pages, whole.items.length + 1, "the pages end")
      const page = (await request(`${served.url}/event/log?limit=1${cursor === "" ? "" : `&cursor=${encodeURIComponent(cursor)}`}`)).body as {
        items: Array<{ id: number }>
        next: string | null
      }
      assert.isAtMost(page.items.length, 1)
      paged.push(...page.items.map((event) => event.id))
      cursor = page.next
    }
    assert.deepStrictEqual(paged, whole.items.map((event) => event.id))
    for (const bad of ["0", "1001", "two", "1.5"]) {
      const response = await request(`${served.url}/event/log?limit=${bad}`)
      assert.strictEqual(response.status, 400, bad)
      assert.include(JSON.stringify(response.body), "limit")
    }
    for (const bad of ["x", "-1", "0"]) {
      const response = await request(`${served.url}/event/log?cursor=${bad}`)
      assert.strictEqual(response.status, 400, bad)
      assert.include(JSON.stringify(response.body), "cursor")
    }
    assert.deepStrictEqual((await request(`${served.url}/event/log?sessionId=ses_none`)).body, { items: [], next: null })
  })

  it("GET /instance: this server alive with its heartbeat age; a peer whose lease ran out is dead, and says why", async () => {
    const self = (await request(`${served.url}/health`)).body.instance.id as string
    const now = Date.now()
    const peer = InstanceId.make("ins_dashboardpeer0000000001")
    await withStore(served.server.db, Effect.gen(function*() {
      const repo = yield* InstanceRepo
      yield* repo.register(new Instance({
        id: peer,
        pid: 999_999,
        host: "elsewhere",
        procStart: null,
        startedAt: now - 120_000,
        heartbeatAt: now - 60_000,
        leaseMillis: 30_000,
        stoppedAt: null
      }))
    }))
    const list = (await request(`${served.url}/instance`)).body as {
      now: number
      instances: Array<{ id: string; alive: boolean; self: boolean; deathCause: string | null; heartbeatAgeMs: number; host: string }>
    }
    assert.isAtLeast(list.now, now)
    const me = list.instances.find((instance) => instance.id === self)!
    assert.isTrue(me.alive)
    assert.isTrue(me.self)
    assert.isNull(me.deathCause)
    assert.isAtLeast(me.heartbeatAgeMs, 0)
    const dead = list.instances.find((instance) => instance.id === peer)!
    assert.isFalse(dead.alive)
    assert.isFalse(dead.self)
    assert.strictEqual(dead.deathCause, "lease-expired")
    assert.isAtLeast(dead.heartbeatAgeMs, 60_000)
    assert.strictEqual(dead.host, "elsewhere")
  })
})
