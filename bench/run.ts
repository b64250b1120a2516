import { writeFileSync } from "node:fs"
import { cpus, totalmem } from "node:os"
import { fileURLToPath } from "node:url"
import { fairScheduler } from "../packages/runtime/src/index.js"
import { Cause, Effect, Logger, LogLevel } from "./effect.js"
import { crashLoopFigures } from "./figures/CrashLoop.js"
import { deadlineFigures } from "./figures/Deadlines.js"
import { hardStopFigures } from "./figures/HardStop.js"
import { historyFigures } from "./figures/History.js"
import { modelStepFigures } from "./figures/ModelSteps.js"
import { recoveryFigures } from "./figures/Recovery.js"
import { sleeperFigures } from "./figures/Sleepers.js"
import { startupFigures } from "./figures/Startup.js"
import { throughputFigures } from "./figures/Throughput.js"
import { treeFigures } from "./figures/Trees.js"
import type { Row } from "./Report.js"
import { show, table } from "./Report.js"
import { collectGarbage, tempFolder } from "./Support.js"

/**
 * `pnpm bench`: the performance figures of docs/design.md#performance-targets, each measured once
 * in this run with its bare-SQLite floor beside it where there is one. Prints a table and writes
 * bench/results.json. Not a test: a missed target is reported (with by how much), not failed.
 * Run as `node --expose-gc --conditions=@vigil/source --import tsx bench/run.ts` for the steadiest
 * heap figure (plain `tsx --conditions=@vigil/source` works too: the benchmark turns the flag on
 * itself). The condition resolves the packages to their sources; figure 10 runs the build
 * (`pnpm bench` builds first).
 */
const figures: ReadonlyArray<{
  readonly numbers: ReadonlyArray<number>
  readonly title: string
  readonly run: (dir: string) => Effect.Effect<ReadonlyArray<Row>, unknown>
}> = [
  { numbers: [1, 2], title: "startup recovery and watchdog scan over 1,000,000 parts", run: recoveryFigures },
  { numbers: [3], title: "no-op tool lifecycle throughput and its floor", run: throughputFigures },
  { numbers: [4], title: "10,000 supervised sleeping tools", run: sleeperFigures },
  { numbers: [5], title: "hard stop of a TERM-ignoring process tree", run: hardStopFigures },
  { numbers: [6], title: "deadline accuracy under load", run: deadlineFigures },
  { numbers: [7], title: "model steps against a provider that answers at once", run: modelStepFigures },
  { numbers: [8], title: "a 200-step turn on a short and on a long session history", run: historyFigures },
  { numbers: [9], title: "a watchdog scan and an abort over a 100,000-deep session chain", run: treeFigures },
  { numbers: [10], title: "start-up of the built CLI: --help, a bad config, /health after serve", run: startupFigures },
  // Last: the longest (about 7 s a SIGKILL round).
  { numbers: [20], title: "crash loop, long form: 50 SIGKILLs under a hostile workload", run: crashLoopFigures }
]

const progress = (line: string) => Effect.sync(() => process.stderr.write(`${line}\n`))

/** A figure that fails is a row saying so; the others still run. */
const measure = (figure: (typeof figures)[number], dir: string) =>
  Effect.gen(function*() {
    yield* progress(`• ${figure.numbers.join(", ")}: ${figure.title} …`)
    const started = performance.now()
    const rows = yield* figure.run(dir).pipe(
      Effect.catchAllCause((cause) =>
        Effect.succeed(figure.numbers.map((number): Row => ({
          figure: number,
          name: figure.title,
          value: Number.NaN,
          unit: "",
          baseline: "",
          target: "",
          verdict: "FAILED",
          note: Cause.pretty(cause).split("\n").slice(0, 3).join(" ")
        })))
      )
    )
    yield* progress(`  done in ${show((performance.now() - started) / 1000)} s`)
    return rows
  })

/** `pnpm bench 7 3`: only those figures (all by default). */
const only = process.argv.slice(2).map(Number).filter((n) => Number.isInteger(n) && n > 0)

const main = Effect.gen(function*() {
  const dir = yield* tempFolder
  const started = performance.now()
  const rows: Array<Row> = []
  for (const figure of figures) {
    if (only.length > 0 && !figure.numbers.some((n) => only.includes(n))) continue
    rows.push(...(yield* measure(figure, dir)))
  }
  const totalSeconds = (performance.now() - started) / 1000
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${show(totalmem() / 2 ** 30)} GiB, node ${process.version}`
  yield* Effect.sync(() => {
    console.log(`\nvigil benchmarks: ${machine}; ${show(totalSeconds)} s\n`)
    console.log(table(rows))
    const missed = rows.filter((r) => r.verdict.startsWith("MISSED") || r.verdict === "FAILED")
    console.log(missed.length === 0 ? "\nall targets met" : `\n${missed.length} row(s) missed their target or failed`)
    const file = fileURLToPath(new URL("./results.json", import.meta.url))
    writeFileSync(
      file,
      `${JSON.stringify({
        at: new Date().toISOString(),
        machine: { cpus: cpus().length, model: cpus()[0]?.model ?? null, memoryBytes: totalmem(), node: process.version },
        gc: collectGarbage(),
        totalSeconds: Math.round(totalSeconds * 10) / 10,
        rows
      }, null, 2)}\n`
    )
    console.log(`written: ${file}`)
  })
}).pipe(Effect.scoped)

// Warnings the runtime logs for each supervision action (thousands here) are not the measurement.
// The fibers run on the scheduler the server installs (runtime's FairScheduler), so the figures
// are the server's.
Effect.runPromise(
  main.pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.Error)), Effect.withScheduler(fairScheduler))
).then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
