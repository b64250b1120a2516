import { spawn } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect } from "../effect.js"
import type { Row } from "../Report.js"
import { median, row, show } from "../Report.js"

const runs = 5
const root = fileURLToPath(new URL("../..", import.meta.url))
/** The built CLI, as `pnpm vigil` and an installed package run it (`pnpm bench` builds first). */
const bin = join(root, "packages/server/dist/vigil.mjs")

interface Ran {
  readonly ms: number
  readonly code: number | null
  readonly stderr: string
}

/** Hermetic: no VIGIL_* variable of the shell that runs the benchmark reaches the CLI. */
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("VIGIL_")))

/** One process to its exit, timed from spawn (wall clock: what a user waits). */
const timed = (args: ReadonlyArray<string>, cwd: string) =>
  Effect.async<Ran>((resume) => {
    const started = performance.now()
    const child = spawn(process.execPath, args, { cwd, env, stdio: ["ignore", "ignore", "pipe"] })
    let stderr = ""
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("exit", (code) => resume(Effect.succeed({ ms: performance.now() - started, code, stderr })))
  })

/** `vigil serve` on a free port, timed from spawn to the first 200 of `/health`; then SIGTERM. */
const healthAfterStart = (dir: string) =>
  Effect.async<number, Error>((resume) => {
    const started = performance.now()
    const child = spawn(process.execPath, [bin, "serve", "--host", "127.0.0.1", "--port", "0", "--db", join(dir, "vigil.db")], {
      cwd: dir,
      env,
      stdio: ["ignore", "pipe", "ignore"]
    })
    let stdout = ""
    let done = false
    const finish = (result: Effect.Effect<number, Error>) => {
      if (done) return
      done = true
      child.kill("SIGTERM")
      resume(result)
    }
    const timer = setTimeout(() => finish(Effect.fail(new Error("/health did not answer within 60 s"))), 60_000)
    const poll = async (url: string) => {
      while (!done) {
        const status = await fetch(`${url}/health`).then((response) => response.status, () => 0)
        if (status === 200) {
          clearTimeout(timer)
          return finish(Effect.succeed(performance.now() - started))
        }
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    }
    child.stdout!.on("data", (chunk: Buffer) => {
      const before = stdout
      stdout += chunk.toString()
      const url = /vigil listening on (http:\/\/\S+)/.exec(stdout)?.[1]
      if (url !== undefined && /vigil listening on (http:\/\/\S+)/.exec(before) === null) void poll(url)
    })
    child.on("exit", (code) => {
      clearTimeout(timer)
      finish(Effect.fail(new Error(`vigil serve exited ${code} before /health answered`)))
    })
    return Effect.sync(() => finish(Effect.fail(new Error("interrupted"))))
  }).pipe(
    // Its exit, so the next run starts on a quiet machine.
    Effect.zipLeft(Effect.sleep("200 millis"))
  )

const repeat = <A, E>(times: number, effect: Effect.Effect<A, E>) =>
  Effect.forEach(Array.from({ length: times }, (_, i) => i), () => effect)

/**
 * Figure 10: the CLI's start-up as a user meets it, the built JS under plain `node` (it ran
 * through tsx, and a bad config took 9–13 s to be reported on a loaded machine). Each beside its
 * floor, `node -e 0` (node's own start on this machine at this load), median of five runs:
 * `vigil --help`, a bad config reported (`vigil serve` with `experimental.instance_lease: 1`: one
 * line, exit 1, before the database is opened), and `/health` answering after `vigil serve`.
 */
export const startupFigures = (dir: string) =>
  Effect.gen(function*() {
    const cwd = mkdtempSync(join(dir, "startup-"))
    writeFileSync(join(cwd, "bad.json"), JSON.stringify({ experimental: { instance_lease: 1 } }))
    const floor = median((yield* repeat(runs, timed(["-e", "0"], cwd))).map((run) => run.ms))
    const help = yield* repeat(runs, timed([bin, "--help"], cwd))
    const bad = yield* repeat(runs, timed([bin, "serve", "--port", "0", "--db", join(cwd, "never.db"), "--config", join(cwd, "bad.json")], cwd))
    if (help.some((run) => run.code !== 0)) return yield* Effect.dieMessage(`vigil --help failed: ${help[0]!.stderr}`)
    if (bad.some((run) => run.code === 0 || !run.stderr.includes("instance_lease"))) {
      return yield* Effect.dieMessage(`the bad config was not reported: exit ${bad[0]!.code}, ${bad[0]!.stderr}`)
    }
    const health: Array<number> = []
    for (let run = 0; run < runs; run++) health.push(yield* healthAfterStart(mkdtempSync(join(cwd, "serve-"))))
    const baseline = { value: floor, what: "node -e 0" }
    const figure = (name: string, values: ReadonlyArray<number>, limit: number): Row => {
      const value = median(values)
      return row({
        figure: 10,
        name,
        value,
        unit: "ms",
        floor: baseline,
        target: { kind: "max", limit },
        note: `${show(value - floor)} ms above the floor; runs ${values.map((v) => show(v)).join(", ")} ms`
      })
    }
    const rows: Array<Row> = [
      figure("vigil --help (built CLI under node)", help.map((run) => run.ms), 500),
      figure("a bad config reported (one line, exit 1)", bad.map((run) => run.ms), 1_000),
      figure("vigil serve: /health answering after start", health, 2_000)
    ]
    return rows
  })
