import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { send } from "./Http.js"
import { killQuietly, partMarker, processesWithEnv } from "./Processes.js"

const here = dirname(fileURLToPath(import.meta.url))
export const repoRoot = resolve(here, "../../../..")
/** The built CLI under plain `node`; the suite's global setup (vitest.build.ts) built what was stale. */
const binPath = join(repoRoot, "packages/server/dist/vigil.mjs")

/**
 * Every process a test file starts inherits this (`VIGIL_E2E_RUN=<uuid>`), the servers and, through
 * them, every tool process: cleanup finds them all, pass or fail, and touches nothing else.
 */
export const runMarker = { name: "VIGIL_E2E_RUN", value: randomUUID() }

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls until `check` gives a value, or throws after `timeoutMs` naming `what`. */
export const eventually = async <A>(what: string, timeoutMs: number, check: () => Promise<A | undefined>): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check().catch(() => undefined)
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(100)
  }
}

export interface Health {
  readonly status: string
  readonly instance: { readonly id: string; readonly pid: number }
  readonly recovery: {
    readonly orphanedParts: number
    readonly sessionsFreed: number
    readonly processesKilled: number
    readonly deadOwners: ReadonlyArray<{ readonly id: string; readonly cause: string }>
    readonly partIds: ReadonlyArray<string>
  }
  readonly leakedFibers: number
}

export interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface Workspace {
  readonly dir: string
  readonly db: string
  readonly config: string
  readonly log: string
  readonly remove: () => void
}

/** A temp folder with the SQLite file, the config file and the servers' log. */
/** A temp folder with a config of these `experimental` settings and any other top-level keys (`provider`). */
export const makeWorkspace = (prefix: string, experimental: Record<string, unknown>, rest: Record<string, unknown> = {}): Workspace => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  const config = join(dir, "vigil.json")
  writeFileSync(config, JSON.stringify({ ...rest, experimental }, null, 2))
  return {
    dir,
    db: join(dir, "vigil.db"),
    config,
    log: join(dir, "server.log"),
    remove: () => rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * `vigil serve` as a real child process on one SQLite file. The first start takes a free port
 * (`--port 0`); every restart reuses it, as an operator restarting a crashed server would.
 * The process is node itself running the built CLI (no wrapper that would put a second process
 * between the signal and the server).
 */
export class ServerProcess {
  private child: ChildProcess | undefined
  private exitedPromise: Promise<Exited> | undefined
  private stdout = ""
  port = 0
  starts = 0
  private retired = false

  /**
   * `env` is added to the server's environment (the test's own `VIGIL_*` variables never reach
   * it): `VIGIL_DATABASE_URL` for a shared PostgreSQL store, `VIGIL_HOST_NAME` to play a host.
   */
  constructor(private readonly workspace: Workspace, private readonly env: Record<string, string> = {}) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  get pid(): number | undefined {
    return this.child?.pid
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  /** Starts the server and resolves with its `/health` once it answers as this very process. */
  async start(timeoutMs = 90_000): Promise<Health> {
    if (this.retired) throw new Error("the server was retired: its test is over")
    if (this.running) throw new Error("the server is already running")
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("VIGIL_")))
    const log = openSync(this.workspace.log, "a")
    const child = spawn(
      process.execPath,
      [binPath, "serve", "--host", "127.0.0.1", "--port", String(this.port), "--db", this.workspace.db, "--config", this.workspace.config],
      {
        cwd: this.workspace.dir,
        env: { ...inherited, ...this.env, [runMarker.name]: runMarker.value },
        stdio: ["ignore", "pipe", log]
      }
    )
    closeSync(log)
    this.child = child
    this.starts++
    this.stdout = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      if (this.stdout.length < 100_000) this.stdout += chunk.toString()
    })
    this.exitedPromise = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })))
    const deadline = Date.now() + timeoutMs
    if (this.port === 0) {
      // Not `eventually`, which swallows a failed check: a server that exits or never listens
      // fails at once with what it printed and logged, so a hang in startup is diagnosed from this
      // message alone.
      for (;;) {
        const port = /vigil listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(this.stdout)?.[1]
        if (port !== undefined) {
          this.port = Number(port)
          break
        }
        if (!this.running) throw new Error(this.failure("exited before listening"))
        if (Date.now() > deadline) throw new Error(this.failure(`did not print its URL within ${timeoutMs} ms`))
        await sleep(100)
      }
    }
    for (;;) {
      if (!this.running) throw new Error(this.failure("exited before answering /health"))
      const health = await send(this.url, { method: "GET", path: "/health", timeoutMs: 5_000 }).catch(() => undefined)
      const body = health?.json as Health | undefined
      if (health?.status === 200 && body !== undefined && body.instance.pid === child.pid) return body
      if (Date.now() > deadline) throw new Error(this.failure(`did not answer /health within ${timeoutMs} ms`))
      await sleep(100)
    }
  }

  /**
   * Kills it if it runs and refuses any later start: a test that timed out may still be running
   * its body after the cleanup, and must not start a server nobody will stop.
   */
  async retire(): Promise<void> {
    this.retired = true
    if (this.running) await this.kill()
  }

  /** SIGKILL: a crash. Resolves once the process is gone. */
  async kill(): Promise<Exited> {
    const child = this.child
    if (child === undefined || this.exitedPromise === undefined) throw new Error("no server to kill")
    child.kill("SIGKILL")
    return this.exitedPromise
  }

  /** SIGTERM: a clean stop. Resolves with how it exited and how long it took (SIGKILL past `timeoutMs`). */
  async stop(timeoutMs = 20_000): Promise<Exited & { readonly tookMs: number; readonly forced: boolean }> {
    const child = this.child
    if (child === undefined || this.exitedPromise === undefined) throw new Error("no server to stop")
    const started = Date.now()
    child.kill("SIGTERM")
    const timer = sleep(timeoutMs).then(() => "timeout" as const)
    const outcome = await Promise.race([this.exitedPromise, timer])
    if (outcome === "timeout") {
      child.kill("SIGKILL")
      return { ...(await this.exitedPromise), tookMs: Date.now() - started, forced: true }
    }
    return { ...outcome, tookMs: Date.now() - started, forced: false }
  }

  /** The end of the servers' log, for a failure message. */
  logTail(lines = 60): string {
    try {
      return readFileSync(this.workspace.log, "utf8").split("\n").slice(-lines).join("\n")
    } catch {
      return "(no log)"
    }
  }

  private failure(what: string): string {
    return `vigil serve ${what} (exit ${this.child?.exitCode ?? this.child?.signalCode}):\n${this.stdout}\n${this.logTail()}`
  }
}

/**
 * The last line of cleanup, pass or fail: every process of this test file's run (servers and the
 * tools they started, found by the run marker) and every holder of a part marker `isOurPart`
 * accepts is SIGKILLed. Returns how many were found.
 */
export const killEverything = (isOurPart: (partId: string) => boolean = () => false): number => {
  const found = new Map<number, string>()
  for (const proc of processesWithEnv(runMarker.name, (value) => value === runMarker.value)) found.set(proc.pid, proc.command)
  for (const proc of processesWithEnv(partMarker, isOurPart)) found.set(proc.pid, proc.command)
  for (const pid of found.keys()) killQuietly(pid)
  return found.size
}
