import { execFile, spawn } from "node:child_process"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { promisify } from "node:util"
import { afterAll, assert, describe, it } from "vitest"
import { repoRoot, stageExample } from "./support/Embed.js"
import { isLive, readStat } from "./support/Processes.js"

/**
 * examples/embed, run as its own process on its own database: the self-check, and a SIGKILL
 * mid-tool whose part is `OrphanedByCrash` after a restart. Run from a copy outside the workspace
 * with tsx (scripts/pack-check.sh builds it with plain tsc and runs it with node on the packed
 * packages).
 */
const tsxLoader = pathToFileURL(join(repoRoot, "node_modules/tsx/dist/loader.mjs")).href
const example = stageExample()
afterAll(() => example.dispose())

const env = async (): Promise<NodeJS.ProcessEnv> => process.env

/** The last JSON line a run printed (Effect's logs share stdout). */
const lastJson = (stdout: string): Record<string, unknown> => {
  const line = stdout.split("\n").filter((l) => l.startsWith("{\"")).at(-1)
  if (line === undefined) throw new Error(`no JSON line in:\n${stdout}`)
  return JSON.parse(line) as Record<string, unknown>
}

const run = async (args: ReadonlyArray<string>) => {
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", tsxLoader, example.main, ...args], {
    cwd: example.dir,
    env: await env(),
    timeout: 90_000
  })
  return lastJson(stdout)
}

const waitUntil = async (check: () => boolean, timeoutMs: number, what: string) => {
  const until = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((done) => setTimeout(done, 50))
  }
}

describe("examples/embed", () => {
  it("type-checks against the packages with its own tsconfig", async () => {
    await promisify(execFile)(join(repoRoot, "node_modules/.bin/tsc"), ["-p", join(example.dir, "tsconfig.json"), "--noEmit"], {
      timeout: 120_000
    })
  }, 150_000)

  it("check: a tool past its deadline ends ToolTimeout; its model, its HttpClient tool and its own table work", async () => {
    const result = await run(["check", join(example.dir, ".data/check.db")])
    assert.deepStrictEqual(result["failures"], [])
    assert.strictEqual(result["deadline"], "ToolTimeout")
    assert.strictEqual(result["ok"], true)
  }, 120_000)

  it("a SIGKILL mid-tool: after a restart the part is OrphanedByCrash and its shell is gone", async () => {
    const db = join(example.dir, ".data/crash.db")
    const child = spawn(process.execPath, ["--import", tsxLoader, example.main, "run-tool", db], {
      cwd: example.dir,
      env: await env(),
      stdio: ["ignore", "pipe", "inherit"]
    })
    let stdout = ""
    let shellPid: number | undefined
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    try {
      await waitUntil(() => stdout.includes("\"shellPid\""), 60_000, "the tool to start")
      const ready = lastJson(stdout) as { readonly sessionId: string; readonly partId: string; readonly shellPid: number }
      shellPid = ready.shellPid
      const exited = new Promise((done) => child.once("exit", done))
      child.kill("SIGKILL")
      await exited
      assert.isTrue(isLive(readStat(ready.shellPid)), "the shell outlived its server (what recovery must end)")

      const after = await run(["parts", db, ready.sessionId]) as {
        readonly orphanedParts: number
        readonly parts: ReadonlyArray<{ readonly id: string; readonly tool: string; readonly status: string; readonly error: string | null }>
      }
      assert.strictEqual(after.orphanedParts, 1)
      assert.deepInclude(after.parts, { id: ready.partId, tool: "bash", status: "error", error: "OrphanedByCrash" })
      await waitUntil(() => !isLive(readStat(ready.shellPid)), 10_000, "the orphaned shell to be ended")
    } finally {
      child.kill("SIGKILL")
      // A failed run must not leave its `sleep 300` behind.
      if (shellPid !== undefined && isLive(readStat(shellPid))) process.kill(shellPid, "SIGKILL")
    }
  }, 150_000)
})
