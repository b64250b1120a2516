import type { EventJson, InstanceJson, PartJson, RecoveryJson, State, TreeRow } from "./View.js"
import {
  barFraction,
  buildTree,
  eventKind,
  eventSummary,
  filterEvents,
  formatDuration,
  livePartsBySession,
  reasonText,
  selectParts,
  shortId
} from "./View.js"

/**
 * The panels as HTML, from the state: pure, so a test reads what a person would see. A panel is
 * keyed rows, and a row's HTML does not depend on the clock: values that move with it (ages,
 * elapsed times, the bars of live parts) are `data-*` times that the page fills in (`clockText`,
 * `liveBarWidth`) and updates once a second in place. So the page replaces only the rows whose
 * HTML changed, and a live event costs a row, not a table. Each panel shows at most a few hundred
 * rows (the rest is counted): 1,000 sessions and 10,000 parts stay a few milliseconds.
 */

export const limits = { sessions: 500, parts: 200, events: 300 } as const

export interface Row {
  readonly key: string
  /** One `<tr>`. */
  readonly html: string
}

export interface Panel {
  readonly head: string
  readonly rows: ReadonlyArray<Row>
}

/** A panel as one table's HTML (tests; the page patches rows instead). */
export const panelHtml = (panel: Panel): string =>
  `<thead>${panel.head}</thead><tbody>${panel.rows.map((row) => row.html).join("")}</tbody>`

/** The text of a `data-since` element at `now`. */
export const clockText = (since: number, now: number): string => formatDuration(now - since)

/** The width (percent) of a live bar's fill at `now`, and its level. */
export const liveBar = (start: number, deadline: number, now: number) => {
  const fraction = Math.min(1, Math.max(0, (now - start) / Math.max(1, deadline - start)))
  return { width: `${(fraction * 100).toFixed(1)}%`, level: fraction >= 1 ? "over" : fraction >= 0.75 ? "late" : "ok" } as const
}

const escapes: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }
const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => escapes[c]!)

const since = (at: number) => `<span data-since="${at}"></span>`
const pill = (cls: string, text: string, title = "") =>
  `<span class="pill ${cls}"${title ? ` title="${escapeHtml(title)}"` : ""}>${escapeHtml(text)}</span>`
const idCode = (id: string) => `<code title="${escapeHtml(id)}">${escapeHtml(shortId(id))}</code>`
const more = (shown: number, total: number, what: string, colspan: number): Array<Row> =>
  total > shown ? [{ key: "more", html: `<tr class="more"><td colspan="${colspan}">showing ${shown} of ${total} ${what}</td></tr>` }] : []
const empty = (text: string, colspan: number): Array<Row> => [
  { key: "empty", html: `<tr class="empty"><td colspan="${colspan}">${text}</td></tr>` }
]
const head = (...names: Array<string>) => `<tr>${names.map((name) => `<th>${name}</th>`).join("")}</tr>`

/** UTC time of day, `HH:MM:SS`. */
export const clock = (at: number): string => new Date(at).toISOString().slice(11, 19)

export interface View {
  readonly selected: string | null
}

const renderSessionRow = (row: TreeRow, live: number, view: View): string => {
  const { session } = row
  const active = session.status === "busy" || session.status === "waiting"
  const reason = session.cancelReason === null ? "" : reasonText(session.cancelReason)
  return `<tr data-session="${escapeHtml(session.id)}"${view.selected === session.id ? ` class="selected"` : ""}>` +
    `<td class="name" style="--depth:${row.depth}">${row.depth > 0 ? `<span class="branch">└</span>` : ""}` +
    `<span class="title">${escapeHtml(session.title || "untitled")}</span> ${idCode(session.id)}` +
    `${row.children > 0 ? ` <small>${row.children} child${row.children === 1 ? "" : "ren"}</small>` : ""}</td>` +
    `<td>${pill(`st-${session.status}`, session.status, reason)}${
      reason ? ` <small class="reason">${escapeHtml(reason)}</small>` : ""
    }</td>` +
    `<td>${since(session.createdAt)}</td>` +
    `<td>${since(session.lastActivityAt)} ago</td>` +
    `<td class="num">${live || ""}</td>` +
    `<td>${active ? `<button class="abort" data-abort="${escapeHtml(session.id)}">abort</button>` : ""}</td></tr>`
}

export const renderSessions = (state: State, view: View): Panel => {
  const rows = buildTree(state.sessions.values())
  const live = livePartsBySession(state.parts.values())
  const shown = rows.slice(0, limits.sessions)
  return {
    head: head("session", "status", "age", "last activity", "live", ""),
    rows: shown.length === 0 ? empty("no sessions yet", 6) : [
      ...shown.map((row) => ({ key: row.session.id, html: renderSessionRow(row, live.get(row.session.id) ?? 0, view) })),
      ...more(shown.length, rows.length, "sessions", 6)
    ]
  }
}

/**
 * Elapsed time against the deadline. A live part's bar and elapsed time are filled in by the page's
 * clock; an ended part's are fixed where it ended.
 */
export const renderBar = (part: PartJson): string => {
  const start = part.startedAt ?? part.createdAt
  const elapsedText = part.endedAt === null ? since(start) : formatDuration(part.endedAt - start)
  if (part.deadlineAt === null) return `<span class="nodeadline">${elapsedText} · no deadline</span>`
  const total = `<span class="elapsed">${elapsedText} / ${formatDuration(part.deadlineAt - start)}</span>`
  if (part.endedAt === null) {
    return `<div class="bar" data-start="${start}" data-deadline="${part.deadlineAt}"><div class="fill"></div></div>${total}`
  }
  const fraction = barFraction(part, part.endedAt) ?? 0
  const level = fraction >= 1 ? "over" : fraction >= 0.75 ? "late" : "ok"
  return `<div class="bar ${level}"><div class="fill" style="width:${(fraction * 100).toFixed(1)}%"></div></div>${total}`
}

const renderPartRow = (part: PartJson): string => {
  const reason = part.error === null ? "" : `${part.error._tag}: ${reasonText(part.error)}`
  return `<tr data-part="${escapeHtml(part.id)}" class="st-${part.status}">` +
    `<td><b>${escapeHtml(part.tool)}</b>${part.kind === "tool" ? "" : ` <small>${part.kind}</small>`} ${idCode(part.id)}</td>` +
    `<td><a href="#" data-filter="${escapeHtml(part.sessionId)}">${escapeHtml(shortId(part.sessionId))}</a></td>` +
    `<td>${pill(`st-${part.status}`, part.status)}${reason ? ` <small class="reason">${escapeHtml(reason)}</small>` : ""}</td>` +
    `<td class="deadline">${renderBar(part)}</td>` +
    `<td>${idCode(part.ownerId)}</td>` +
    `<td class="num">${part.pid ?? ""}</td></tr>`
}

export const renderParts = (state: State, view: View): Panel => {
  const { live, rows, total } = selectParts(state.parts.values(), { sessionId: view.selected, limit: limits.parts })
  return {
    head: head("part", "session", "status", "elapsed / deadline", "owner", "pid"),
    rows: rows.length === 0 ? empty("nothing running", 6) : [
      ...rows.map((part) => ({ key: part.id, html: renderPartRow(part) })),
      ...more(rows.length, total, `parts (${live} live)`, 6)
    ]
  }
}

const renderEventRow = (event: EventJson): string =>
  `<tr class="ev-${eventKind(event.type)}"><td class="time" title="${new Date(event.at).toISOString()}">${clock(event.at)}</td>` +
  `<td>${pill(`ev-${eventKind(event.type)}`, event.type)}</td>` +
  `<td>${event.sessionId === null ? "" : `<a href="#" data-filter="${escapeHtml(event.sessionId)}">${escapeHtml(shortId(event.sessionId))}</a>`}</td>` +
  `<td>${event.partId === null ? "" : idCode(event.partId)}</td>` +
  `<td class="summary">${escapeHtml(eventSummary(event))}</td></tr>`

export const renderEvents = (state: State, view: View): Panel => {
  const rows = filterEvents(state.events, view.selected, limits.events)
  return {
    head: head("time (UTC)", "action", "session", "part", "reason"),
    rows: rows.length === 0
      ? empty(view.selected === null ? "no supervision actions yet" : "no supervision actions for this session", 5)
      : rows.map((event) => ({ key: String(event.id), html: renderEventRow(event) }))
  }
}

const renderInstanceRow = (instance: InstanceJson): string =>
  `<tr class="${instance.alive ? "alive" : "dead"}"><td>${idCode(instance.id)}${instance.self ? " <small>this server</small>" : ""}</td>` +
  `<td>${escapeHtml(instance.host)}</td><td class="num">${instance.pid}</td>` +
  `<td>${instance.stoppedAt === null ? since(instance.startedAt) : formatDuration(instance.stoppedAt - instance.startedAt)}</td>` +
  `<td>${instance.stoppedAt === null ? `${since(instance.heartbeatAt)} ago` : "stopped"} <small>/ ${
    formatDuration(instance.leaseMillis)
  }</small></td>` +
  `<td>${instance.alive ? pill("alive", "alive") : pill("dead", `dead: ${instance.deathCause ?? "unknown"}`)}</td></tr>`

export const renderInstances = (state: State): Panel => ({
  head: head("instance", "host", "pid", "up", "heartbeat / lease", ""),
  rows: state.instances.length === 0
    ? empty("no instances", 6)
    : state.instances.map((instance) => ({ key: instance.id, html: renderInstanceRow(instance) }))
})

export const renderRecovery = (report: RecoveryJson | null): string => {
  if (report === null) return `<p class="muted">no report yet</p>`
  const owners = report.deadOwners.map((owner) => `${idCode(owner.id)} <small>${escapeHtml(owner.cause)}</small>`)
  return `<p><b>${report.orphanedParts}</b> orphaned part${report.orphanedParts === 1 ? "" : "s"} ended · ` +
    `<b>${report.sessionsFreed}</b> session${report.sessionsFreed === 1 ? "" : "s"} freed · ` +
    `<b>${report.processesKilled}</b> process${report.processesKilled === 1 ? "" : "es"} killed · ` +
    `took ${report.tookMs} ms${report.dryRun ? " (dry run)" : ""}</p>` +
    `<p class="owners">${owners.length === 0 ? "no dead owners" : `dead owners: ${owners.join(", ")}`}</p>`
}

/**
 * The live tail of the selected part: what it printed so far (`part.delta`, the newest 8 KiB),
 * then, once it ended, its recorded output. Empty when no part is selected.
 */
export const renderTail = (state: State, partId: string | null): string => {
  if (partId === null) return ""
  const part = state.parts.get(partId)
  const tail = state.tails.get(partId)
  const title = `<b>${escapeHtml(part?.tool ?? "part")}</b> ${idCode(partId)} ${part === undefined ? "" : pill(`st-${part.status}`, part.status)}`
  const text = part !== undefined && part.status !== "pending" && part.status !== "running"
    ? part.output ?? (part.error === null ? "" : reasonText(part.error))
    : tail?.text ?? ""
  return `<p>${title}</p><pre class="tail">${escapeHtml(text === "" ? "(no output yet)" : text)}</pre>`
}
