import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { Containment, ProcessTable, runShell } from "../../packages/tools/src/index.js"
import { Duration, Effect, Fiber } from "../effect.js"
import type { Row } from "../Report.js"
import { max, median, row, show } from "../Report.js"

const runs = 10
const killGraceMs = 200
const markerName = "VIGIL_BENCH_TREE"

/**
 * Every process of the tree ignores SIGTERM (an ignored signal stays ignored across exec), and one
 * descendant drops the marker and leaves the tree's session and ancestry (`setsid -f`): only the
 * part's cgroup finds it. It writes its pid to `$1`.
 */
const command = (pidFile: string) =>
  `trap '' TERM; (trap '' TERM; sleep 300) & setsid sh -c 'trap "" TERM; sleep 300' & ` +
  `env -u ${markerName} setsid -f sh -c 'trap "" TERM; echo $$ > "$0"; exec sleep 300' '${pidFile}'; sleep 300`

const commandName = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim()
  } catch {
    return ""
  }
}

/** The tree is up once its three `sleep`s exist (each starts after its shell set its trap). */
const treeUp = (marker: string) =>
  Effect.gen(function*() {
    const deadline = performance.now() + 5_000
    while (performance.now() < deadline) {
      const pids = yield* ProcessTable.withEnvMarker(markerName, marker)
      if ([...pids].filter((pid) => commandName(pid) === "sleep").length >= 3) return pids.size
      yield* Effect.sleep("5 millis")
    }
    return yield* Effect.dieMessage("the TERM-ignoring tree did not come up within 5 s")
  })

/**
 * Figure 5: `runShell` with a kill grace of 200 ms runs a tree that ignores SIGTERM (a subshell,
 * a `setsid` escapee, a `setsid -f` escapee without the marker, a foreground sleep); the fiber is
 * interrupted, which hard-stops the tree in its release. Measured from the interrupt to the moment
 * no process with the run's marker is left and the marker-less escapee is gone (the interrupt
 * returns once the hard stop saw the tree dead; /proc is checked again after it).
 */
export const hardStopFigures = (dir: string) =>
  Effect.gen(function*() {
    const timings: Array<number> = []
    let treeSize = 0
    const containment = Containment.current().mechanism
    for (let run = 0; run < runs; run++) {
      const marker = `bench-${process.pid}-${run}`
      const pidFile = join(mkdtempSync(join(dir, "escapee-")), "pid")
      const fiber = yield* Effect.fork(
        runShell({ command: command(pidFile), cwd: dir, marker: { name: markerName, value: marker }, killGrace: Duration.millis(killGraceMs) })
      )
      treeSize = (yield* treeUp(marker)) + 1
      while (!(existsSync(pidFile) && /^\d+\n$/.test(readFileSync(pidFile, "utf8")))) yield* Effect.sleep("5 millis")
      const escapee = Number(readFileSync(pidFile, "utf8").trim())
      const leftNow = Effect.gen(function*() {
        const left = yield* ProcessTable.withEnvMarker(markerName, marker)
        if (yield* ProcessTable.isAlive(escapee)) left.add(escapee)
        return left
      })
      const started = performance.now()
      yield* Fiber.interrupt(fiber)
      let left = yield* leftNow
      while (left.size > 0 && performance.now() - started < 5_000) {
        yield* Effect.sleep("1 millis")
        left = yield* leftNow
      }
      // Under the marker fallback the escapee is out of reach: say so, and end it here.
      if (left.size === 1 && left.has(escapee) && containment === "marker") {
        process.kill(escapee, "SIGKILL")
        return yield* Effect.dieMessage(`process containment is "marker": the marker-less escapee ${escapee} survived`)
      }
      if (left.size > 0) return yield* Effect.dieMessage(`the hard stop left ${[...left].join(", ")} alive`)
      timings.push(performance.now() - started)
    }
    const target = { kind: "max", limit: killGraceMs + 100, text: `≤ kill grace + 100 = ${killGraceMs + 100} ms` } as const
    // Set, not measured: every process ignores TERM, so nothing may end the tree before the grace.
    const floor = { value: killGraceMs, what: "kill grace (the tree ignores TERM: nothing ends it sooner)" }
    return [
      row({
        figure: 5,
        name: "hard stop of a TERM-ignoring tree, median of 10",
        value: median(timings),
        unit: "ms",
        floor,
        target,
        note: `${treeSize} processes (two in sessions of their own via setsid, one of them without the marker), containment ${containment}, kill grace ${killGraceMs} ms; runs: ${
          timings.map(show).join(", ")
        } ms`
      }),
      row({
        figure: 5,
        name: "hard stop of a TERM-ignoring tree, max of 10",
        value: max(timings),
        unit: "ms",
        floor,
        target
      })
    ] satisfies ReadonlyArray<Row>
  })
