/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import type { Panel } from "./Render.js"
import { clockText, liveBar, renderEvents, renderInstances, renderParts, renderRecovery, renderSessions, renderTail } from "./Render.js"
import type { EventJson, InstanceJson, LiveMessage, PartJson, RecoveryJson, SessionJson } from "./View.js"
import { applyEvent, emptyState, liveTypes, loadSnapshot, putEvents, putSession } from "./View.js"

/**
 * The page: REST for the state, `/event` for what changes, rendered by the pure modules. Same
 * origin, so the browser's basic-auth credentials (when the server asks for them) go with every
 * fetch and with the event stream.
 */

const state = emptyState()
let selected: string | null = null
/** The part whose live output the tail shows. */
let selectedPart: string | null = null
const element = (id: string) => document.getElementById(id)!
const serverNow = () => Date.now() + state.skew

const getJson = async <A>(path: string): Promise<A> => {
  const response = await fetch(path, { headers: { accept: "application/json" } })
  if (!response.ok) throw new Error(`${path} answered ${response.status}`)
  return (await response.json()) as A
}

/**
 * A paged list (`{items, next}`), page after page up to `maxItems`: the live parts whole, the
 * newest sessions up to what one screen can show.
 */
const getPages = async <A>(path: string, maxItems: number): Promise<Array<A>> => {
  const items: Array<A> = []
  let cursor: string | null = null
  do {
    const separator = path.includes("?") ? "&" : "?"
    const query: string = `${separator}limit=1000${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`
    const page: { items: Array<A>; next: string | null } = await getJson(`${path}${query}`)
    items.push(...page.items)
    cursor = page.next
  } while (cursor !== null && items.length < maxItems)
  return items
}

const flash = (text: string) => {
  const node = element("flash")
  node.textContent = text
  node.hidden = text === ""
}

// --- rendering ---------------------------------------------------------------------------------

const panels = [
  ["sessions", renderSessions],
  ["parts", renderParts],
  ["events", renderEvents],
  ["instances", renderInstances]
] as const

/** Values that move with the clock, under `root`, at the server's `now`. */
const fillClock = (root: ParentNode, now: number) => {
  for (const node of root.querySelectorAll<HTMLElement>("[data-since]")) {
    node.textContent = clockText(Number(node.dataset["since"]), now)
  }
  for (const bar of root.querySelectorAll<HTMLElement>(".bar[data-deadline]")) {
    const { level, width } = liveBar(Number(bar.dataset["start"]), Number(bar.dataset["deadline"]), now)
    ;(bar.firstElementChild as HTMLElement).style.width = width
    bar.className = `bar ${level}`
  }
}

/**
 * Keyed rows: a row whose HTML is unchanged keeps its element (and a selection or a hover in it);
 * the changed ones are parsed together, once, and moved into place.
 */
const shownRows = new Map<string, Map<string, { readonly html: string; readonly node: Element }>>()
const shownHeads = new Map<string, string>()

const patch = (table: HTMLTableElement, panel: Panel, now: number) => {
  if (shownHeads.get(table.id) !== panel.head) {
    table.innerHTML = `<thead>${panel.head}</thead><tbody></tbody>`
    shownHeads.set(table.id, panel.head)
    shownRows.set(table.id, new Map())
  }
  const held = shownRows.get(table.id)!
  const changed = panel.rows.filter((row) => held.get(row.key)?.html !== row.html)
  const parsed = document.createElement("template")
  parsed.innerHTML = changed.map((row) => row.html).join("")
  fillClock(parsed.content, now)
  const fresh = new Map(changed.map((row, i) => [row.key, { html: row.html, node: parsed.content.children[i]! }]))
  const body = table.tBodies[0]!
  if (changed.length === panel.rows.length) {
    // All new (the first render, a filter): one move of the parsed rows.
    body.replaceChildren(parsed.content)
    shownRows.set(table.id, fresh)
    return
  }
  const next = new Map<string, { readonly html: string; readonly node: Element }>()
  let cursor = body.firstElementChild
  for (const row of panel.rows) {
    const entry = fresh.get(row.key) ?? held.get(row.key)!
    next.set(row.key, entry)
    if (cursor === entry.node) cursor = cursor.nextElementSibling
    else body.insertBefore(entry.node, cursor)
  }
  // Everything before the cursor was placed above; what is left is gone.
  while (cursor !== null) {
    const after = cursor.nextElementSibling
    cursor.remove()
    cursor = after
  }
  shownRows.set(table.id, next)
}

const timings = { renders: 0, lastMs: 0, maxMs: 0 }
let shownRecovery = ""
let shownTail = ""

const renderNow = () => {
  const started = performance.now()
  const view = { selected }
  const now = serverNow()
  for (const [id, render] of panels) patch(element(id) as HTMLTableElement, render(state, view), now)
  const tail = renderTail(state, selectedPart)
  const tailNode = element("tail")
  if (shownTail !== tail) {
    tailNode.innerHTML = tail
    tailNode.hidden = tail === ""
    const pre = tailNode.querySelector("pre")
    if (pre !== null) pre.scrollTop = pre.scrollHeight
  }
  shownTail = tail
  const recovery = renderRecovery(state.recovery)
  if (shownRecovery !== recovery) element("recovery").innerHTML = recovery
  shownRecovery = recovery
  let busy = 0
  for (const session of state.sessions.values()) if (session.status === "busy" || session.status === "waiting") busy++
  let live = 0
  for (const part of state.parts.values()) if (part.status === "pending" || part.status === "running") live++
  element("counts").textContent = `${state.sessions.size} sessions · ${busy} active · ${live} live parts · ${state.events.length} events`
  const filter = element("filter")
  filter.hidden = selected === null
  element("filter-id").textContent = selected ?? ""
  const ms = performance.now() - started
  timings.renders++
  timings.lastMs = ms
  timings.maxMs = Math.max(timings.maxMs, ms)
}

let scheduled = false
const schedule = () => {
  if (scheduled) return
  scheduled = true
  requestAnimationFrame(() => {
    scheduled = false
    renderNow()
  })
}

/** Once a second: only the values that move with the clock, in place. */
const tick = () => fillClock(document, serverNow())

// --- state from the server ---------------------------------------------------------------------

/** Events that arrive while a snapshot is read, applied after it. */
let buffered: Array<LiveMessage> | null = null
let refreshing: Promise<void> | null = null

const refresh = () =>
  (refreshing ??= (async () => {
    buffered = []
    try {
      const [sessions, activeParts, events] = await Promise.all([
        getPages<SessionJson>("/session", 1_000),
        getPages<PartJson>("/part/active", 100_000),
        getJson<{ items: Array<EventJson> }>(`/event/log?limit=300`).then((page) => page.items)
      ])
      loadSnapshot(state, { sessions, activeParts, events })
      if (selected !== null) putEvents(state, (await getJson<{ items: Array<EventJson> }>(sessionLog(selected))).items)
      flash("")
    } catch (error) {
      flash(`could not read the state: ${String(error)}`)
    } finally {
      const pending = buffered ?? []
      buffered = null
      refreshing = null
      for (const message of pending) applyEvent(state, message)
      schedule()
    }
  })())

const sessionLog = (id: string) => `/event/log?limit=300&sessionId=${encodeURIComponent(id)}`

const pollInstances = async () => {
  try {
    const sent = Date.now()
    const [list, health] = await Promise.all([
      getJson<{ now: number; instances: Array<InstanceJson> }>("/instance"),
      getJson<{ recovery: RecoveryJson }>("/health")
    ])
    state.skew = list.now - (sent + Date.now()) / 2
    state.instances = list.instances
    state.recovery = health.recovery
    schedule()
  } catch {
    // The stream's status already says the server is unreachable.
  }
}

const onMessage = (message: LiveMessage) => {
  if (buffered !== null) buffered.push(message)
  else if (applyEvent(state, message)) schedule()
}

let source: EventSource | null = null
let backoff = 500

const setConnection = (status: "connecting" | "live" | "reconnecting") => {
  const node = element("connection")
  node.className = status
  node.textContent = status
}

/**
 * `/event`, reconnected by hand with a growing pause: EventSource gives up for good on an HTTP
 * error (a restarting server, a proxy), and each new connection reloads the state it may have missed.
 */
const connect = () => {
  setConnection(source === null && backoff === 500 ? "connecting" : "reconnecting")
  const stream = new EventSource("/event")
  source = stream
  for (const type of liveTypes) {
    stream.addEventListener(type, (event) => onMessage(JSON.parse((event as MessageEvent<string>).data) as LiveMessage))
  }
  stream.onopen = () => {
    backoff = 500
    setConnection("live")
    void refresh()
    void pollInstances()
  }
  stream.onerror = () => {
    stream.close()
    if (source !== stream) return
    setConnection("reconnecting")
    setTimeout(connect, backoff)
    backoff = Math.min(backoff * 2, 5_000)
  }
}

// --- actions -----------------------------------------------------------------------------------

const select = (id: string | null) => {
  selected = selected === id ? null : id
  if (selected !== null) {
    void getJson<{ items: Array<EventJson> }>(sessionLog(selected)).then((page) => putEvents(state, page.items) && schedule(), () => undefined)
  }
  schedule()
}

const abort = async (id: string) => {
  const session = state.sessions.get(id)
  const name = session?.title ? `"${session.title}" (${id})` : id
  if (!window.confirm(`Abort session ${name}?\nIts turn and every running part end (SessionCancelled), children first.`)) return
  try {
    const response = await fetch(`/session/${encodeURIComponent(id)}/abort`, { method: "POST" })
    if (!response.ok) throw new Error(`answered ${response.status}: ${await response.text()}`)
    putSession(state, (await response.json()) as SessionJson)
    schedule()
  } catch (error) {
    flash(`abort of ${id} failed: ${String(error)}`)
  }
}

document.addEventListener("click", (event) => {
  const target = event.target as HTMLElement
  const abortButton = target.closest<HTMLElement>("[data-abort]")
  if (abortButton !== null) {
    event.stopPropagation()
    void abort(abortButton.dataset["abort"]!)
    return
  }
  const link = target.closest<HTMLElement>("[data-filter]")
  if (link !== null) {
    event.preventDefault()
    select(link.dataset["filter"]!)
    return
  }
  if (target.closest("#filter-clear") !== null) {
    select(null)
    return
  }
  const partRow = target.closest<HTMLElement>("tr[data-part]")
  if (partRow !== null && target.closest("code") === null) {
    selectedPart = selectedPart === partRow.dataset["part"] ? null : partRow.dataset["part"]!
    schedule()
    return
  }
  const row = target.closest<HTMLElement>("tr[data-session]")
  if (row !== null && target.closest("code") === null) select(row.dataset["session"]!)
})

connect()
setInterval(tick, 1_000)
setInterval(() => void pollInstances(), 5_000)
// Activity that is not a state change nor output (a part's last activity) is not streamed: read it again.
setInterval(() => void refresh(), 20_000)

/** For the end-to-end test and the responsiveness measurement. */
Object.assign(window, { vigilDashboard: { state, renderNow, tick, timings } })
