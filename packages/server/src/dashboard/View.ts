import type { Part, RecoveryReport, Session, SupervisionEvent } from "@vigil/domain"
import type { InstanceStatus } from "../Api.js"

/**
 * The dashboard's view logic: the state the page holds, how a live event or a REST snapshot
 * changes it, and what each panel shows. No DOM and no I/O here, so it is unit-tested in Node and
 * bundled for the browser as it is (type imports only: nothing of Effect reaches the page).
 *
 * The state is updated in place: with 10,000 parts, copying maps on every event of a burst would
 * cost more than the rendering it feeds.
 */

export type SessionJson = typeof Session.Encoded
export type PartJson = typeof Part.Encoded
export type EventJson = typeof SupervisionEvent.Encoded
export type InstanceJson = typeof InstanceStatus.Encoded
export type RecoveryJson = typeof RecoveryReport.Encoded
export type ReasonJson = NonNullable<PartJson["error"]>

/** What `/event` sends, by `type` (see the server's `EventStream.eventJson`). */
export type LiveMessage =
  | { readonly type: "session.updated"; readonly session: SessionJson }
  | { readonly type: "part.updated"; readonly part: PartJson }
  | { readonly type: "recovery.completed"; readonly report: RecoveryJson }
  | { readonly type: "watchdog.action" | "idle.cancelled" | "supervision"; readonly event: EventJson }
  | { readonly type: "part.delta"; readonly partId: string; readonly sessionId: string; readonly offset: number; readonly text: string }

export const liveTypes = ["session.updated", "part.updated", "recovery.completed", "watchdog.action", "idle.cancelled", "supervision", "part.delta"] as const

/** The live output of a running part: the newest `tailChars` of it, and where it ends in the part's output. */
export interface Tail {
  text: string
  end: number
}

/** How much of a part's live output the page keeps, and for how many parts at most. */
export const tailChars = 8 * 1024
const keptTails = 100

export interface State {
  readonly sessions: Map<string, SessionJson>
  /** Live parts, and the most recently ended ones (so a timeout stays on screen with its reason). */
  readonly parts: Map<string, PartJson>
  /** Newest first (by id, which the log assigns in order), no duplicates, at most `maxEvents`. */
  events: Array<EventJson>
  readonly eventIds: Set<number>
  instances: ReadonlyArray<InstanceJson>
  recovery: RecoveryJson | null
  /** Server clock minus this clock: deadlines and ages are the server's times. */
  skew: number
  /** Live output of running parts (`part.delta`), by part id; dropped when the part ends. */
  readonly tails: Map<string, Tail>
}

export const maxEvents = 1_000
export const keptEndedParts = 200

export const emptyState = (): State => ({
  sessions: new Map(),
  parts: new Map(),
  events: [],
  eventIds: new Set(),
  instances: [],
  recovery: null,
  skew: 0,
  tails: new Map()
})

const isActive = (status: SessionJson["status"]) => status === "busy" || status === "waiting"
const isPartLive = (part: PartJson) => part.status === "pending" || part.status === "running"
const partRank = { pending: 0, running: 1, completed: 2, error: 2 } as const

/** A session update wins unless it is older than what is held (every transition is activity). */
export const putSession = (state: State, session: SessionJson): boolean => {
  const held = state.sessions.get(session.id)
  if (held !== undefined && held.lastActivityAt > session.lastActivityAt) return false
  state.sessions.set(session.id, session)
  return true
}

/**
 * A part update never moves a part back (a terminal part stays terminal), and keeps a recorded
 * process: the runner's terminal update is built from the row as it was before the pid was known.
 */
const putPart = (state: State, part: PartJson): boolean => {
  const held = state.parts.get(part.id)
  if (held !== undefined && partRank[held.status] > partRank[part.status]) return false
  const merged = held !== undefined && part.pid === null && held.pid !== null
    ? { ...part, pid: held.pid, pgid: held.pgid, procStart: held.procStart }
    : part
  state.parts.set(part.id, merged)
  if (!isPartLive(merged)) {
    // Its final output is the part's own now.
    state.tails.delete(part.id)
    pruneEnded(state)
  }
  return true
}

/**
 * A chunk of a running part's output. A delta that overlaps what is held adds only what is new; one
 * that starts past it (deltas skipped for a slow reader, or a part printing faster than the server
 * sends) is marked as a gap. Only the newest `tailChars` are kept, for at most `keptTails` parts.
 */
const putDelta = (state: State, delta: { readonly partId: string; readonly offset: number; readonly text: string }): boolean => {
  const held = state.parts.get(delta.partId)
  if (held !== undefined && !isPartLive(held)) return false
  let tail = state.tails.get(delta.partId)
  if (tail === undefined) {
    if (state.tails.size >= keptTails) state.tails.delete(state.tails.keys().next().value!)
    tail = { text: delta.offset > 0 ? "…" : "", end: delta.offset }
    state.tails.set(delta.partId, tail)
  }
  const deltaEnd = delta.offset + delta.text.length
  if (deltaEnd <= tail.end) return false
  if (delta.offset > tail.end) tail.text += `\n… ${delta.offset - tail.end} characters not shown …\n${delta.text}`
  else tail.text += delta.text.slice(tail.end - delta.offset)
  tail.end = deltaEnd
  if (tail.text.length > tailChars) tail.text = `…${tail.text.slice(tail.text.length - tailChars)}`
  return true
}

/** Drops the oldest ended parts once there are twice as many as kept (amortised: one sort per batch). */
const pruneEnded = (state: State) => {
  let ended = 0
  for (const part of state.parts.values()) if (!isPartLive(part)) ended++
  if (ended <= keptEndedParts * 2) return
  const endedParts = [...state.parts.values()].filter((part) => !isPartLive(part))
  endedParts.sort((a, b) => (b.endedAt ?? 0) - (a.endedAt ?? 0))
  for (const part of endedParts.slice(keptEndedParts)) state.parts.delete(part.id)
}

/** Adds events (any order) to the newest-first log, skipping ones already held. */
export const putEvents = (state: State, events: ReadonlyArray<EventJson>): boolean => {
  const fresh = events.filter((event) => !state.eventIds.has(event.id))
  if (fresh.length === 0) return false
  for (const event of fresh) state.eventIds.add(event.id)
  const newest = state.events[0]?.id ?? -Infinity
  if (fresh.length === 1 && fresh[0]!.id > newest) state.events.unshift(fresh[0]!)
  else state.events = [...fresh, ...state.events].sort((a, b) => b.id - a.id)
  if (state.events.length > maxEvents) {
    for (const event of state.events.splice(maxEvents)) state.eventIds.delete(event.id)
  }
  return true
}

/** One `/event` message; whether anything shown changed. */
export const applyEvent = (state: State, message: LiveMessage): boolean => {
  switch (message.type) {
    case "session.updated":
      return putSession(state, message.session)
    case "part.updated":
      return putPart(state, message.part)
    case "recovery.completed":
      state.recovery = message.report
      return true
    case "watchdog.action":
    case "idle.cancelled":
    case "supervision":
      return putEvents(state, [message.event])
    case "part.delta":
      return putDelta(state, message)
  }
}

export interface Snapshot {
  readonly sessions: ReadonlyArray<SessionJson>
  /** `GET /part/active`: every live part. */
  readonly activeParts: ReadonlyArray<PartJson>
  readonly events: ReadonlyArray<EventJson>
}

/**
 * The REST state after a (re)connect. Sessions are replaced; a part held as live that is no
 * longer live ended while the stream was down: it is dropped (its end is in the event log when
 * the supervision layer did it). Events published while the snapshot was read are applied after
 * it (see the client), and the guards of `putSession`/`putPart` make that safe.
 */
export const loadSnapshot = (state: State, snapshot: Snapshot): void => {
  state.sessions.clear()
  for (const session of snapshot.sessions) state.sessions.set(session.id, session)
  const live = new Set(snapshot.activeParts.map((part) => part.id))
  for (const part of [...state.parts.values()]) {
    if (isPartLive(part) && !live.has(part.id)) state.parts.delete(part.id)
  }
  for (const part of snapshot.activeParts) {
    const held = state.parts.get(part.id)
    if (held === undefined || isPartLive(held)) state.parts.set(part.id, part)
  }
  putEvents(state, snapshot.events)
}

// --- the session tree ---------------------------------------------------------------------------

export interface TreeRow {
  readonly session: SessionJson
  readonly depth: number
  readonly children: number
}

/**
 * Parent → children, depth-first. Roots (and sessions whose parent is not held) come with the
 * trees that have a busy or waiting session first, then newest first; children oldest first, as
 * they were made. A cycle (bad data) cannot loop: each session is placed once, and one that no root
 * leads to is shown as a root rather than lost.
 */
export const buildTree = (sessions: Iterable<SessionJson>): Array<TreeRow> => {
  const byId = new Map<string, SessionJson>()
  for (const session of sessions) byId.set(session.id, session)
  const children = new Map<string, Array<SessionJson>>()
  const roots: Array<SessionJson> = []
  for (const session of byId.values()) {
    if (session.parentId !== null && byId.has(session.parentId) && session.parentId !== session.id) {
      const siblings = children.get(session.parentId)
      if (siblings === undefined) children.set(session.parentId, [session])
      else siblings.push(session)
    } else roots.push(session)
  }
  const oldestFirst = (a: SessionJson, b: SessionJson) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1)
  for (const list of children.values()) list.sort(oldestFirst)

  // Whether a subtree has an active session, computed bottom-up without recursion.
  const activeBelow = new Map<string, boolean>()
  const subtreeActive = (root: SessionJson): boolean => {
    const stack: Array<SessionJson> = [root]
    const order: Array<SessionJson> = []
    const seen = new Set<string>()
    while (stack.length > 0) {
      const session = stack.pop()!
      if (seen.has(session.id)) continue
      seen.add(session.id)
      order.push(session)
      for (const child of children.get(session.id) ?? []) stack.push(child)
    }
    for (let i = order.length - 1; i >= 0; i--) {
      const session = order[i]!
      activeBelow.set(
        session.id,
        isActive(session.status) || (children.get(session.id) ?? []).some((child) => activeBelow.get(child.id) === true)
      )
    }
    return activeBelow.get(root.id) === true
  }
  const rootActive = new Map(roots.map((root) => [root.id, subtreeActive(root)]))
  roots.sort((a, b) =>
    Number(rootActive.get(b.id)) - Number(rootActive.get(a.id)) || b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1)
  )

  const rows: Array<TreeRow> = []
  const placed = new Set<string>()
  const place = (root: SessionJson) => {
    const stack = [{ session: root, depth: 0 }]
    while (stack.length > 0) {
      const { depth, session } = stack.pop()!
      if (placed.has(session.id)) continue
      placed.add(session.id)
      const kids = children.get(session.id) ?? []
      rows.push({ session, depth, children: kids.length })
      for (let i = kids.length - 1; i >= 0; i--) stack.push({ session: kids[i]!, depth: depth + 1 })
    }
  }
  for (const root of roots) place(root)
  if (placed.size < byId.size) for (const session of byId.values()) if (!placed.has(session.id)) place(session)
  return rows
}

// --- parts ----------------------------------------------------------------------------------------

/**
 * How much of its deadline a part has used, 0..1 (past the deadline it stays full); null when it
 * has no deadline. An ended part's bar stops where it ended.
 */
export const barFraction = (part: PartJson, now: number): number | null => {
  if (part.deadlineAt === null) return null
  const start = part.startedAt ?? part.createdAt
  const total = part.deadlineAt - start
  if (total <= 0) return 1
  const end = part.endedAt ?? now
  return Math.min(1, Math.max(0, (end - start) / total))
}

export interface PartSelection {
  readonly rows: ReadonlyArray<PartJson>
  /** How many matched before `limit`. */
  readonly total: number
  readonly live: number
}

/**
 * The parts panel: live parts first, nearest deadline first (no deadline last), then the recently
 * ended, newest first; of one session when a filter is set; at most `limit` rows.
 */
export const selectParts = (
  parts: Iterable<PartJson>,
  options: { readonly sessionId: string | null; readonly limit: number }
): PartSelection => {
  const live: Array<PartJson> = []
  const ended: Array<PartJson> = []
  for (const part of parts) {
    if (options.sessionId !== null && part.sessionId !== options.sessionId) continue
    if (isPartLive(part)) live.push(part)
    else ended.push(part)
  }
  live.sort((a, b) => (a.deadlineAt ?? Infinity) - (b.deadlineAt ?? Infinity) || (a.id < b.id ? -1 : 1))
  ended.sort((a, b) => (b.endedAt ?? 0) - (a.endedAt ?? 0))
  const total = live.length + ended.length
  const rows = live.length >= options.limit
    ? live.slice(0, options.limit)
    : [...live, ...ended.slice(0, options.limit - live.length)]
  return { rows, total, live: live.length }
}

/** The event log panel: newest first (as held), of one session when a filter is set. */
export const filterEvents = (
  events: ReadonlyArray<EventJson>,
  sessionId: string | null,
  limit: number
): ReadonlyArray<EventJson> => {
  if (sessionId === null) return events.slice(0, limit)
  const out: Array<EventJson> = []
  for (const event of events) {
    if (event.sessionId === sessionId) out.push(event)
    if (out.length >= limit) break
  }
  return out
}

/** Live parts per session, for the tree's counts (one pass over the parts). */
export const livePartsBySession = (parts: Iterable<PartJson>): Map<string, number> => {
  const counts = new Map<string, number>()
  for (const part of parts) if (isPartLive(part)) counts.set(part.sessionId, (counts.get(part.sessionId) ?? 0) + 1)
  return counts
}

// --- words ----------------------------------------------------------------------------------------

/** `850ms`, `12s`, `3m 05s`, `2h 03m`, `4d 2h`. */
export const formatDuration = (millis: number): string => {
  const ms = Math.max(0, Math.round(millis))
  if (ms < 1_000) return `${ms}ms`
  const s = Math.floor(ms / 1_000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`
  const h = Math.floor(m / 60)
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, "0")}m`
  return `${Math.floor(h / 24)}d ${h % 24}h`
}

/** The reason in words, as the model sees it (after the domain's `describeReason`, without Effect). */
export const reasonText = (reason: ReasonJson): string => {
  const d = formatDuration
  switch (reason._tag) {
    case "ToolTimeout":
      return `tool timed out after ${d(reason.timeout)}`
    case "OrphanedByCrash":
      return `interrupted: the server running it (${reason.ownerId}) stopped unexpectedly`
    case "WatchdogStuck":
      return `stopped by the watchdog: running for ${d(reason.runningFor)}, over the limit of ${d(reason.threshold)}`
    case "IdleCancelled":
      return `cancelled: no activity for ${d(reason.idleFor)} (limit ${d(reason.threshold)})`
    case "SessionCancelled":
      return `cancelled by ${reason.by}`
    case "AbortIncomplete":
      return `${reason.cause ? `${reason.cause}; ` : ""}the abort did not finish within ${d(reason.grace)}, the work was abandoned`
    case "ToolFailed":
      return reason.message
  }
}

export type EventKind = "recovery" | "timeout" | "watchdog" | "idle" | "late" | "abort" | "other"

/** The family of a logged action, for its colour. */
export const eventKind = (type: string): EventKind =>
  type.startsWith("recovery.")
    ? "recovery"
    : type === "part.timeout"
    ? "timeout"
    : type.startsWith("watchdog.")
    ? "watchdog"
    : type.startsWith("idle.")
    ? "idle"
    : type === "part.late_completion"
    ? "late"
    : type === "part.interrupt" || type === "part.abort_incomplete"
    ? "abort"
    : "other"

/** The reason of a logged action, or else its data in short. */
export const eventSummary = (event: EventJson, max = 160): string => {
  if (event.reason !== null) return `${event.reason._tag}: ${reasonText(event.reason)}`
  if (event.data === null || event.data === undefined) return ""
  const text = typeof event.data === "string" ? event.data : JSON.stringify(event.data)
  return text.length > max ? `${text.slice(0, max - 1)}…` : text
}

/** The last characters of an id (`ses_…` ids share their prefix and their time part). */
export const shortId = (id: string): string => (id.length > 10 ? `…${id.slice(-8)}` : id)
