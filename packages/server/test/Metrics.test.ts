import { assert, describe, it } from "@effect/vitest"
import { InstanceId, PartId, SessionId } from "@vigil/domain"
import type { Session } from "@vigil/domain"
import { PartRepo, SessionRepo } from "@vigil/store"
import { Duration, Effect, Option, Redacted } from "effect"
import { join } from "node:path"
import { afterAll, beforeAll } from "vitest"
import { bashPartRow, sessionRow } from "./seed.js"
import type { RunningServer } from "./support.js"
import { eventually, removeDirs, startServer, tempDir, testSettings, withStore } from "./support.js"

/**
 * Issue 19, metrics: `GET /metrics` in the Prometheus text format, behind basic auth, whose values
 * move when the supervision acts on a real server: a tool's timeout, a watchdog action on a part
 * stuck past its deadline, a rescue of a dead owner's part, an idle cancel.
 */

const dirs: Array<string> = []
const password = "metrics-Pass"
const authorization = `Basic ${Buffer.from(`vigil:${password}`).toString("base64")}`
let server: RunningServer

beforeAll(async () => {
  server = await startServer({
    db: join(tempDir(dirs), "vigil.db"),
    password: Redacted.make(password),
    // Scans every 200 ms, so the watchdog and the idle monitor act within the test.
    settings: { ...testSettings, watchdogInterval: Option.some(Duration.millis(200)), idleTimeout: Option.some(Duration.minutes(1)) }
  })
})

afterAll(async () => {
  await server?.close()
  removeDirs(dirs)
})

const call = async (path: string, body?: unknown) => {
  const response = await fetch(`${server.url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  return { status: response.status, headers: response.headers, text: await response.text() }
}

/** One sample's value: `name{labels} value`, labels given in the order rendered (sorted by key). */
const sample = (text: string, series: string): number | undefined => {
  const line = text.split("\n").find((line) => line.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

const scrape = async () => {
  const response = await call("/metrics")
  assert.strictEqual(response.status, 200, response.text)
  return response.text
}

const movedTo = (series: string, atLeast: number, what: string) =>
  eventually(async () => {
    const value = sample(await scrape(), series)
    return value !== undefined && value >= atLeast ? value : undefined
  }, 20_000, what)

describe("GET /metrics", () => {
  it("is behind basic auth, and speaks the Prometheus text format with every family from the start", async () => {
    const open = await fetch(`${server.url}/metrics`)
    assert.strictEqual(open.status, 401)
    const response = await call("/metrics")
    assert.strictEqual(response.status, 200)
    assert.include(response.headers.get("content-type") ?? "", "text/plain; version=0.0.4")
    const text = response.text
    for (
      const [name, type] of [
        ["vigil_timeouts_total", "counter"],
        ["vigil_rescues_total", "counter"],
        ["vigil_watchdog_actions_total", "counter"],
        ["vigil_idle_cancels_total", "counter"],
        ["vigil_store_write_retries_total", "counter"],
        ["vigil_model_retries_total", "counter"],
        ["vigil_late_completions_total", "counter"],
        ["vigil_leaked_fibers_total", "counter"],
        ["vigil_running_parts", "gauge"],
        ["vigil_busy_sessions", "gauge"],
        ["vigil_live_instances", "gauge"]
      ]
    ) {
      assert.include(text, `# TYPE ${name} ${type}\n`, name)
      assert.include(text, `# HELP ${name} `, name)
    }
    // Every sample line is `name{labels} value`.
    for (const line of text.split("\n").filter((line) => line !== "" && !line.startsWith("#"))) {
      assert.match(line, /^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/, line)
    }
    assert.strictEqual(sample(text, "vigil_live_instances"), 1)
  })

  it("moves after a timeout, a watchdog action, a rescue and an idle cancel", async () => {
    const before = await scrape()
    const value = (series: string) => sample(before, series) ?? 0
    const health = JSON.parse((await call("/health")).text) as { instance: { id: string } }
    const self = InstanceId.make(health.instance.id)

    // A tool's own deadline.
    const session = JSON.parse((await call("/session", {})).text) as { id: string }
    const started = await call(`/session/${session.id}/tool`, { tool: "bash", input: { command: "sleep 30" }, timeout: 300 })
    assert.strictEqual(started.status, 202, started.text)
    await movedTo("vigil_timeouts_total", value("vigil_timeouts_total") + 1, "the timeout counted")
    const durations = await movedTo(
      `vigil_part_duration_seconds_count{outcome="error",tool="bash"}`,
      1,
      "the bash part's duration observed"
    )
    assert.isAtLeast(durations, 1)
    assert.isAtLeast(sample(await scrape(), `vigil_part_duration_seconds_sum{outcome="error",tool="bash"}`)!, 0.3)

    // What the watchdog, a rescue and the idle monitor find: a part of ours running an hour past
    // its deadline (a runner that lost it), a part of an owner that never existed, and a session
    // of ours silent for an hour.
    const now = Date.now()
    const stuckSession = (id: string, status: Session["status"], ownerId: InstanceId, lastActivityAt: number) =>
      sessionRow({ id: SessionId.make(id), status, ownerId, lastActivityAt, createdAt: now })
    const partRow = (id: string, sessionId: string, ownerId: InstanceId) =>
      bashPartRow({ id: PartId.make(id), sessionId: SessionId.make(sessionId), status: "running", createdAt: now - 7_200_000, deadlineAt: now - 3_600_000, ownerId })
    const ghost = InstanceId.make("ins_metrics0ghost")
    await withStore(
      server.db,
      Effect.gen(function*() {
        const sessions = yield* SessionRepo
        const parts = yield* PartRepo
        yield* sessions.insert(stuckSession("ses_mstuck", "busy", self, now))
        yield* parts.insert(partRow("prt_mstuck", "ses_mstuck", self))
        yield* sessions.insert(stuckSession("ses_mghost", "busy", ghost, now))
        yield* parts.insert(partRow("prt_mghost", "ses_mghost", ghost))
        yield* sessions.insert(stuckSession("ses_midle", "busy", self, now - 3_600_000))
      })
    )
    await movedTo(
      `vigil_watchdog_actions_total{action="stuck_part"}`,
      value(`vigil_watchdog_actions_total{action="stuck_part"}`) + 1,
      "the watchdog action counted"
    )
    await movedTo(`vigil_rescues_total{trigger="watchdog"}`, value(`vigil_rescues_total{trigger="watchdog"}`) + 1, "the rescue counted")
    await movedTo(
      `vigil_rescued_parts_total{trigger="watchdog"}`,
      value(`vigil_rescued_parts_total{trigger="watchdog"}`) + 1,
      "the rescued part counted"
    )
    await movedTo("vigil_idle_cancels_total", value("vigil_idle_cancels_total") + 1, "the idle cancel counted")
  }, 60_000)

  it("the gauges say what runs now", async () => {
    const session = JSON.parse((await call("/session", {})).text) as { id: string }
    const started = await call(`/session/${session.id}/tool`, { tool: "bash", input: { command: "sleep 30" } })
    assert.strictEqual(started.status, 202)
    await movedTo("vigil_running_parts", 1, "the running part gauged")
    await movedTo(`vigil_busy_sessions{status="busy"}`, 1, "the busy session gauged")
    await call(`/session/${session.id}/abort`, {})
    await eventually(async () => (sample(await scrape(), "vigil_running_parts") === 0 ? true : undefined), 10_000, "no running part")
  }, 30_000)
})
