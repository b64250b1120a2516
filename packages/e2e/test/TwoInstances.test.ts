import { assert, describe, it } from "@effect/vitest"
import { freshPgSchema, pgSkipped } from "@vigil/store/test-database"
import { Effect } from "effect"
import { sendJson } from "./support/Http.js"
import { isLive, readStat } from "./support/Processes.js"
import type { Workspace } from "./support/ServerProcess.js"
import { eventually, killEverything, makeWorkspace, ServerProcess, sleep } from "./support/ServerProcess.js"

/**
 * Two real `vigil serve` processes on one database (one SQLite file, or one PostgreSQL schema with
 * each server playing another host, so neither can signal the other's processes): a request for a
 * session whose turn runs on the other instance either reaches that instance through the database
 * (abort) or is refused with 409 naming it (prompt, tool, reply), and a session never runs two
 * turns at once.
 */

const settings = {
  tool_timeout: "10 minutes",
  watchdog_interval: "200 ms",
  instance_lease: "60 seconds",
  abort_grace: "1 second",
  kill_grace: "300 ms"
}

interface SessionRow {
  readonly id: string
  readonly status: string
  readonly ownerId: string
  readonly cancelReason: { readonly _tag: string; readonly by?: string } | null
}
interface PartRow {
  readonly id: string
  readonly kind: string
  readonly tool: string
  readonly status: string
  readonly ownerId: string
  readonly pid: number | null
  readonly output: string | null
  readonly error: { readonly _tag: string } | null
}

const call = async <A>(server: ServerProcess, method: string, path: string, body?: unknown) => {
  const answer = await sendJson(server.url, method, path, body)
  return { status: answer.status, body: answer.json as A, text: answer.text }
}
const expect = async <A>(status: number, server: ServerProcess, method: string, path: string, body?: unknown): Promise<A> => {
  const answer = await call<A>(server, method, path, body)
  if (answer.status !== status) throw new Error(`${method} ${path}: expected ${status}, got ${answer.status}: ${answer.text}`)
  return answer.body
}

const script = (...steps: ReadonlyArray<unknown>) => JSON.stringify(steps)
const alive = (pid: number) => isLive(readStat(pid))

/** The part of `sessionId` running `command` once its shell's pid is on record. */
const runningShell = (server: ServerProcess, sessionId: string, command: string) =>
  eventually(`a running "${command}" with its pid in ${sessionId}`, 30_000, async () => {
    const parts = (await expect<{ items: ReadonlyArray<PartRow> }>(200, server, "GET", `/session/${sessionId}/part?limit=1000`)).items
    const part = parts.find((row) => row.tool === "bash" && row.status === "running" && row.pid !== null)
    return part !== undefined && alive(part.pid!) ? part : undefined
  })

/** Every way into a busy session from both instances: prompt and tool answer 409 naming the owner. */
const refusedEverywhere = async (servers: ReadonlyArray<ServerProcess>, sessionId: string, ownerId: string) => {
  for (const server of servers) {
    for (const [path, body] of [
      ["prompt", { text: script({ text: "a second turn" }) }],
      ["tool", { tool: "bash", input: { command: "echo second" } }]
    ] as const) {
      const answer = await call<{ _tag: string; ownerId?: string; message: string }>(server, "POST", `/session/${sessionId}/${path}`, body)
      assert.strictEqual(answer.status, 409, `${path} during a running turn: ${answer.text}`)
      assert.strictEqual(answer.body._tag, "SessionBusy")
      assert.strictEqual(answer.body.ownerId, ownerId)
      assert.include(answer.body.message, ownerId)
    }
  }
}

/** Abort at `at`; resolves once it answered and the shell `pid` is gone, with how long each took. */
const abortAt = async (at: ServerProcess, sessionId: string, pid: number) => {
  const started = Date.now()
  const session = await expect<SessionRow>(200, at, "POST", `/session/${sessionId}/abort`)
  const answeredMs = Date.now() - started
  await eventually(`shell ${pid} to be gone`, 10_000, async () => (alive(pid) ? undefined : true))
  return { session, answeredMs, goneMs: Date.now() - started }
}

const scenario = async (workspace: Workspace, env: (index: number) => Record<string, string>) => {
  const a = new ServerProcess(workspace, env(0))
  const b = new ServerProcess(workspace, env(1))
  try {
    const [healthA, healthB] = await Promise.all([a.start(), b.start()])
    const idA = healthA.instance.id
    const idB = healthB.instance.id
    const timings: Array<string> = []

    // 1. A tool call runs on A; B is asked to abort it.
    const { id: sessionId } = await expect<SessionRow>(201, a, "POST", "/session", { title: "shared" })
    await expect(202, a, "POST", `/session/${sessionId}/tool`, { tool: "bash", input: { command: "sleep 300" } })
    const first = await runningShell(a, sessionId, "sleep 300")
    await refusedEverywhere([a, b], sessionId, idA)
    const aborted = await abortAt(b, sessionId, first.pid!)
    timings.push(`tool on A aborted at B: answered in ${aborted.answeredMs} ms, shell gone in ${aborted.goneMs} ms`)
    assert.strictEqual(aborted.session.status, "cancelled", "abort answers once the owner ended the turn")
    assert.deepStrictEqual(aborted.session.cancelReason, { _tag: "SessionCancelled", by: "api" })
    // The owner ended the shell before the abort answered; the answer itself is one poll or two away
    // (generous here: a loaded CI machine may stall the owner's event loop).
    assert.isBelow(aborted.goneMs - aborted.answeredMs, 1_000, "the shell is gone by the time the abort answers")
    assert.isBelow(aborted.goneMs, 5_000, "the owner's shell is gone within about a second of the abort")
    const firstRow = await expect<PartRow>(200, a, "GET", `/part/${first.id}`)
    assert.deepStrictEqual([firstRow.status, firstRow.error?._tag, firstRow.ownerId], ["error", "SessionCancelled", idA])

    // 2. An agent turn starts on B; every other way in is refused on both; A aborts it.
    await expect(202, b, "POST", `/session/${sessionId}/prompt`, { text: script({ tool: "bash", input: { command: "sleep 301" } }, { text: "never" }) })
    const second = await runningShell(b, sessionId, "sleep 301")
    await refusedEverywhere([a, b], sessionId, idB)
    const secondAbort = await abortAt(a, sessionId, second.pid!)
    timings.push(`turn on B aborted at A: answered in ${secondAbort.answeredMs} ms, shell gone in ${secondAbort.goneMs} ms`)
    assert.strictEqual(secondAbort.session.status, "cancelled")
    assert.isBelow(secondAbort.goneMs - secondAbort.answeredMs, 1_000)
    assert.isBelow(secondAbort.goneMs, 5_000)

    // 3. A turn waiting on a question at A: a reply sent to B is refused naming A; sent to A, it lands.
    await expect(202, a, "POST", `/session/${sessionId}/prompt`, {
      text: script({ tool: "ask", input: { question: "go on?" } }, { text: "asked and answered" })
    })
    const ask = await eventually("the ask to wait", 30_000, async () => {
      const parts = (await expect<{ items: ReadonlyArray<PartRow> }>(200, a, "GET", `/session/${sessionId}/part?limit=1000`)).items
      return parts.find((row) => row.tool === "ask" && row.status === "running")
    })
    await eventually("the session to wait", 30_000, async () =>
      (await expect<SessionRow>(200, b, "GET", `/session/${sessionId}`)).status === "waiting" ? true : undefined)
    const misrouted = await call<{ _tag: string; ownerId?: string; message: string }>(b, "POST", `/session/${sessionId}/reply`, {
      requestId: ask.id,
      answer: "yes"
    })
    assert.strictEqual(misrouted.status, 409, misrouted.text)
    assert.deepStrictEqual([misrouted.body._tag, misrouted.body.ownerId], ["SessionBusy", idA])
    await expect(200, a, "POST", `/session/${sessionId}/reply`, { requestId: ask.id, answer: "yes" })
    await eventually("the answered turn to end", 30_000, async () =>
      (await expect<SessionRow>(200, b, "GET", `/session/${sessionId}`)).status === "idle" ? true : undefined)

    // 4. Never two turns: after every turn's end, nothing of an earlier turn ran on (no step of one
    // turn by the other instance), and nothing is left running.
    await sleep(1_000)
    const parts = (await expect<{ items: ReadonlyArray<PartRow> }>(200, a, "GET", `/session/${sessionId}/part?limit=1000`)).items
    const prompts = parts.filter((part) => part.kind === "prompt")
    assert.strictEqual(prompts.length, 2, "two prompts were accepted")
    const [promptB, promptA] = prompts as [PartRow, PartRow]
    assert.deepStrictEqual([promptB.ownerId, promptA.ownerId], [idB, idA])
    const between = (from: PartRow, to: PartRow | undefined) => parts.filter((part) => part.id > from.id && (to === undefined || part.id < to.id))
    for (const part of between(promptB, promptA)) assert.strictEqual(part.ownerId, idB, `part ${part.id} of B's turn`)
    for (const part of between(promptA, undefined)) assert.strictEqual(part.ownerId, idA, `part ${part.id} of A's turn`)
    assert.deepStrictEqual(parts.filter((part) => part.status === "running" || part.status === "pending"), [])
    const texts = parts.filter((part) => part.kind === "text").map((part) => part.output)
    assert.deepStrictEqual(texts, ["asked and answered"], "the aborted turn never went on to its text")
    const final = await expect<SessionRow>(200, b, "GET", `/session/${sessionId}`)
    assert.deepStrictEqual([final.status, final.ownerId], ["idle", idA])
    return timings
  } finally {
    await a.retire()
    await b.retire()
  }
}

describe("two vigil servers on one database", () => {
  it.live("one SQLite file: abort reaches the owner, a second turn is refused on either, never two turns", () =>
    Effect.gen(function*() {
      const workspace = makeWorkspace("vigil-two-", settings)
      const timings = yield* Effect.promise(() => scenario(workspace, () => ({}))).pipe(
        Effect.ensuring(Effect.sync(() => {
          killEverything()
          workspace.remove()
        }))
      )
      console.log(`two servers on one SQLite file: ${timings.join("; ")}`)
    }), 180_000)

  it.live.skipIf(pgSkipped)("one PostgreSQL database, two hosts: the same, with no pid to signal across", () =>
    Effect.scoped(Effect.gen(function*() {
      const url = yield* freshPgSchema
      const workspace = makeWorkspace("vigil-two-pg-", settings)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          killEverything()
          workspace.remove()
        })
      )
      const timings = yield* Effect.promise(() =>
        scenario(workspace, (index) => ({ VIGIL_DATABASE_URL: url, VIGIL_HOST_NAME: `host-${index}` }))
      )
      console.log(`two servers on one PostgreSQL database: ${timings.join("; ")}`)
    })), 180_000)
})
