import { spawn } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect } from "../effect.js"
import type { Row } from "../Report.js"
import { row, show } from "../Report.js"

/** The long form: at least 50 SIGKILLs, as the reliability issue asks of `pnpm bench`. */
const rounds = Math.max(50, Number(process.env["VIGIL_CHAOS_ROUNDS"] ?? 50))

interface Summary {
  readonly seed: number
  readonly kills: number
  readonly seconds: number
  readonly parts: number
  readonly completed: number
  readonly recovered: number
  readonly floods: number
  readonly stalledClients: number
  readonly instantRequests: number
  readonly peakRssBytes: number
  readonly leaked: number
  readonly violations: ReadonlyArray<string>
}

/**
 * The crash-loop chaos test (packages/e2e/test/Chaos.test.ts) in its long form: the real server
 * under a workload with floods, a stalled `/event` client each start, a 12-deep sub-agent chain
 * and a provider that answers at once, SIGKILLed `rounds` times, then stopped cleanly. The test
 * itself checks every guarantee in the file and /proc; this reads its summary. A figure of what
 * was lost, stuck and leaked: each must be 0.
 */
export const crashLoopFigures = (dir: string) =>
  Effect.gen(function*() {
    const summaryFile = join(dir, "chaos-summary.json")
    const root = fileURLToPath(new URL("../..", import.meta.url))
    const exitCode = yield* Effect.async<number>((resume) => {
      const child = spawn(
        join(root, "node_modules/.bin/vitest"),
        ["run", "packages/e2e/test/Chaos.test.ts", "-t", "keeps every guarantee"],
        {
          cwd: root,
          env: { ...process.env, VIGIL_CHAOS_ROUNDS: String(rounds), VIGIL_CHAOS_SUMMARY: summaryFile },
          stdio: ["ignore", "ignore", "inherit"]
        }
      )
      child.on("exit", (code) => resume(Effect.succeed(code ?? 1)))
    })
    if (!existsSync(summaryFile)) return yield* Effect.dieMessage(`the chaos test wrote no summary (exit ${exitCode})`)
    const summary = JSON.parse(readFileSync(summaryFile, "utf8")) as Summary
    const note = `seed ${summary.seed}; ${show(summary.seconds)} s; ${summary.parts} parts (${summary.completed} completed, ${summary.recovered} recovered); ` +
      `${summary.floods} floods, ${summary.stalledClients} stalled /event clients, ${summary.instantRequests} instant-provider requests; ` +
      `peak RSS ${show(summary.peakRssBytes / 2 ** 20)} MB; test exit ${exitCode}` +
      (summary.violations.length > 0 ? `; first: ${summary.violations[0]}` : "")
    // Counts of broken guarantees: their floor is 0, not a bare way of doing the same work.
    const none = { none: "a count of what went wrong: 0 is the target itself" }
    const rows: Array<Row> = [
      row({
        figure: 20,
        name: "crash loop: SIGKILLs survived",
        value: summary.kills,
        unit: "kills",
        floor: { none: "the number of kills is set by the run" },
        target: { kind: "min", limit: 50 },
        note
      }),
      row({
        figure: 20,
        name: "crash loop: violations (lost, stuck, rewritten, wrong output)",
        value: summary.violations.length,
        unit: "",
        floor: none,
        target: { kind: "max", limit: 0 }
      }),
      row({ figure: 20, name: "crash loop: processes leaked", value: summary.leaked, unit: "", floor: none, target: { kind: "max", limit: 0 } })
    ]
    return rows
  })
