import { join } from "node:path"
import type { SessionId } from "../../packages/domain/src/index.js"
import { ToolRunner, Watchdog } from "../../packages/runtime/src/index.js"
import { openDatabase } from "../Database.js"
import { Duration, Effect, Fiber } from "../effect.js"
import { bareOwner, bareParts, bareScanTimings } from "../Floors.js"
import type { Row } from "../Report.js"
import { max, median, row, show } from "../Report.js"
import { migrate } from "../Seed.js"
import { benchRuntime, benchTools, buildOpen, openSession, settledHeap } from "../Support.js"

const tools = 10_000
const sessionCount = 100
const scans = 5

/**
 * Figure 4: ten thousand supervised tools sleeping 60 s on the real clock, in 100 busy sessions.
 * The heap they hold (after full collections), one watchdog scan over them, and the shutdown that
 * ends them all (closing the runtime's scope: each part's stop interrupts its body, then records
 * the part terminal). Each against the same done bare (`bareSleepers`).
 */
export const sleeperFigures = (dir: string) =>
  Effect.gen(function*() {
    const file = join(dir, "sleepers.db")
    const runtime = yield* buildOpen(benchRuntime({ file, tools: [benchTools.sleep60, benchTools.noop] }))
    const measured = yield* Effect.gen(function*() {
      const runner = yield* ToolRunner
      const watchdog = yield* Watchdog
      const sessions: Array<SessionId> = []
      for (let i = 0; i < sessionCount; i++) sessions.push(yield* openSession(`sleepers ${i}`))
      // Warm every path first (statement caches, lazily built schemas), so the delta is the tools.
      yield* Effect.forEach(sessions, (sessionId) =>
        runner.runTool({ sessionId, tool: benchTools.noop, input: {} }).pipe(Effect.flatMap((handle) => handle.await)), {
        discard: true
      })
      yield* Effect.sleep("50 millis")
      const before = settledHeap()
      const started = performance.now()
      for (let i = 0; i < tools; i++) {
        yield* runner.runTool({ sessionId: sessions[i % sessionCount]!, tool: benchTools.sleep60, input: {} })
      }
      const startMs = performance.now() - started
      // Every part's fiber is forked by now; let them all reach their waits.
      yield* Effect.sleep("200 millis")
      const after = settledHeap()
      const running = (yield* runner.running).length
      if (running !== tools) return yield* Effect.dieMessage(`${running} tools running, expected ${tools}`)
      const timings: Array<number> = []
      for (let i = 0; i < scans; i++) {
        const scanStarted = performance.now()
        const summary = yield* watchdog.scan
        timings.push(performance.now() - scanStarted)
        if (summary.stuckParts !== 0) return yield* Effect.dieMessage(`the scan found ${summary.stuckParts} stuck parts`)
      }
      return { before, after, startMs, timings }
    }).pipe(Effect.provide(runtime.context), Effect.onError(() => runtime.close))
    const shutdownMs = yield* runtime.close
    const ended = yield* Effect.sync(() => {
      const db = openDatabase(file)
      try {
        return Number(db.prepare(`SELECT count(*) AS n FROM vigil_parts WHERE tool = 'sleep60' AND status = 'error'`).get()!["n"])
      } finally {
        db.close()
      }
    })
    if (ended !== tools) return yield* Effect.dieMessage(`shutdown left ${tools - ended} of ${tools} sleeping parts not terminal`)
    const bare = yield* bareSleepers(join(dir, "sleepers-floor.db"))

    const { before, after, startMs, timings } = measured
    const perTool = (after.heapUsed - before.heapUsed) / tools
    return [
      row({
        figure: 4,
        name: "heap per supervised sleeping tool (10k running)",
        value: perTool / 1024,
        unit: "KiB",
        floor: { value: bare.heapPerFiber / 1024, what: "a bare forked fiber sleeping 60 s" },
        note: `heapUsed ${show(before.heapUsed / 1048576)} → ${show(after.heapUsed / 1048576)} MiB` +
          (before.collected ? " after full collections" : " (no gc available: run under node --expose-gc)")
      }),
      row({
        figure: 4,
        name: "start of 10k sleeping tools, one after another",
        value: startMs,
        unit: "ms",
        floor: { value: bare.startMs, what: "10k bare forks, each with its running row inserted bare" },
        note: `${show(tools / (startMs / 1000))} starts/s`
      }),
      row({
        figure: 4,
        name: "watchdog scan with 10k running (median of 5)",
        value: median(timings),
        unit: "ms",
        floor: { value: median(bare.scanMs), what: "bare SQL, the scan's reads over the same rows" },
        note: `max ${show(max(timings))} ms`
      }),
      row({
        figure: 4,
        name: "shutdown with 10k running (close the runtime scope)",
        value: shutdownMs,
        unit: "ms",
        floor: { value: bare.shutdownMs, what: "10k bare fibers interrupted, each row ended bare" },
        note: `all ${ended} parts recorded terminal (SessionCancelled by shutdown)`
      })
    ] satisfies ReadonlyArray<Row>
  })

/**
 * The same ten thousand sleepers without supervision, on a file of the same schema: a fiber forked
 * per tool sleeping 60 s, its running row inserted bare (one autocommit each), the scan's reads
 * bare over those rows, then every fiber interrupted and each row ended bare.
 */
const bareSleepers = (file: string) =>
  Effect.gen(function*() {
    yield* migrate(file)
    const db = openDatabase(file)
    try {
      const parts = bareParts(db)
      const sleep = Effect.sleep(Duration.seconds(60))
      yield* Effect.sleep("50 millis")
      const before = settledHeap()
      const started = performance.now()
      const fibers: Array<Fiber.RuntimeFiber<void>> = []
      const ids: Array<string> = []
      for (let i = 0; i < tools; i++) {
        ids.push(parts.insertRunning())
        fibers.push(yield* Effect.fork(sleep))
      }
      const startMs = performance.now() - started
      yield* Effect.sleep("200 millis")
      const after = settledHeap()
      const scanMs = bareScanTimings(db, bareOwner, { running: tools, rounds: scans })
      const closing = performance.now()
      yield* Fiber.interruptAll(fibers)
      for (const id of ids) parts.end(id, "{\"_tag\":\"SessionCancelled\",\"by\":\"shutdown\"}")
      const shutdownMs = performance.now() - closing
      return { heapPerFiber: (after.heapUsed - before.heapUsed) / tools, startMs, scanMs, shutdownMs }
    } finally {
      db.close()
    }
  })
