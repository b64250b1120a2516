import { assert, describe, it } from "@effect/vitest"
import { liveBar, panelHtml, renderBar, renderEvents, renderParts, renderRecovery, renderSessions, renderTail } from "../src/dashboard/Render.js"
import type { EventJson, PartJson, SessionJson } from "../src/dashboard/View.js"
import {
  applyEvent,
  barFraction,
  buildTree,
  emptyState,
  eventKind,
  eventSummary,
  filterEvents,
  formatDuration,
  keptEndedParts,
  loadSnapshot,
  maxEvents,
  putEvents,
  reasonText,
  selectParts,
  tailChars
} from "../src/dashboard/View.js"

/** The dashboard's view logic: pure functions over plain JSON, as the page gets it. */

const session = (id: string, fields: Partial<SessionJson> = {}): SessionJson => ({
  id,
  parentId: null,
  parentPartId: null,
  title: id,
  status: "idle",
  cancelReason: null,
  lastActivityAt: 1_000,
  ownerId: "ins_a",
  createdAt: 1_000,
  ...fields
})

const part = (id: string, fields: Partial<PartJson> = {}): PartJson => ({
  id,
  sessionId: "ses_a",
  kind: "tool",
  tool: "bash",
  input: { command: "sleep 1" },
  callId: null,
  status: "running",
  output: null,
  error: null,
  createdAt: 1_000,
  startedAt: 1_000,
  endedAt: null,
  deadlineAt: 5_000,
  ownerId: "ins_a",
  childSessionId: null,
  pid: null,
  pgid: null,
  procStart: null,
  ...fields
})

const event = (id: number, fields: Partial<EventJson> = {}): EventJson => ({
  id,
  type: "part.timeout",
  at: 10_000 + id,
  instanceId: "ins_a",
  sessionId: "ses_a",
  partId: "prt_a",
  reason: { _tag: "ToolTimeout", timeout: 2_000 },
  data: null,
  ...fields
})

const ids = (rows: ReadonlyArray<{ readonly session: SessionJson; readonly depth: number }>) =>
  rows.map((row) => `${"-".repeat(row.depth)}${row.session.id}`)

describe("buildTree", () => {
  it("puts children under their parent, depth first, oldest child first; newest root first", () => {
    const rows = buildTree([
      session("a", { createdAt: 1 }),
      session("b", { createdAt: 5 }),
      session("a2", { parentId: "a", createdAt: 3 }),
      session("a1", { parentId: "a", createdAt: 2 }),
      session("a1x", { parentId: "a1", createdAt: 4 })
    ])
    assert.deepStrictEqual(ids(rows), ["b", "a", "-a1", "--a1x", "-a2"])
    assert.deepStrictEqual(rows.map((row) => row.children), [0, 2, 1, 0, 0])
  })

  it("brings a tree with a busy or waiting session first, however deep, and keeps orphans as roots", () => {
    const rows = buildTree([
      session("new", { createdAt: 9 }),
      session("old", { createdAt: 1 }),
      session("old-child", { parentId: "old", createdAt: 2 }),
      session("deep", { parentId: "old-child", createdAt: 3, status: "waiting" }),
      session("orphan", { parentId: "gone", createdAt: 5 })
    ])
    assert.deepStrictEqual(ids(rows), ["old", "-old-child", "--deep", "new", "orphan"])
  })

  it("places each session once, even when the data has a cycle (none is lost)", () => {
    const rows = buildTree([
      session("x", { parentId: "y" }),
      session("y", { parentId: "x" }),
      session("self", { parentId: "self" })
    ])
    assert.deepStrictEqual(ids(rows), ["self", "x", "-y"])
  })

  it("builds the tree of 1,000 sessions in well under a frame", () => {
    const sessions = Array.from({ length: 1_000 }, (_, i) =>
      session(`s${i}`, { parentId: i % 5 === 0 ? null : `s${i - (i % 5)}`, createdAt: i, status: i % 7 === 0 ? "busy" : "idle" }))
    buildTree(sessions)
    const started = performance.now()
    const rows = buildTree(sessions)
    const took = performance.now() - started
    assert.strictEqual(rows.length, 1_000)
    assert.isBelow(took, 50)
  })
})

describe("barFraction", () => {
  it("is the share of the deadline used, from 0 to 1, and stays full past it", () => {
    const p = part("p", { startedAt: 1_000, deadlineAt: 5_000 })
    assert.strictEqual(barFraction(p, 1_000), 0)
    assert.strictEqual(barFraction(p, 2_000), 0.25)
    assert.strictEqual(barFraction(p, 5_000), 1)
    assert.strictEqual(barFraction(p, 9_000), 1)
    assert.strictEqual(barFraction(p, 0), 0)
  })

  it("stops where an ended part ended, is null without a deadline, full for a deadline at the start", () => {
    assert.strictEqual(barFraction(part("p", { endedAt: 3_000, status: "completed" }), 99_000), 0.5)
    assert.isNull(barFraction(part("p", { deadlineAt: null }), 2_000))
    assert.strictEqual(barFraction(part("p", { deadlineAt: 1_000 }), 1_000), 1)
    // Not started yet: measured from its creation.
    assert.strictEqual(barFraction(part("p", { startedAt: null, createdAt: 3_000, status: "pending" }), 4_000), 0.5)
  })

  it("the page's clock fills a live bar the same way", () => {
    assert.deepStrictEqual(liveBar(1_000, 5_000, 2_000), { width: "25.0%", level: "ok" })
    assert.deepStrictEqual(liveBar(1_000, 5_000, 4_200), { width: "80.0%", level: "late" })
    assert.deepStrictEqual(liveBar(1_000, 5_000, 7_000), { width: "100.0%", level: "over" })
  })
})

describe("applying events to the state", () => {
  it("a session update replaces the held one unless it is older", () => {
    const state = emptyState()
    assert.isTrue(applyEvent(state, { type: "session.updated", session: session("a", { status: "busy", lastActivityAt: 10 }) }))
    assert.isTrue(applyEvent(state, { type: "session.updated", session: session("a", { status: "cancelled", lastActivityAt: 20 }) }))
    assert.isFalse(applyEvent(state, { type: "session.updated", session: session("a", { status: "busy", lastActivityAt: 15 }) }))
    assert.strictEqual(state.sessions.get("a")!.status, "cancelled")
  })

  it("a part never moves back from terminal, and keeps the pid its terminal update does not carry", () => {
    const state = emptyState()
    applyEvent(state, { type: "part.updated", part: part("p", { status: "pending", deadlineAt: null }) })
    applyEvent(state, { type: "part.updated", part: part("p", { pid: 42, pgid: 42, procStart: "7" }) })
    assert.strictEqual(state.parts.get("p")!.pid, 42)
    applyEvent(state, { type: "part.updated", part: part("p", { status: "error", error: { _tag: "ToolTimeout", timeout: 4_000 }, endedAt: 5_000 }) })
    assert.strictEqual(state.parts.get("p")!.status, "error")
    assert.strictEqual(state.parts.get("p")!.pid, 42)
    assert.isFalse(applyEvent(state, { type: "part.updated", part: part("p", { status: "running" }) }))
    assert.strictEqual(state.parts.get("p")!.status, "error")
  })

  it("keeps only the most recently ended parts", () => {
    const state = emptyState()
    for (let i = 0; i < keptEndedParts * 2 + 1; i++) {
      applyEvent(state, { type: "part.updated", part: part(`p${i}`, { status: "completed", endedAt: i }) })
    }
    applyEvent(state, { type: "part.updated", part: part("live") })
    assert.strictEqual(state.parts.size, keptEndedParts + 1)
    assert.isTrue(state.parts.has(`p${keptEndedParts * 2}`))
    assert.isFalse(state.parts.has("p0"))
    assert.isTrue(state.parts.has("live"))
  })

  it("supervision events go newest first, without duplicates, capped", () => {
    const state = emptyState()
    applyEvent(state, { type: "watchdog.action", event: event(2, { type: "watchdog.stuck_part" }) })
    applyEvent(state, { type: "supervision", event: event(3) })
    applyEvent(state, { type: "idle.cancelled", event: event(1, { type: "idle.cancelled" }) })
    assert.isFalse(applyEvent(state, { type: "supervision", event: event(3) }))
    assert.deepStrictEqual(state.events.map((e) => e.id), [3, 2, 1])
    putEvents(state, Array.from({ length: maxEvents + 10 }, (_, i) => event(100 + i)))
    assert.strictEqual(state.events.length, maxEvents)
    assert.strictEqual(state.events[0]!.id, 100 + maxEvents + 9)
    assert.strictEqual(state.eventIds.size, maxEvents)
  })

  it("a recovery report replaces the held one", () => {
    const state = emptyState()
    const report = { deadOwners: [], orphanedParts: 3, sessionsFreed: 1, processesKilled: 0, partIds: [], sessionIds: [], tookMs: 2, dryRun: false }
    assert.isTrue(applyEvent(state, { type: "recovery.completed", report }))
    assert.strictEqual(state.recovery!.orphanedParts, 3)
  })

  it("a snapshot after a reconnect replaces the sessions and drops the live parts that ended meanwhile", () => {
    const state = emptyState()
    applyEvent(state, { type: "session.updated", session: session("gone") })
    applyEvent(state, { type: "part.updated", part: part("ended-while-away") })
    applyEvent(state, { type: "part.updated", part: part("still-running") })
    applyEvent(state, { type: "part.updated", part: part("timed-out", { status: "error", endedAt: 3_000 }) })
    loadSnapshot(state, {
      sessions: [session("a")],
      activeParts: [part("still-running", { pid: 7 }), part("new")],
      events: [event(5), event(4)]
    })
    assert.deepStrictEqual([...state.sessions.keys()], ["a"])
    assert.deepStrictEqual([...state.parts.keys()].sort(), ["new", "still-running", "timed-out"])
    assert.strictEqual(state.parts.get("still-running")!.pid, 7)
    assert.deepStrictEqual(state.events.map((e) => e.id), [5, 4])
  })
})

describe("filtering and selecting", () => {
  it("the event log of one session, newest first, or all of it", () => {
    const events = [event(3, { sessionId: "b" }), event(2, { sessionId: "a" }), event(1, { sessionId: "a" }), event(0, { sessionId: null })]
    assert.deepStrictEqual(filterEvents(events, "a", 10).map((e) => e.id), [2, 1])
    assert.deepStrictEqual(filterEvents(events, null, 10).map((e) => e.id), [3, 2, 1, 0])
    assert.deepStrictEqual(filterEvents(events, null, 2).map((e) => e.id), [3, 2])
    assert.deepStrictEqual(filterEvents(events, "a", 1).map((e) => e.id), [2])
  })

  it("parts: live first by nearest deadline (none last), then the recently ended, of one session when filtered", () => {
    const parts = [
      part("ended-old", { status: "completed", endedAt: 10 }),
      part("far", { deadlineAt: 9_000 }),
      part("none", { deadlineAt: null }),
      part("near", { deadlineAt: 2_000 }),
      part("ended-new", { status: "error", endedAt: 20 }),
      part("other", { sessionId: "ses_b" })
    ]
    const all = selectParts(parts, { sessionId: null, limit: 10 })
    assert.deepStrictEqual(all.rows.map((p) => p.id), ["near", "other", "far", "none", "ended-new", "ended-old"])
    assert.strictEqual(all.total, 6)
    assert.strictEqual(all.live, 4)
    assert.deepStrictEqual(selectParts(parts, { sessionId: "ses_b", limit: 10 }).rows.map((p) => p.id), ["other"])
    const capped = selectParts(parts, { sessionId: null, limit: 2 })
    assert.deepStrictEqual(capped.rows.map((p) => p.id), ["near", "other"])
    assert.strictEqual(capped.total, 6)
  })
})

describe("words", () => {
  it("durations read as a person would say them", () => {
    assert.deepStrictEqual(
      [0, 850, 1_000, 59_999, 65_000, 3_600_000 + 180_000, 86_400_000 * 4 + 7_200_000, -5].map(formatDuration),
      ["0ms", "850ms", "1s", "59s", "1m 05s", "1h 03m", "4d 2h", "0ms"]
    )
  })

  it("every reason in words, as the model sees it", () => {
    assert.strictEqual(reasonText({ _tag: "ToolTimeout", timeout: 4_000 }), "tool timed out after 4s")
    assert.strictEqual(reasonText({ _tag: "OrphanedByCrash", ownerId: "ins_x" }), "interrupted: the server running it (ins_x) stopped unexpectedly")
    assert.strictEqual(
      reasonText({ _tag: "WatchdogStuck", runningFor: 120_000, threshold: 60_000 }),
      "stopped by the watchdog: running for 2m 00s, over the limit of 1m 00s"
    )
    assert.strictEqual(reasonText({ _tag: "IdleCancelled", idleFor: 1_800_000, threshold: 1_800_000 }), "cancelled: no activity for 30m 00s (limit 30m 00s)")
    assert.strictEqual(reasonText({ _tag: "SessionCancelled", by: "api" }), "cancelled by api")
    assert.strictEqual(
      reasonText({ _tag: "AbortIncomplete", grace: 5_000, cause: "tool timed out after 4s" }),
      "tool timed out after 4s; the abort did not finish within 5s, the work was abandoned"
    )
    assert.strictEqual(reasonText({ _tag: "ToolFailed", message: "exit 1" }), "exit 1")
  })

  it("a logged action's family and summary: its reason, or else its data in short", () => {
    assert.deepStrictEqual(
      ["recovery.processes_killed", "part.timeout", "watchdog.stuck_part", "idle.cancelled", "part.late_completion", "part.interrupt", "shell.term"]
        .map(eventKind),
      ["recovery", "timeout", "watchdog", "idle", "late", "abort", "other"]
    )
    assert.strictEqual(eventSummary(event(1)), "ToolTimeout: tool timed out after 2s")
    assert.strictEqual(eventSummary(event(1, { reason: null, data: { pids: [1, 2] } })), `{"pids":[1,2]}`)
    assert.strictEqual(eventSummary(event(1, { reason: null, data: "x".repeat(500) }), 10), `${"x".repeat(9)}…`)
    assert.strictEqual(eventSummary(event(1, { reason: null, data: null })), "")
  })
})

describe("rendering", () => {
  it("the session tree: indented children, status with its reason, an abort button on active sessions only", () => {
    const state = emptyState()
    state.sessions.set("ses_root", session("ses_root", { title: "root <b>", status: "busy" }))
    state.sessions.set("ses_kid", session("ses_kid", { parentId: "ses_root", status: "cancelled", cancelReason: { _tag: "IdleCancelled", idleFor: 60_000, threshold: 60_000 } }))
    state.parts.set("p", part("p", { sessionId: "ses_root" }))
    const html = panelHtml(renderSessions(state, { selected: "ses_kid" }))
    assert.include(html, "root &lt;b&gt;")
    assert.include(html, `data-abort="ses_root"`)
    assert.notInclude(html, `data-abort="ses_kid"`)
    assert.include(html, `style="--depth:1"`)
    assert.include(html, "cancelled: no activity for 1m 00s (limit 1m 00s)")
    assert.include(html, `<tr data-session="ses_kid" class="selected">`)
    assert.include(html, `data-since="1000"`)
  })

  it("a live part's bar is left to the page's clock; an ended part's is fixed where it ended, with its reason", () => {
    const live = renderBar(part("p"))
    assert.include(live, `data-start="1000" data-deadline="5000"`)
    assert.include(live, "/ 4s")
    const ended = renderBar(part("p", { status: "error", endedAt: 5_000 }))
    assert.include(ended, `class="bar over"`)
    assert.include(ended, "width:100.0%")
    assert.include(ended, "4s / 4s")
    assert.include(renderBar(part("p", { deadlineAt: null })), "no deadline")
    const state = emptyState()
    state.parts.set("p", part("p", { status: "error", error: { _tag: "ToolTimeout", timeout: 4_000 }, endedAt: 5_000, pid: 321 }))
    const html = panelHtml(renderParts(state, { selected: null }))
    assert.include(html, "ToolTimeout: tool timed out after 4s")
    assert.include(html, `<td class="num">321</td>`)
  })

  it("says how many rows it leaves out, and what to show when there is nothing", () => {
    const state = emptyState()
    assert.include(panelHtml(renderParts(state, { selected: null })), "nothing running")
    assert.include(panelHtml(renderEvents(state, { selected: null })), "no supervision actions yet")
    for (let i = 0; i < 10_000; i++) state.parts.set(`p${i}`, part(`p${i}`, { deadlineAt: 5_000 + i }))
    const panel = renderParts(state, { selected: null })
    assert.strictEqual(panel.rows.length, 201)
    assert.include(panel.rows[200]!.html, "showing 200 of 10000 parts (10000 live)")
    assert.strictEqual(new Set(panel.rows.map((row) => row.key)).size, 201)
  })

  it("rows do not depend on the clock, so an unchanged row is not replaced", () => {
    const state = emptyState()
    state.sessions.set("a", session("a", { status: "busy" }))
    state.parts.set("p", part("p"))
    const once = [renderSessions(state, { selected: null }), renderParts(state, { selected: null })]
    const again = [renderSessions(state, { selected: null }), renderParts(state, { selected: null })]
    assert.deepStrictEqual(again, once)
  })

  it("the recovery report in one line, with its dead owners", () => {
    assert.include(renderRecovery(null), "no report yet")
    const html = renderRecovery({
      deadOwners: [{ id: "ins_dead", cause: "process-gone" }],
      orphanedParts: 2,
      sessionsFreed: 1,
      processesKilled: 3,
      partIds: [],
      sessionIds: [],
      tookMs: 4.5,
      dryRun: false
    })
    assert.include(html, "<b>2</b> orphaned parts ended · <b>1</b> session freed · <b>3</b> processes killed · took 4.5 ms")
    assert.include(html, `title="ins_dead"`)
    assert.include(html, "process-gone")
  })

  it("renders 1,000 sessions and 10,000 parts in a few milliseconds (a unit bench; the browser test measures the page)", () => {
    const state = emptyState()
    for (let i = 0; i < 1_000; i++) {
      state.sessions.set(`s${i}`, session(`s${i}`, { parentId: i % 5 === 0 ? null : `s${i - (i % 5)}`, createdAt: i, status: i % 3 === 0 ? "busy" : "idle" }))
    }
    for (let i = 0; i < 10_000; i++) state.parts.set(`p${i}`, part(`p${i}`, { sessionId: `s${i % 1_000}`, deadlineAt: 10_000 + i }))
    putEvents(state, Array.from({ length: 1_000 }, (_, i) => event(i)))
    const view = { selected: null }
    const renderAll = () => [renderSessions(state, view), renderParts(state, view), renderEvents(state, view)]
    renderAll()
    const runs = 10
    const started = performance.now()
    for (let i = 0; i < runs; i++) renderAll()
    const perRender = (performance.now() - started) / runs
    console.log(`view logic, 1,000 sessions / 10,000 parts / 1,000 events: ${perRender.toFixed(2)} ms per render of every panel`)
    assert.isBelow(perRender, 100)
  })
})

describe("the live tail of a part", () => {
  const delta = (offset: number, text: string) => ({ type: "part.delta", partId: "prt_1", sessionId: "ses_a", offset, text }) as const

  it("appends deltas in order, skips what it already holds, marks a gap, and keeps the newest 8 KiB", () => {
    const state = emptyState()
    applyEvent(state, { type: "part.updated", part: part("prt_1") })
    assert.isTrue(applyEvent(state, delta(0, "one\n")))
    assert.isTrue(applyEvent(state, delta(4, "two\n")))
    // A repeat (a reconnect) adds nothing; an overlap adds only its new end.
    assert.isFalse(applyEvent(state, delta(0, "one\n")))
    assert.isTrue(applyEvent(state, delta(6, "o\nthree\n")))
    assert.strictEqual(state.tails.get("prt_1")!.text, "one\ntwo\nthree\n")
    applyEvent(state, delta(100, "later\n"))
    assert.strictEqual(state.tails.get("prt_1")!.text, "one\ntwo\nthree\n\n… 86 characters not shown …\nlater\n")
    applyEvent(state, delta(106, "z".repeat(20_000)))
    assert.strictEqual(state.tails.get("prt_1")!.text.length, tailChars + 1)
    assert.include(renderTail(state, "prt_1"), "zzzz")
    // Ended: the tail goes, and the part's recorded output is shown instead.
    applyEvent(state, { type: "part.updated", part: part("prt_1", { status: "completed", output: "final output", endedAt: 2_000 }) })
    assert.isFalse(state.tails.has("prt_1"))
    assert.isFalse(applyEvent(state, delta(20_106, "late")))
    assert.include(renderTail(state, "prt_1"), "final output")
    assert.strictEqual(renderTail(state, null), "")
  })
})
