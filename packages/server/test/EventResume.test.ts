import { assert, describe, it } from "@effect/vitest"
import { Events } from "@vigil/runtime"
import { EventLog } from "@vigil/store"
import { Context, Effect } from "effect"
import { EventSource } from "eventsource"
import { join } from "node:path"
import { afterEach } from "vitest"
import type { RunningServer } from "./support.js"
import { eventually, removeDirs, request, startServer, tempDir, withStore } from "./support.js"

/**
 * `/event` as a client sees it over a real socket: ids and replay (with the `eventsource` package,
 * which reconnects on its own with `Last-Event-ID`, and with `?since=`), the final states at a
 * stop, an overflow and its resume, a late subscriber's recovery report, and live output.
 */

const dirs: Array<string> = []
const servers: Array<RunningServer> = []
const sources: Array<EventSource> = []

afterEach(async () => {
  for (const source of sources.splice(0)) source.close()
  for (const server of servers.splice(0)) await server.close()
  removeDirs(dirs)
})

const start = async () => {
  const server = await startServer({ db: join(tempDir(dirs), "vigil.db") })
  servers.push(server)
  return server
}

const types = ["session.updated", "part.updated", "recovery.completed", "watchdog.action", "idle.cancelled", "supervision", "part.delta", "stream.overflow", "stream.truncated"]

interface Seen {
  readonly id: number | null
  readonly type: string
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly data: any
  readonly connection: number
}

/**
 * A fetch for the EventSource whose connections a test can cut (an error mid-body, as a dropped
 * network does) or hold (nothing read: the socket fills and the server's stream stalls).
 */
const controlledFetch = () => {
  const requests: Array<Record<string, string>> = []
  let current: { cut: () => void; hold: () => void; release: () => void } | undefined
  const fetchFn = async (input: string | URL | Request, init?: RequestInit) => {
    const headers: Record<string, string> = {}
    new Headers(init?.headers).forEach((value, key) => (headers[key] = value))
    requests.push(headers)
    const response = await fetch(input, init)
    const reader = response.body!.getReader()
    let cut: ((error: Error) => void) | undefined
    const cutPromise = new Promise<never>((_, reject) => (cut = reject))
    cutPromise.catch(() => undefined)
    let held: Promise<void> | undefined
    let release: () => void = () => undefined
    current = {
      cut: () => {
        cut!(new Error("connection cut by the test"))
        void reader.cancel().catch(() => undefined)
      },
      hold: () => (held = new Promise<void>((resolve) => (release = resolve))),
      release: () => {
        held = undefined
        release()
      }
    }
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (held !== undefined) await held
        const next = await Promise.race([reader.read(), cutPromise])
        if (next.done) controller.close()
        else controller.enqueue(next.value)
      }
    })
    return new Response(body, { status: response.status, headers: response.headers })
  }
  return { fetchFn, requests, connection: () => current! }
}

/** A real EventSource on `/event`, recording every message with its id and connection. */
const follow = (url: string, fetchFn?: ReturnType<typeof controlledFetch>["fetchFn"]) => {
  const seen: Array<Seen> = []
  let connection = 0
  const source = new EventSource(`${url}/event`, fetchFn === undefined ? {} : { fetch: fetchFn })
  sources.push(source)
  source.addEventListener("open", () => connection++)
  for (const type of types) {
    source.addEventListener(type, (message) => {
      // `lastEventId` is the source's last id, kept across messages: those sent without one
      // (deltas, the stream's own notices) carry the previous one there.
      const own = type !== "part.delta" && !type.startsWith("stream.")
      seen.push({ id: own && message.lastEventId !== "" ? Number(message.lastEventId) : null, type, data: JSON.parse(message.data), connection })
    })
  }
  return { source, seen, opened: () => connection }
}

/** Every event the log holds, oldest first. */
const logged = (db: string) => withStore(db, Effect.flatMap(EventLog, (log) => log.after(0, 1_000_000)))

const runTool = async (url: string, sessionId: string, command: string) => {
  const response = await request(`${url}/session/${sessionId}/tool`, { body: { tool: "bash", input: { command } } })
  assert.strictEqual(response.status, 202, JSON.stringify(response.body))
  return response.body.partId as string
}

const atRest = (url: string, sessionId: string) =>
  eventually(async () => {
    const session = (await request(`${url}/session/${sessionId}`)).body
    return session.status === "busy" || session.status === "waiting" ? undefined : session
  }, 20_000, `session ${sessionId} at rest`)

/** Raw SSE over fetch (as curl would read it): messages with their `id:`, until `until` holds or the stream ends. */
const readRaw = async (url: string, headers: Record<string, string>, until: (seen: ReadonlyArray<Seen>) => boolean) => {
  const controller = new AbortController()
  const response = await fetch(url, { headers, signal: controller.signal })
  const seen: Array<Seen> = []
  let preamble = ""
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ""
  let ended = false
  const deadline = Date.now() + 20_000
  while (!until(seen) && Date.now() < deadline) {
    const { done, value } = await reader.read()
    if (done) {
      ended = true
      break
    }
    buffer += value
    let end: number
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const data = /^data: (.*)$/m.exec(block)?.[1]
      if (data === undefined) {
        preamble += `${block}\n\n`
        continue
      }
      const id = /^id: (.*)$/m.exec(block)?.[1]
      seen.push({ id: id === undefined ? null : Number(id), type: /^event: (.*)$/m.exec(block)![1]!, data: JSON.parse(data), connection: 0 })
    }
  }
  controller.abort()
  return { seen, preamble, ended, status: response.status }
}

const assertExactlyOnce = (ids: ReadonlyArray<number>, expected: ReadonlyArray<number>) => {
  const counts = new Map<number, number>()
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1)
  const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id)
  assert.deepStrictEqual(twice, [], "ids seen more than once")
  const missing = expected.filter((id) => !counts.has(id))
  assert.deepStrictEqual(missing, [], "recorded ids never seen")
}

describe("/event: ids, replay and resume", () => {
  it("an EventSource cut off mid-run reconnects with Last-Event-ID and sees every recorded event exactly once", { timeout: 60_000 }, async () => {
    const server = await start()
    const control = controlledFetch()
    const client = follow(server.url, control.fetchFn)
    await eventually(async () => (client.seen.length > 0 ? true : undefined), 10_000, "the first event")
    // A fresh stream starts with the recovery report, at the current position.
    assert.strictEqual(client.seen[0]!.type, "recovery.completed")
    const startId = client.seen[0]!.id!
    assert.isAbove(startId, 0)

    const session = (await request(`${server.url}/session`, { body: {} })).body
    const partIds: Array<string> = []
    for (let i = 0; i < 12; i++) {
      partIds.push(await runTool(server.url, session.id, `echo step ${i}`))
      await atRest(server.url, session.id)
      // Cut in the middle of the run: the steps in between happen while the client is away.
      if (i === 4) control.connection().cut()
    }
    await eventually(async () => (client.opened() >= 2 ? true : undefined), 15_000, "the reconnect")
    const all = (await logged(server.db)).filter((event) => event.id > startId)
    const last = all.at(-1)!.id
    await eventually(async () => (client.seen.some((seen) => seen.id === last) ? true : undefined), 15_000, "the last recorded event")

    // The reconnect carried the last id the client had seen.
    assert.strictEqual(control.requests.length, 2)
    assert.isUndefined(control.requests[0]!["last-event-id"])
    const resumedFrom = Number(control.requests[1]!["last-event-id"])
    assert.isAbove(resumedFrom, startId)
    assert.isBelow(resumedFrom, last)
    // Something recorded while it was away came back through the replay.
    assert.isTrue(client.seen.some((seen) => seen.connection === 2 && seen.id !== null && seen.id <= last && seen.id > resumedFrom))

    const ids = client.seen.flatMap((seen) => (seen.id === null || seen.type === "recovery.completed" ? [] : [seen.id]))
    assertExactlyOnce(ids, all.map((event) => event.id))
    // In order, across the reconnect.
    assert.deepStrictEqual(ids, [...ids].sort((a, b) => a - b))
    // Every part's final state reached the client.
    for (const partId of partIds) {
      const updates = client.seen.filter((seen) => seen.type === "part.updated" && seen.data.part.id === partId)
      assert.strictEqual(updates.at(-1)?.data.part.status, "completed", partId)
    }
  })

  it("?since=<id> replays what the log holds after it, then goes on live; a bad id is a 400", { timeout: 60_000 }, async () => {
    const server = await start()
    const session = (await request(`${server.url}/session`, { body: {} })).body
    await runTool(server.url, session.id, "echo one")
    await atRest(server.url, session.id)
    const before = await logged(server.db)
    const since = before[Math.floor(before.length / 2)]!.id
    const expected = before.filter((event) => event.id > since).map((event) => event.id)
    const replay = await readRaw(`${server.url}/event?since=${since}`, {}, (seen) => seen.some((s) => s.id === expected.at(-1)))
    assert.match(replay.preamble, /^: connected\nretry: 1000\n\n/)
    // Exactly what the log holds after `since`, up to the last id the stream sent: a state marker
    // may still land after the session is at rest (markers are written in batches after the rows;
    // on a loaded machine a few ms late), and then it is in the log and in the replay alike.
    const sent = replay.seen.map((seen) => seen.id)
    const last = Math.max(...sent.map((id) => id ?? 0))
    const held = (await logged(server.db)).filter((event) => event.id > since && event.id <= last).map((event) => event.id)
    assert.deepStrictEqual(sent, held)
    assert.includeMembers(sent, expected)
    const replayedPart = replay.seen.find((seen) => seen.type === "part.updated")
    assert.strictEqual(replayedPart?.data.part.status, "completed")

    // Live after the replay: a new step shows up on the same stream.
    const live = readRaw(`${server.url}/event?since=${expected.at(-1)}`, {}, (seen) =>
      seen.some((s) => s.type === "part.updated" && s.data.part.status === "completed"))
    await new Promise((resolve) => setTimeout(resolve, 300))
    await runTool(server.url, session.id, "echo two")
    const more = await live
    assert.isTrue(more.seen.every((seen) => seen.id === null || seen.id > expected.at(-1)!))
    assert.isTrue(more.seen.some((seen) => seen.type === "part.updated" && seen.data.part.status === "completed"))

    const bad = await request(`${server.url}/event?since=abc`)
    assert.strictEqual(bad.status, 400)
    assert.include(bad.body.message, "since")
  })

  it("at a stop, the parts the stop ended reach connected clients before the stream ends", { timeout: 60_000 }, async () => {
    const server = await start()
    const session = (await request(`${server.url}/session`, { body: {} })).body
    const reading = readRaw(`${server.url}/event`, {}, () => false)
    await new Promise((resolve) => setTimeout(resolve, 300))
    const partId = await runTool(server.url, session.id, "sleep 30")
    await eventually(async () => ((await request(`${server.url}/part/${partId}`)).body.status === "running" ? true : undefined))
    await server.close()
    servers.splice(servers.indexOf(server), 1)
    const { ended, seen } = await reading
    assert.isTrue(ended, "the stream ended")
    const last = seen.filter((s) => s.type === "part.updated" && s.data.part.id === partId).at(-1)
    assert.strictEqual(last?.data.part.status, "error")
    assert.deepStrictEqual(last?.data.part.error, { _tag: "SessionCancelled", by: "shutdown" })
    const sessionEnd = seen.filter((s) => s.type === "session.updated" && s.data.session.id === session.id).at(-1)
    assert.strictEqual(sessionEnd?.data.session.status, "cancelled")
  })

  it("a client that falls behind is ended with stream.overflow and its last id, and resumes from it with nothing lost", { timeout: 90_000 }, async () => {
    const server = await start()
    const events = Context.get(server.context, Events)
    const control = controlledFetch()
    const client = follow(server.url, control.fetchFn)
    await eventually(async () => (client.seen.length > 0 ? true : undefined), 10_000, "the first event")
    control.connection().hold()
    // 70 MB of logged events while it reads nothing: past the socket's buffers (Linux lets a
    // loopback receive buffer grow to 32 MiB) and the 8 MiB bound.
    const big = "x".repeat(100_000)
    const recorded: Array<number> = []
    for (let i = 0; i < 700; i++) {
      recorded.push((await Effect.runPromise(events.record({ type: "test.flood", data: { i, big } }))).id)
    }
    control.connection().release()
    await eventually(async () => (client.seen.some((seen) => seen.id === recorded.at(-1)) ? true : undefined), 40_000, "the last flood event")
    const overflow = client.seen.find((seen) => seen.type === "stream.overflow")
    assert.isDefined(overflow, "the stream was ended for falling behind")
    assert.include(overflow!.data.message, "fell behind")
    // The notice names the last id delivered, and the reconnect resumed from exactly there.
    const before = client.seen.filter((seen) => seen.connection === overflow!.connection && seen.type === "supervision")
    assert.strictEqual(overflow!.data.lastId, before.at(-1)!.id)
    assert.strictEqual(Number(control.requests.at(-1)!["last-event-id"]), overflow!.data.lastId)
    const ids = client.seen.filter((seen) => seen.type === "supervision").map((seen) => seen.id!)
    assertExactlyOnce(ids, recorded)
  })

  it("whoever connects after start-up gets the last recovery report first", { timeout: 60_000 }, async () => {
    const server = await start()
    const session = (await request(`${server.url}/session`, { body: {} })).body
    await runTool(server.url, session.id, "echo later")
    await atRest(server.url, session.id)
    const health = (await request(`${server.url}/health`)).body
    const { seen, preamble } = await readRaw(`${server.url}/event`, {}, (s) => s.length > 0)
    assert.strictEqual(seen[0]!.type, "recovery.completed")
    assert.deepStrictEqual(seen[0]!.data.report, health.recovery)
    // At the current position: resuming from it replays only what comes later.
    const head = (await logged(server.db)).at(-1)!.id
    assert.strictEqual(seen[0]!.id, head)
    assert.include(preamble, `id: ${head}\n`)
  })

  it("a running shell's output arrives as part.delta while it sleeps, then its final state", { timeout: 60_000 }, async () => {
    const server = await start()
    const session = (await request(`${server.url}/session`, { body: {} })).body
    const client = follow(server.url)
    await eventually(async () => (client.seen.length > 0 ? true : undefined), 10_000, "the first event")
    const partId = await runTool(server.url, session.id, "echo first; sleep 1.5; echo second; sleep 1.5; echo third")
    const firstDelta = await eventually(
      async () => client.seen.find((seen) => seen.type === "part.delta" && seen.data.partId === partId),
      10_000,
      "the first delta"
    )
    assert.strictEqual(firstDelta.data.text, "first\n")
    assert.strictEqual(firstDelta.data.offset, 0)
    assert.strictEqual(firstDelta.data.sessionId, session.id)
    // Seen while the part still runs.
    assert.strictEqual((await request(`${server.url}/part/${partId}`)).body.status, "running")
    await atRest(server.url, session.id)
    await eventually(async () =>
      client.seen.some((seen) => seen.type === "part.updated" && seen.data.part.id === partId && seen.data.part.status === "completed")
        ? true
        : undefined)
    const mine = client.seen.filter((seen) => (seen.type === "part.delta" && seen.data.partId === partId) || (seen.type === "part.updated" && seen.data.part.id === partId))
    const deltas = mine.filter((seen) => seen.type === "part.delta")
    assert.deepStrictEqual(deltas.map((seen) => seen.data.text).join(""), "first\nsecond\nthird\n")
    let offset = 0
    for (const delta of deltas) {
      assert.strictEqual(delta.data.offset, offset)
      offset += delta.data.text.length
    }
    // Every delta before the final state; the final output is the part's own, durable one.
    assert.strictEqual(mine.at(-1)!.type, "part.updated")
    assert.strictEqual(mine.at(-1)!.data.part.output, "first\nsecond\nthird\n")
  })

  it("a model step's text streams as part.delta while the step still runs", { timeout: 60_000 }, async () => {
    const server = await start()
    const session = (await request(`${server.url}/session`, { body: {} })).body
    const client = follow(server.url)
    await eventually(async () => (client.seen.length > 0 ? true : undefined), 10_000, "the first event")
    const script = JSON.stringify([{ text: "thinking" }, { sleep: 1500 }, { text: "done thinking" }])
    const prompted = await request(`${server.url}/session/${session.id}/prompt`, { body: { text: script } })
    assert.strictEqual(prompted.status, 202, JSON.stringify(prompted.body))
    const first = await eventually(async () => client.seen.find((seen) => seen.type === "part.delta" && seen.data.sessionId === session.id), 10_000, "the model's first delta")
    assert.strictEqual(first.data.text, "thinking")
    const step = (await request(`${server.url}/part/${first.data.partId}`)).body
    assert.strictEqual(step.kind, "model")
    assert.strictEqual(step.status, "running")
    await atRest(server.url, session.id)
    await eventually(async () => (client.seen.some((seen) => seen.type === "part.updated" && seen.data.part.id === step.id && seen.data.part.status === "completed") ? true : undefined))
    const texts = client.seen.filter((seen) => seen.type === "part.delta" && seen.data.partId === step.id).map((seen) => seen.data.text)
    assert.strictEqual(texts.join(""), "thinkingdone thinking")
  })
})
