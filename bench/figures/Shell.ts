import { spawn } from "node:child_process"
import { join } from "node:path"
import { ProcessControl, SessionService, Settings, Tools, Vigil } from "../../packages/runtime/src/index.js"
import { Effect, Layer } from "../effect.js"
import type { Row } from "../Report.js"
import { median, percentile, row, show } from "../Report.js"
import { benchSettings, buildOpen } from "../Support.js"

const calls = 100
const warmup = 10

/** One `/bin/sh -c true` spawned bare, timed to its exit: what any supervisor's shell call costs at least. */
const bareSpawn = Effect.async<number, Error>((resume) => {
  const started = performance.now()
  const child = spawn("/bin/sh", ["-c", "true"], { stdio: "ignore" })
  child.on("error", (error) => resume(Effect.fail(error)))
  child.on("exit", (code) =>
    resume(code === 0 ? Effect.succeed(performance.now() - started) : Effect.fail(new Error(`sh -c true exited ${code}`))))
})

/**
 * Figure 11: a supervised `bash` call of `true` through `SessionService.runTool` (the shell route a
 * client calls: the session claimed, the part written pending and running, the command spawned in
 * its own process group with the part's marker and its containment, its output captured, the part
 * and the session ended), on the live OS port, one call at a time; against the floor: `spawn('/bin/sh',
 * ['-c', 'true'])` to its exit. The two kinds interleaved, call by call.
 */
export const shellFigures = (dir: string) =>
  Effect.gen(function*() {
    const settings = benchSettings()
    const runtime = yield* buildOpen(Vigil.layerTest({
      file: join(dir, "shell.db"),
      settings,
      tools: Tools.bash(),
      processes: ProcessControl.Live.pipe(Layer.provide(Settings.layer(settings)))
    }))
    const measured = yield* Effect.gen(function*() {
      const service = yield* SessionService
      const session = yield* service.create({ title: "shell" })
      const supervised = Effect.gen(function*() {
        const started = performance.now()
        const run = yield* service.runTool(session.id, { tool: "bash", input: { command: "true" } })
        yield* run.done
        return performance.now() - started
      })
      for (let i = 0; i < warmup; i++) {
        yield* supervised
        yield* bareSpawn
      }
      const vigil: Array<number> = []
      const bare: Array<number> = []
      for (let i = 0; i < calls; i++) {
        vigil.push(yield* supervised)
        bare.push(yield* bareSpawn)
      }
      return { vigil, bare }
    }).pipe(Effect.provide(runtime.context), Effect.onError(() => runtime.close))
    yield* runtime.close
    const { vigil, bare } = measured
    const spawnFloor = (times: ReadonlyArray<number>, at: string) => ({ value: percentile(times, at === "p50" ? 50 : 99), what: `spawn('/bin/sh', ['-c', 'true']), ${at}` })
    return [
      row({
        figure: 11,
        name: "supervised bash call of `true` (SessionService.runTool), p50",
        value: median(vigil),
        unit: "ms",
        floor: spawnFloor(bare, "p50"),
        note: `${calls} calls after ${warmup} of warm-up, one at a time, interleaved with the bare spawns; ` +
          `${show(median(vigil) - median(bare))} ms of supervision per call at the median`
      }),
      row({
        figure: 11,
        name: "supervised bash call of `true` (SessionService.runTool), p99",
        value: percentile(vigil, 99),
        unit: "ms",
        floor: spawnFloor(bare, "p99")
      })
    ] satisfies ReadonlyArray<Row>
  })
