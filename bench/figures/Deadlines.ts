import { join } from "node:path"
import type { PartId, SessionId } from "../../packages/domain/src/index.js"
import { ToolRunner } from "../../packages/runtime/src/index.js"
import { openDatabase } from "../Database.js"
import { Duration, Effect, Fiber, Ref } from "../effect.js"
import type { Row } from "../Report.js"
import { max, median, percentile, row, show } from "../Report.js"
import { benchRuntime, benchTools, buildOpen, openSession } from "../Support.js"

const deadlined = 200
const deadlineMs = 50
const loadWorkers = 8
const abortGraceMs = 1_000

/**
 * Figure 6: how late a deadline lands under load. Eight supervised workers keep the process busy
 * (each runs `busy` tools back to back: 20 slices of 1 ms of CPU, plus the runner's writes); then
 * 200 tools that never finish are started at once with a 50 ms deadline. Lateness is
 * `ended_at − deadline_at` of each part as recorded (both written by the runner, in ms).
 *
 * Then the same deadline during a burst of no-op tools (eight at a time, for two seconds): that
 * work never waits on a macrotask (better-sqlite3 is synchronous, every fiber is resumed from a
 * microtask), so on Effect's default scheduler Node never reaches its timers phase and the deadline
 * cannot fire before the burst ends. The benchmark runs on the server's scheduler (runtime's
 * FairScheduler), which yields to timers and I/O every few milliseconds. The burst stops itself by
 * `performance.now()`, so that it ends on time on either scheduler.
 */
export const deadlineFigures = (dir: string) =>
  Effect.gen(function*() {
    const file = join(dir, "deadlines.db")
    const runtime = yield* buildOpen(benchRuntime({
      file,
      tools: [benchTools.forever, benchTools.busy, benchTools.noop],
      settings: { abortGrace: Duration.millis(abortGraceMs) }
    }))
    const measured = yield* Effect.gen(function*() {
      const runner = yield* ToolRunner
      const loadSessions: Array<SessionId> = []
      for (let i = 0; i < loadWorkers; i++) loadSessions.push(yield* openSession(`load ${i}`))
      const sessions: Array<SessionId> = []
      for (let i = 0; i < 20; i++) sessions.push(yield* openSession(`deadlines ${i}`))
      const loadDone = yield* Ref.make(0)
      const worker = (sessionId: SessionId) =>
        runner.runTool({ sessionId, tool: benchTools.busy, input: {} }).pipe(
          Effect.flatMap((handle) => handle.await),
          Effect.zipRight(Ref.update(loadDone, (n) => n + 1)),
          Effect.forever
        )
      const load = yield* Effect.fork(Effect.forEach(loadSessions, worker, { concurrency: "unbounded", discard: true }))
      yield* Effect.sleep("300 millis")
      const beforeLoad = yield* Ref.get(loadDone)
      const started = performance.now()
      const handles = yield* Effect.forEach(
        Array.from({ length: deadlined }, (_, i) => i),
        (i) =>
          runner.runTool({
            sessionId: sessions[i % sessions.length]!,
            tool: benchTools.forever,
            input: {},
            timeout: Duration.millis(deadlineMs)
          }),
        { concurrency: "unbounded" }
      )
      const startMs = performance.now() - started
      const outcomes = yield* Effect.forEach(handles, (handle) => handle.await, { concurrency: "unbounded" })
      const windowMs = performance.now() - started
      const loadInWindow = (yield* Ref.get(loadDone)) - beforeLoad
      yield* Fiber.interrupt(load)
      const notTimedOut = outcomes.filter((outcome) => outcome._tag !== "Failed" || outcome.reason._tag !== "ToolTimeout")
      if (notTimedOut.length > 0) {
        return yield* Effect.dieMessage(`${notTimedOut.length} deadlined tools did not end ToolTimeout: ${JSON.stringify(notTimedOut[0])}`)
      }

      const starved = yield* deadlineDuringBurst(runner, sessions[0]!, loadSessions)
      return { partIds: handles.map((handle) => handle.partId), windowMs, loadInWindow, starved, startMs }
    }).pipe(Effect.provide(runtime.context), Effect.onError(() => runtime.close))
    yield* runtime.close
    const lateness = yield* Effect.sync(() => latenessOf(file, measured.partIds))
    const [starvedLateness] = yield* Effect.sync(() => latenessOf(file, [measured.starved.partId]))
    const { starved } = measured

    const target = { kind: "max", limit: abortGraceMs, text: `< abort grace (${abortGraceMs} ms)` } as const
    const clock = { none: "deadline accuracy is measured against the clock" }
    const note = `${deadlined} deadlines of ${deadlineMs} ms, started together while ${loadWorkers} workers ran busy tools ` +
      `(${measured.loadInWindow} of them completed during the ${show(measured.windowMs)} ms window); starting the 200 took ` +
      `${show(measured.startMs)} ms, during which no timer could fire`
    return [
      row({ figure: 6, name: "deadline lateness under load, median", value: median(lateness), unit: "ms", floor: clock, note }),
      row({ figure: 6, name: "deadline lateness under load, p99", value: percentile(lateness, 99), unit: "ms", floor: clock }),
      row({
        figure: 6,
        name: "deadline lateness under load, max",
        value: max(lateness),
        unit: "ms",
        floor: clock,
        target,
        note: "DESIGN: a tool is terminal within timeout + grace"
      }),
      row({
        figure: 6,
        name: "deadline lateness during a 2 s burst of no-op tools",
        value: starvedLateness!,
        unit: "ms",
        floor: clock,
        target,
        note: `${starved.lifecycles} no-op lifecycles ran in ${show(starved.burstMs)} ms; a plain setTimeout(10 ms) set at the ` +
          `start ${starved.timerFiredMs === undefined ? "had not fired when the burst ended" : `fired at ${show(starved.timerFiredMs)} ms`} ` +
          "(timers, the lease heartbeat and I/O wait for the event loop, which the fair scheduler gives them every few ms)"
      })
    ] satisfies ReadonlyArray<Row>
  })

const burstMs = 2_000

/** A 50 ms deadline set just before a burst of no-op tools that never awaits a macrotask. */
const deadlineDuringBurst = (runner: ToolRunner, sessionId: SessionId, workers: ReadonlyArray<SessionId>) =>
  Effect.gen(function*() {
    const started = performance.now()
    let timerFiredMs: number | undefined
    const timer = setTimeout(() => (timerFiredMs = performance.now() - started), 10)
    const handle = yield* runner.runTool({ sessionId, tool: benchTools.forever, input: {}, timeout: Duration.millis(deadlineMs) })
    let lifecycles = 0
    const worker = (workerSession: SessionId) =>
      runner.runTool({ sessionId: workerSession, tool: benchTools.noop, input: {} }).pipe(
        Effect.flatMap((h) => h.await),
        Effect.tap(() => Effect.sync(() => lifecycles++)),
        Effect.repeat({ while: () => performance.now() - started < burstMs })
      )
    yield* Effect.forEach(workers, worker, { concurrency: "unbounded", discard: true })
    const ended = performance.now() - started
    const firedDuringBurst = timerFiredMs
    clearTimeout(timer)
    const outcome = yield* handle.await
    if (outcome._tag !== "Failed" || outcome.reason._tag !== "ToolTimeout") {
      return yield* Effect.dieMessage(`the deadlined tool did not end ToolTimeout: ${JSON.stringify(outcome)}`)
    }
    return { partId: handle.partId, burstMs: ended, lifecycles, timerFiredMs: firedDuringBurst }
  })

const latenessOf = (file: string, partIds: ReadonlyArray<PartId>): Array<number> => {
  const db = openDatabase(file)
  try {
    const read = db.prepare(`SELECT status, ended_at, deadline_at FROM vigil_parts WHERE id = ?`)
    return partIds.map((id) => {
      const part = read.get(id)
      if (part === undefined || part["status"] !== "error" || part["deadline_at"] === null) {
        throw new Error(`part ${id} is not an ended, deadlined part: ${JSON.stringify(part)}`)
      }
      return Number(part["ended_at"]) - Number(part["deadline_at"])
    })
  } finally {
    db.close()
  }
}
