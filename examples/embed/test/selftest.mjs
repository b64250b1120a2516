// `npm test` of the example, with plain node on the built `dist/main.js` (what CI's pack-check
// runs outside the workspace, on the packed packages): a tool past its deadline ends
// `ToolTimeout`; a SIGKILL mid-tool leaves a `running` part and a live shell, and the next start's
// recovery ends the part `OrphanedByCrash` and the shell with it.
import { execFile, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import console from "node:console"
import process from "node:process"
import { setTimeout } from "node:timers"
import { URL } from "node:url"
import { promisify } from "node:util"

const main = new URL("../dist/main.js", import.meta.url).pathname
const data = mkdtempSync(join(tmpdir(), "vigil-embed-selftest-"))
const say = (line) => console.log(`embed selftest: ${line}`)
const fail = (line) => {
  console.error(`embed selftest: FAILED: ${line}`)
  process.exit(1)
}
/** The last JSON line a run printed (Effect's logs share stdout). */
const lastJson = (stdout) => {
  const line = stdout.split("\n").filter((l) => l.startsWith("{\"")).at(-1)
  if (line === undefined) fail(`no JSON line in:\n${stdout}`)
  return JSON.parse(line)
}
const run = async (...args) => lastJson((await promisify(execFile)(process.execPath, [main, ...args], { timeout: 120_000 })).stdout)
const alive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
// Generous bounds: CI is a loaded 2-core machine, and a start loads the whole module graph.
const waitUntil = async (check, ms, what) => {
  for (const until = Date.now() + ms; !check();) {
    if (Date.now() > until) fail(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((done) => setTimeout(done, 50))
  }
}

let shellPid
try {
  say("check (deadline, the app's tool, model and table)")
  const checked = await run("check", join(data, "check.db"))
  if (!checked.ok || checked.deadline !== "ToolTimeout") fail(`check: ${JSON.stringify(checked)}`)
  say(`check ok: a tool past its deadline ended ${checked.deadline}`)

  say("run-tool, then SIGKILL mid-tool")
  const db = join(data, "crash.db")
  const child = spawn(process.execPath, [main, "run-tool", db], { stdio: ["ignore", "pipe", "inherit"] })
  let stdout = ""
  child.stdout.on("data", (chunk) => (stdout += chunk.toString()))
  await waitUntil(() => stdout.includes("\"shellPid\""), 90_000, "the tool to start")
  const ready = lastJson(stdout)
  shellPid = ready.shellPid
  const exited = new Promise((done) => child.once("exit", done))
  child.kill("SIGKILL")
  await exited
  if (!alive(shellPid)) fail("the shell died with its server: nothing left for recovery to prove")

  say("restart: startup recovery")
  const after = await run("parts", db, ready.sessionId)
  const part = after.parts.find((p) => p.id === ready.partId)
  if (after.orphanedParts !== 1 || part?.status !== "error" || part?.error !== "OrphanedByCrash") {
    fail(`after the restart: ${JSON.stringify(after)}`)
  }
  await waitUntil(() => !alive(shellPid), 15_000, "the orphaned shell to be ended")
  say(`ok: the part is ${part.error} and its shell ${shellPid} is gone`)
} finally {
  if (shellPid !== undefined && alive(shellPid)) process.kill(shellPid, "SIGKILL")
  rmSync(data, { recursive: true, force: true })
}
