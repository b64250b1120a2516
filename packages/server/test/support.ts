import { HttpServer } from "@effect/platform"
import type { Settings as SettingsShape } from "@vigil/domain"
import { defaultSettings } from "@vigil/domain"
import { PartRepo, RepositoriesLive, SessionRepo } from "@vigil/store"
import { SqliteLive } from "@vigil/store/sqlite"
import type { Redacted } from "effect"
import { Context, Duration, Effect, Exit, Layer, Logger, LogLevel, Option, Scope } from "effect"
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll } from "vitest"
import { urlOf } from "../src/Announce.js"
import { ServerLive } from "../src/Server.js"

const here = dirname(fileURLToPath(import.meta.url))
export const repoRoot = resolve(here, "../../..")
/**
 * The built CLI, run with plain `node` as an installed package runs: the suite's global setup
 * (vitest.build.ts) built what was stale, so this is never an old build.
 */
export const binPath = join(repoRoot, "packages/server/dist/vigil.mjs")

/** A fresh temp folder; removed by `cleanup` (call it in afterAll/afterEach). */
export const tempDir = (dirs: Array<string>): string => {
  const dir = mkdtempSync(join(tmpdir(), "vigil-server-"))
  dirs.push(dir)
  return dir
}

export const removeDirs = (dirs: Array<string>) => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
}

/** Small graces so stops are quick; the scanning loops stay on their defaults. */
export const testSettings: SettingsShape = {
  ...defaultSettings,
  abortGrace: Duration.seconds(1),
  killGrace: Duration.millis(300)
}

export interface RunningServer {
  readonly url: string
  readonly db: string
  readonly port: number
  readonly close: () => Promise<void>
  /** The server's services, for a test that drives one directly (the event stream's publisher, say). */
  readonly context: Context.Context<Layer.Layer.Success<ReturnType<typeof ServerLive>>>
}

/** The real server layer, in-process, on a loopback port (the OS picks one by default), over a temp SQLite file. */
export const startServer = async (options: {
  readonly db: string
  readonly password?: Redacted.Redacted<string>
  /** 0 (the default): a port the OS picks; a restart passes the port it had. */
  readonly port?: number
  readonly allowedOrigins?: ReadonlyArray<string>
  /** `testSettings` by default. */
  readonly settings?: SettingsShape
}): Promise<RunningServer> => {
  const scope = Effect.runSync(Scope.make())
  const layer = ServerLive({
    port: options.port ?? 0,
    host: "127.0.0.1",
    db: options.db,
    settings: Effect.succeed(options.settings ?? testSettings),
    password: Option.fromNullable(options.password),
    allowedOrigins: options.allowedOrigins ?? [],
    announce: false
  }).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Error)))
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  const address = Context.get(context, HttpServer.HttpServer).address
  return {
    url: urlOf(address),
    db: options.db,
    port: address._tag === "TcpAddress" ? address.port : 0,
    context,
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** Reads the database the way the server writes it (through the store's repositories). */
export const withStore = <A, E>(
  db: string,
  effect: Effect.Effect<A, E, Layer.Layer.Success<typeof RepositoriesLive>>
): Promise<A> => Effect.runPromise(effect.pipe(Effect.provide(RepositoriesLive.pipe(Layer.provide(SqliteLive(db))))))

/** How many sessions and parts the database holds: a refused request must leave both as they were. */
export const rowCounts = (db: string) =>
  withStore(
    db,
    Effect.gen(function*() {
      const sessions = yield* (yield* SessionRepo).list({ limit: 100_000 })
      const parts = yield* Effect.forEach(sessions, (session) => Effect.flatMap(PartRepo, (repo) => repo.bySession(session.id)))
      return { sessions: sessions.length, parts: parts.flat().length }
    })
  )

export interface JsonResponse {
  readonly status: number
  readonly headers: Headers
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any
}

export const request = async (
  url: string,
  options: { readonly method?: string; readonly body?: unknown; readonly raw?: string; readonly headers?: Record<string, string> } = {}
): Promise<JsonResponse> => {
  const response = await fetch(url, {
    method: options.method ?? (options.body !== undefined || options.raw !== undefined ? "POST" : "GET"),
    headers: { "content-type": "application/json", ...options.headers },
    ...(options.raw !== undefined
      ? { body: options.raw }
      : options.body !== undefined
      ? { body: JSON.stringify(options.body) }
      : {})
  })
  const text = await response.text()
  let body: unknown = text
  try {
    body = text === "" ? null : JSON.parse(text)
  } catch {
    // not JSON: kept as text, and the test says so
  }
  return { status: response.status, headers: response.headers, body }
}

/** Polls until `check` returns a value (not undefined), or fails after `timeoutMs`. */
export const eventually = async <A>(check: () => Promise<A | undefined>, timeoutMs = 10_000, what = "condition"): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export interface SseMessage {
  readonly event: string
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly data: any
}

/** A live `/event` subscription: resolves once the server has subscribed it (`: connected`). */
export const openEvents = async (url: string, headers: Record<string, string> = {}) => {
  const controller = new AbortController()
  const response = await fetch(`${url}/event`, { headers, signal: controller.signal })
  const messages: Array<SseMessage> = []
  const comments: Array<string> = []
  let connected!: () => void
  const ready = new Promise<void>((resolve) => (connected = resolve))
  const pump = (async () => {
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader()
    let buffer = ""
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      buffer += value
      let end: number
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        if (block.startsWith(":")) {
          comments.push(block)
          if (block.startsWith(": connected")) connected()
          continue
        }
        const event = /^event: (.*)$/m.exec(block)?.[1] ?? "message"
        const data = /^data: (.*)$/m.exec(block)?.[1] ?? "null"
        messages.push({ event, data: JSON.parse(data) })
      }
    }
  })().catch(() => undefined)
  if (response.ok) await ready
  return {
    response,
    messages,
    comments,
    close: async () => {
      controller.abort()
      await pump
    }
  }
}

// --- real processes -------------------------------------------------------------------------

export interface Child {
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

const children = new Set<ChildProcess>()

export interface ChildOptions {
  /** The working directory: a test's temp folder, so no `vigil.json` or files of the repository are seen. */
  readonly cwd: string
  readonly env?: Record<string, string | undefined>
}

/** Runs `vigil …` (the built bin.js under plain node) as a real process. */
export const vigil = (args: ReadonlyArray<string>, options: ChildOptions): Child => {
  const env = options.env ?? {}
  // Hermetic: a VIGIL_* variable in the developer's shell (a password, a port) must not leak in.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("VIGIL_")))
  const childEnv: Record<string, string | undefined> = { ...inherited, ...env }
  for (const key of Object.keys(childEnv)) if (childEnv[key] === undefined) delete childEnv[key]
  const child = spawn(process.execPath, [binPath, ...args], {
    cwd: options.cwd,
    env: childEnv as NodeJS.ProcessEnv,
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.add(child)
  let out = ""
  let err = ""
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()))
  child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => {
      children.delete(child)
      resolve({ code, signal })
    })
  )
  return { child, stdout: () => out, stderr: () => err, exited }
}

/** Runs a command to its end. */
export const vigilRun = async (args: ReadonlyArray<string>, options: ChildOptions) => {
  const run = vigil(args, options)
  const { code } = await run.exited
  return { code, stdout: run.stdout(), stderr: run.stderr() }
}

/** `vigil serve` on a free port; resolves with its URL once it printed the listening line. */
export const serveProcess = async (args: ReadonlyArray<string>, options: ChildOptions) => {
  const run = vigil(["serve", "--port", "0", ...args], options)
  const url = await eventually(
    async () => {
      if (run.child.exitCode !== null) throw new Error(`vigil serve exited ${run.child.exitCode}:\n${run.stdout()}\n${run.stderr()}`)
      return /vigil listening on (http:\/\/\S+)/.exec(run.stdout())?.[1]
    },
    // A poll, so only a slow start waits this long: a loaded 2-core machine stretches one start a lot.
    60_000,
    "vigil serve to listen"
  )
  return { ...run, url }
}

/** Every child a test started, killed (a failing test must not leave a server running). */
export const killChildren = () => {
  for (const child of children) child.kill("SIGKILL")
  children.clear()
}

export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * One in-process server for a whole test file, on a fresh temp file: started before the file's
 * tests, closed (and its folder removed) after them. Read `url` and `server` inside tests only.
 */
export const serverPerFile = () => {
  const dirs: Array<string> = []
  let started: RunningServer | undefined
  beforeAll(async () => {
    started = await startServer({ db: join(tempDir(dirs), "vigil.db") })
  })
  afterAll(async () => {
    await started?.close()
    removeDirs(dirs)
  })
  const current = () => {
    if (started === undefined) throw new Error("the file's server is read before it started (outside a test?)")
    return started
  }
  return {
    get server() {
      return current()
    },
    get url() {
      return current().url
    }
  }
}

/** A new top-level session through the API (its 201 asserted). */
export const createSession = async (url: string, body: Record<string, unknown> = {}) => {
  const response = await request(`${url}/session`, { body })
  if (response.status !== 201) throw new Error(`POST /session answered ${response.status}: ${JSON.stringify(response.body)}`)
  return response.body as { id: string; status: string; title: string; parentId: string | null }
}
