import { ProcessTable } from "@vigil/tools"
import { Effect } from "effect"
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach } from "vitest"

const here = dirname(fileURLToPath(import.meta.url))
const repoRoot = resolve(here, "../../..")
const children = new Set<ChildProcess>()

/** Inherited by every process a test instance starts, so none outlives the test file, pass or fail. */
const runMarker = { name: "VIGIL_TEST_RUN", value: randomUUID() }

afterEach(() => {
  for (const child of children) child.kill("SIGKILL")
  children.clear()
  for (const pid of Effect.runSync(ProcessTable.withEnvMarker(runMarker.name, runMarker.value))) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // already gone
    }
  }
})

export interface Started<T> {
  readonly child: ChildProcess
  readonly ready: T
  readonly output: () => string
}

/** Starts `test/fixtures/instance.ts` as a real process and waits for its JSON ready line. */
export const startInstance = <T = Record<string, unknown>>(
  file: string,
  mode: "tool" | "idle",
  env: Record<string, string> = {}
): Promise<Started<T>> =>
  new Promise((resolvePromise, reject) => {
    // A fixture is a test file, run from source under tsx: `@vigil/source` resolves the packages to
    // their sources too, as in the tests themselves (no build needed).
    const child = spawn(process.execPath, ["--conditions=@vigil/source", "--import", "tsx", join(here, "fixtures/instance.ts"), file, mode], {
      cwd: repoRoot,
      env: { ...process.env, ...env, [runMarker.name]: runMarker.value },
      stdio: ["ignore", "pipe", "pipe"]
    })
    children.add(child)
    let out = ""
    let err = ""
    const timer = setTimeout(() => reject(new Error(`instance did not get ready:\n${out}\n${err}`)), 20_000)
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const line = out.split("\n").find((candidate) => candidate.startsWith("{"))
      if (line !== undefined) {
        clearTimeout(timer)
        resolvePromise({ child, ready: JSON.parse(line) as T, output: () => out + err })
      }
    })
    child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()))
    child.on("exit", (code) => {
      clearTimeout(timer)
      reject(new Error(`instance exited with ${code}:\n${out}\n${err}`))
    })
  })

export const killHard = (child: ChildProcess): Promise<void> =>
  new Promise((resolvePromise) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolvePromise()
    child.once("exit", () => resolvePromise())
    child.kill("SIGKILL")
  })

/** Alive and not a zombie (a killed orphan is a zombie until init reaps it). */
export const isAlive = (pid: number): boolean => Effect.runSync(ProcessTable.isAlive(pid))

export const waitUntil = async (condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string) => {
  const started = Date.now()
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
  return Date.now() - started
}
