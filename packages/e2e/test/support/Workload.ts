import { Agent } from "node:http"
import type { RawResponse } from "./Http.js"
import { ConnectionError, sendJson } from "./Http.js"
import { isLive, readStat } from "./Processes.js"
import { sleep } from "./ServerProcess.js"

/**
 * The load of the chaos test: workers that each open a session, start something real in it (a
 * shell command, a script with sub-agents and questions), then follow it to rest, answering some
 * questions, aborting some sessions, leaving others to the idle monitor. A worker that loses the
 * server waits for it to come back and goes on: a crashed server's sessions are recovered, not
 * retried.
 */

/** A small seeded generator (mulberry32): a run can be replayed with `VIGIL_CHAOS_SEED`. */
export const seededRandom = (seed: number) => {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    int: (min: number, max: number) => min + Math.floor(next() * (max - min + 1)),
    chance: (p: number) => next() < p,
    pick: <A>(items: ReadonlyArray<readonly [A, number]>): A => {
      const total = items.reduce((sum, [, weight]) => sum + weight, 0)
      let roll = next() * total
      for (const [item, weight] of items) {
        roll -= weight
        if (roll < 0) return item
      }
      return items[items.length - 1]![0]
    }
  }
}
export type Random = ReturnType<typeof seededRandom>

interface PartView {
  readonly id: string
  readonly tool: string
  readonly status: string
  readonly output: string | null
  readonly childSessionId: string | null
  readonly pid?: number | null
  readonly procStart?: string | null
  readonly error?: { readonly _tag: string } | null
}

type Step = Record<string, unknown>

/** The items of a page (`{items, next}`, the lists' shape); undefined when the answer is not one. */
const itemsOf = <A>(response: RawResponse): ReadonlyArray<A> | undefined =>
  (response.json as { items?: ReadonlyArray<A> } | undefined)?.items

const atRest = (status: string) => status === "idle" || status === "cancelled" || status === "error"

export interface WorkloadOptions {
  readonly url: () => string
  readonly random: Random
  readonly concurrency: number
  /**
   * A model of a provider that answers at once (`instant/<name>`, see InstantProvider): some
   * sessions then run a turn of real model steps instead of a script.
   */
  readonly instantModel?: string
  /** How many scenarios abort their session on the way (0.15 unless told). */
  readonly abortChance?: number
}

export class Workload {
  /** Every root session the workers created. */
  readonly sessions = new Set<string>()
  /** Each shell command started, with the output it must have if it completes (`null`: it never may). */
  readonly commands = new Map<string, string | null>()
  /** Each flood started (a command printing megabytes), with the last line its stored output must keep. */
  readonly floods = new Map<string, string>()
  /** Answers the server must never give (5xx), and anything else the workers could not explain. */
  readonly problems: Array<string> = []
  readonly stats = { scenarios: 0, requests: 0, lostRequests: 0, replies: 0, aborts: 0, shellsAborted: 0, statuses: new Map<number, number>() }
  /**
   * Idle sockets are dropped after 2 s, well before the server's keep-alive timeout (5 s): a
   * request must never go out on a socket the server is closing at that very moment.
   */
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64, timeout: 2_000 })
  private readonly rested: Array<string> = []
  private stopping = false
  private workers: Array<Promise<void>> = []
  private counter = 0
  private up: { promise: Promise<void>; resolve: () => void } = Workload.gate()

  constructor(private readonly options: WorkloadOptions) {
    this.up.resolve()
  }

  private static gate() {
    let resolve!: () => void
    const promise = new Promise<void>((r) => (resolve = r))
    return { promise, resolve }
  }

  /** The server is about to die: workers that lose it wait until `serverUp`. */
  serverDown() {
    this.up = Workload.gate()
  }

  serverUp() {
    this.up.resolve()
  }

  start() {
    for (let i = 0; i < this.options.concurrency; i++) this.workers.push(this.worker(i))
  }

  /** Stops starting and following work (what runs on the server goes on) and waits for the workers. */
  async stop() {
    this.stopping = true
    this.up.resolve()
    await Promise.all(this.workers)
    this.agent.destroy()
  }

  /** A server starting or stopping answers 503 `Unavailable` (server's Server.ts): as good as refused. */
  private async sendOnce(method: string, path: string, body?: unknown): Promise<RawResponse> {
    const response = await sendJson(this.options.url(), method, path, body, this.agent)
    if (response.status === 503 && (response.json as { _tag?: unknown } | undefined)?._tag === "Unavailable") {
      throw new ConnectionError(`${method} ${path}`, "UNAVAILABLE", "the server is starting or stopping")
    }
    return response
  }

  private async call(method: string, path: string, body?: unknown): Promise<RawResponse> {
    this.stats.requests++
    let response: RawResponse
    try {
      response = await this.sendOnce(method, path, body)
    } catch (error) {
      if (!(error instanceof ConnectionError)) throw error
      this.stats.lostRequests++
      // A read may go again: its first try can have met a kept-alive socket that was just closed.
      if (method !== "GET") throw error
      await sleep(100)
      response = await this.sendOnce(method, path, body)
    }
    this.stats.statuses.set(response.status, (this.stats.statuses.get(response.status) ?? 0) + 1)
    if (response.status >= 500) this.problems.push(`${method} ${path} answered ${response.status}: ${response.text.slice(0, 300)}`)
    return response
  }

  private async worker(index: number) {
    while (!this.stopping) {
      try {
        await this.scenario()
      } catch (error) {
        if (!(error instanceof ConnectionError)) {
          this.problems.push(`worker ${index}: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
          await sleep(500)
        }
        // The server is down (killed on purpose): wait for the restart, then start over.
        await this.up.promise
      }
    }
  }

  /** A shell command, with the output it must end with if it completes. */
  private command(): { readonly step: Step; readonly command: string } {
    const { random } = this.options
    const n = this.counter++
    const [command, output] = random.pick<readonly [string, string | null]>([
      [[`echo chaos-${n}`, `chaos-${n}\n`], 4],
      [[`sleep 0.2; echo short-${n}`, `short-${n}\n`], 4],
      // Cut by tool_timeout (3 s): ToolTimeout, the process group hard-stopped.
      [[`sleep 30; echo never-${n}`, null], 2],
      // Ignores SIGTERM (and so does its sleep: an ignored signal stays ignored across exec): SIGKILL.
      [[`trap '' TERM; sleep 30; echo never-${n}`, null], 1],
      // Finishes at once, but leaves a background job holding stdout: drained, then hard-stopped.
      [[`sleep 30 & echo started-${n}`, `started-${n}\n`], 2]
    ])
    this.commands.set(command, output)
    return { step: { tool: "bash", input: { command } }, command }
  }

  /**
   * A flood: megabytes of output, then one line that must survive the cut (the tail is kept), in
   * a server whose memory must stay bounded while it runs.
   */
  private flood(): Step {
    const n = this.counter++
    const end = `flood-end-${n}`
    const command = `yes | head -c ${this.options.random.int(2, 12) * 1_000_000}; echo ${end}`
    this.floods.set(command, `${end}\n`)
    return { tool: "bash", input: { command } }
  }

  /** A turn of the instant provider: a model step, the `bash` call it asks for, a second step. */
  private instant(): Step {
    const echo = `instant-${this.counter++}`
    this.commands.set(`echo ${echo}`, `${echo}\n`)
    return { text: echo, model: this.options.instantModel }
  }

  /** A chain of sub-agents `depth` deep, past the nesting bound: the deepest `task` is refused, nothing hangs. */
  private chain(depth: number): Array<Step> {
    let script: Array<Step> = [this.command().step, { text: "bottom" }]
    for (let level = 0; level < depth; level++) {
      script = [{ tool: "task", input: { prompt: JSON.stringify(script), description: `chain level ${depth - level}` } }, { text: "up" }]
    }
    return script
  }

  /** A script for the `script` model; `task` steps nest scripts (as a string, as the README's "Models" says). */
  private script(depth: number): Array<Step> {
    const { random } = this.options
    const steps: Array<Step> = []
    const count = random.int(1, 4)
    for (let i = 0; i < count; i++) {
      const kind = random.pick<string>([["bash", 5], ["text", 2], ["sleep", 2], ["task", depth < 2 ? 3 : 0], ["ask", 2]])
      if (kind === "bash") steps.push(this.command().step)
      else if (kind === "text") steps.push({ text: `step ${this.counter++}` })
      else if (kind === "sleep") steps.push({ sleep: random.int(50, 400) })
      else if (kind === "ask") steps.push({ tool: "ask", input: { question: `go on ${this.counter++}?` } })
      else steps.push({ tool: "task", input: { prompt: JSON.stringify(this.script(depth + 1)), description: `sub-agent at depth ${depth + 1}` } })
    }
    if (random.chance(0.5)) steps.push({ text: "done" })
    return steps
  }

  private async scenario() {
    const { random } = this.options
    this.stats.scenarios++
    const kind = random.pick<string>([
      ["tool", 7],
      ["script", 9],
      ["ask", 2],
      ["hang", 1],
      ["again", 1],
      ["flood", 1],
      ["deep", 1],
      ["instant", this.options.instantModel === undefined ? 0 : 3]
    ])
    let id: string
    if (kind === "again" && this.rested.length > 0) {
      // A session at rest takes a new prompt, whatever ended its last turn (a crash included).
      id = this.rested[random.int(0, this.rested.length - 1)]!
      const again = await this.call("POST", `/session/${id}/prompt`, { text: JSON.stringify([this.command().step, { text: "again" }]) })
      if (again.status !== 202) return
    } else {
      const created = await this.call("POST", "/session", { title: `chaos ${kind}` })
      if (created.status !== 201) return
      id = (created.json as { id: string }).id
      this.sessions.add(id)
      const started = kind === "tool"
        ? await this.call("POST", `/session/${id}/tool`, this.command().step)
        : kind === "flood"
        ? await this.call("POST", `/session/${id}/tool`, this.flood())
        : kind === "instant"
        ? await this.call("POST", `/session/${id}/prompt`, this.instant())
        : kind === "deep"
        ? await this.call("POST", `/session/${id}/prompt`, { text: JSON.stringify(this.chain(12)) })
        : await this.call("POST", `/session/${id}/prompt`, {
          text: JSON.stringify(
            kind === "ask"
              ? [{ tool: "ask", input: { question: "may I?" } }, { text: "asked" }]
              : kind === "hang"
              ? [{ text: "thinking" }, { hang: true }]
              : this.script(0)
          )
        })
      if (started.status !== 202) {
        this.problems.push(`starting ${kind} in ${id} answered ${started.status}: ${started.text.slice(0, 300)}`)
        return
      }
    }
    await this.follow(id, {
      answerAfter: random.chance(0.6) ? random.int(300, 1_500) : undefined,
      abortAfter: random.chance(this.options.abortChance ?? 0.15) ? random.int(100, 2_500) : undefined
    })
  }

  /** Polls a session until it is at rest, answering its (and its sub-agents') questions and aborting it when told. */
  private async follow(id: string, plan: { readonly answerAfter: number | undefined; readonly abortAfter: number | undefined }) {
    const started = Date.now()
    let aborted = false
    while (!this.stopping && Date.now() - started < 30_000) {
      await sleep(this.options.random.int(250, 400))
      const session = await this.call("GET", `/session/${id}`)
      const status = (session.json as { status?: string } | undefined)?.status
      if (status !== undefined && atRest(status)) {
        this.rested.push(id)
        return
      }
      const elapsed = Date.now() - started
      if (plan.answerAfter !== undefined && elapsed >= plan.answerAfter) await this.answerQuestions(id)
      if (plan.abortAfter !== undefined && elapsed >= plan.abortAfter && !aborted) {
        aborted = true
        this.stats.aborts++
        const answer = await this.call("POST", `/session/${id}/abort`)
        if (answer.status === 200) await this.abortEnded(id)
      }
    }
  }

  /**
   * An abort answers once the turn is over wherever it ran: a shell it cancelled is gone (or going:
   * within the kill grace and a margin). A shell still running then is a turn the abort never reached.
   */
  private async abortEnded(root: string) {
    const cancelled: Array<PartView> = []
    const queue = [root]
    for (let visited = 0; queue.length > 0 && visited < 20; visited++) {
      const parts = itemsOf<PartView>(await this.call("GET", `/session/${queue.shift()!}/part?limit=1000`))
      for (const part of parts ?? []) {
        if (part.tool === "bash" && part.error?._tag === "SessionCancelled" && typeof part.pid === "number") cancelled.push(part)
        if (part.tool === "task" && part.childSessionId !== null) queue.push(part.childSessionId)
      }
    }
    const running = (part: PartView) => {
      const stat = readStat(part.pid!)
      return isLive(stat) && (part.procStart === null || part.procStart === undefined || stat.startTime === part.procStart)
    }
    this.stats.shellsAborted += cancelled.length
    const deadline = Date.now() + 1_500
    while (cancelled.some(running) && Date.now() < deadline) await sleep(100)
    for (const part of cancelled.filter(running)) {
      this.problems.push(`the abort of ${root} answered, but the shell ${part.pid} of its cancelled part ${part.id} still runs 1.5 s later`)
    }
  }

  /** Replies to every `ask` running in the session or any of its sub-agents (the request id is the part id). */
  private async answerQuestions(root: string) {
    const queue = [root]
    for (let visited = 0; queue.length > 0 && visited < 20; visited++) {
      const id = queue.shift()!
      const parts = itemsOf<PartView>(await this.call("GET", `/session/${id}/part?limit=1000`))
      for (const part of parts ?? []) {
        if (part.status !== "running") continue
        if (part.tool === "ask") {
          const reply = await this.call("POST", `/session/${id}/reply`, { requestId: part.id, answer: "yes" })
          if (reply.status === 200) this.stats.replies++
        } else if (part.tool === "task" && part.childSessionId !== null) {
          queue.push(part.childSessionId)
        }
      }
    }
  }

  /**
   * Every completed part the API shows now, for each session it lists and each root created (a
   * child of a child is listed by `GET /session` too). Read before a kill: these must survive it.
   */
  async completedParts(): Promise<Map<string, { readonly output: string; readonly sessionId: string }>> {
    const found = new Map<string, { output: string; sessionId: string }>()
    const listed = itemsOf<{ id: string }>(await this.call("GET", "/session?limit=1000"))
    const ids = [...new Set([...(listed ?? []).map((session) => session.id), ...this.sessions])]
    let next = 0
    const reader = async () => {
      while (next < ids.length) {
        const id = ids[next++]!
        const parts = itemsOf<PartView>(await this.call("GET", `/session/${id}/part?limit=1000`))
        for (const part of parts ?? []) {
          if (part.status === "completed") found.set(part.id, { output: part.output ?? "", sessionId: id })
        }
      }
    }
    await Promise.all(Array.from({ length: 8 }, reader))
    return found
  }

  /** Prompts a session at rest and follows it to rest; resolves with its status and parts. */
  async goOn(id: string, echo: string): Promise<{ readonly status: string; readonly parts: ReadonlyArray<PartView> }> {
    const command = `echo ${echo}`
    this.commands.set(command, `${echo}\n`)
    const accepted = await this.call("POST", `/session/${id}/prompt`, { text: JSON.stringify([{ tool: "bash", input: { command } }, { text: "went on" }]) })
    if (accepted.status !== 202) return { status: `prompt answered ${accepted.status}: ${accepted.text.slice(0, 200)}`, parts: [] }
    const deadline = Date.now() + 20_000
    for (;;) {
      await sleep(200)
      const status = ((await this.call("GET", `/session/${id}`)).json as { status: string }).status
      if (atRest(status) || Date.now() > deadline) {
        return { status, parts: itemsOf<PartView>(await this.call("GET", `/session/${id}/part?limit=1000`)) ?? [] }
      }
    }
  }
}
