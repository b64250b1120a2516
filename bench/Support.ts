import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { runInNewContext } from "node:vm"
import { setFlagsFromString } from "node:v8"
import type { SessionId, Settings as SettingsShape } from "../packages/domain/src/index.js"
import { makeSessionId, Session } from "../packages/domain/src/index.js"
import { FairScheduler, InstanceLease, ToolRunner, Tools, Vigil, Watchdog } from "../packages/runtime/src/index.js"
import { SessionRepo } from "../packages/store/src/index.js"
import type { AnyTool } from "../packages/tools/src/index.js"
import type { Fiber } from "./effect.js"
import { Clock, Duration, Effect, Exit, Layer, Option, Schema, Scope } from "./effect.js"

/** A temp folder for the run's SQLite files, removed when the run ends (however it ends). */
export const tempFolder = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "vigil-bench-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/**
 * The fair scheduler, counting Effect run-loop steps: the run loop asks `shouldYield` once per
 * step of every fiber on it. A count is exact where times on a shared machine vary by 40%, so a
 * change to a hot path can be weighed by it. Every fiber forked from one running on it runs on it.
 */
export class CountingScheduler extends FairScheduler {
  steps = 0
  override shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    this.steps++
    return super.shouldYield(fiber)
  }
}

/** Settings for the measured runtimes: the scanning loops off (scans are called by hand). */
export const benchSettings = (overrides: Partial<SettingsShape> = {}): Partial<SettingsShape> => ({
  toolTimeout: Option.some(Duration.minutes(10)),
  taskTimeout: Option.some(Duration.minutes(60)),
  idleTimeout: Option.some(Duration.minutes(30)),
  watchdogInterval: Option.none(),
  instanceLease: Duration.seconds(30),
  abortGrace: Duration.seconds(1),
  killGrace: Duration.millis(200),
  ...overrides
})

/**
 * The whole supervision layer on a real SQLite file, built as the runtime tests build it
 * (packages/runtime/test/support.ts): the OS port faked on a host of its own (`test-host`), so
 * a dead instance of another host is rescued without signalling anything.
 */
export const benchRuntime = (options: {
  readonly file: string
  readonly settings?: Partial<SettingsShape>
  readonly tools?: ReadonlyArray<AnyTool>
}) =>
  Vigil.layerTest({
    file: options.file,
    settings: benchSettings(options.settings),
    tools: Layer.merge(Tools.builtin(), Tools.addAll(options.tools ?? []))
  })

/**
 * Builds a layer in a scope of its own, so a figure can time its start and its shutdown
 * (`close`) separately.
 */
export const buildOpen = <A, E>(layer: Layer.Layer<A, E>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const started = performance.now()
    const context = yield* Layer.buildWithScope(layer, scope).pipe(
      Effect.onError(() => Scope.close(scope, Exit.void))
    )
    return {
      context,
      buildMs: performance.now() - started,
      /** Closes the scope (a shutdown) and returns how long it took, in ms. */
      close: Effect.gen(function*() {
        const closing = performance.now()
        yield* Scope.close(scope, Exit.void)
        return performance.now() - closing
      })
    }
  })

/** A busy session owned by this instance, as a turn would hold while its tools run. */
export const openSession = (title: string) =>
  Effect.gen(function*() {
    const lease = yield* InstanceLease
    const sessions = yield* SessionRepo
    const now = yield* Clock.currentTimeMillis
    const session = new Session({
      id: makeSessionId(),
      parentId: null,
      parentPartId: null,
      title,
      status: "busy",
      cancelReason: null,
      lastActivityAt: now,
      ownerId: lease.id,
      createdAt: now
    })
    yield* sessions.insert(session)
    return session.id
  })

const spin = (millis: number) => {
  const until = performance.now() + millis
  while (performance.now() < until) {
    // Busy on purpose: this is the CPU load.
  }
}

/** The tools the figures run. */
export const benchTools = {
  /** Does nothing: what is measured is the supervision around it. */
  noop: {
    name: "noop",
    description: "does nothing",
    input: Schema.Struct({}),
    run: () => Effect.succeed("")
  },
  /** Sleeps a minute on the real clock: a supervised tool that is simply waiting. */
  sleep60: {
    name: "sleep60",
    description: "sleeps 60 s",
    input: Schema.Struct({}),
    run: () => Effect.sleep(Duration.seconds(60)).pipe(Effect.as("slept"))
  },
  /** Never finishes on its own: only its deadline ends it. */
  forever: {
    name: "forever",
    description: "never finishes",
    input: Schema.Struct({}),
    run: () => Effect.never
  },
  /**
   * Burns the CPU in 1 ms slices, 20 a call, and between slices waits on a zero timer (a macrotask,
   * as work that does I/O would): see the deadline figure for why it is not `Effect.yieldNow`.
   */
  busy: {
    name: "busy",
    description: "keeps the CPU busy",
    input: Schema.Struct({}),
    run: () =>
      Effect.forEach(Array.from({ length: 20 }), () => Effect.sync(() => spin(1)).pipe(Effect.zipRight(Effect.sleep(0))), {
        discard: true
      }).pipe(Effect.as("busy"))
  }
} satisfies Record<string, AnyTool>

/**
 * A full collection, when the runtime allows one: `global.gc` under `node --expose-gc`, else the
 * flag is turned on now and `gc` taken from a fresh context (what `--expose-gc` would have given).
 */
export const collectGarbage: () => boolean = (() => {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (typeof exposed === "function") return () => (exposed(), true)
  try {
    setFlagsFromString("--expose-gc")
    const gc = runInNewContext("gc") as unknown
    if (typeof gc === "function") return () => ((gc as () => void)(), true)
  } catch {
    // No way to collect: heap figures are then noisier, and say so.
  }
  return () => false
})()

/** Collects a few times (weak references and finalizers need more than one pass). */
export const settledHeap = (): { readonly heapUsed: number; readonly collected: boolean } => {
  let collected = false
  for (let i = 0; i < 3; i++) collected = collectGarbage() || collected
  return { heapUsed: process.memoryUsage().heapUsed, collected }
}

/**
 * Figure 2's and 13's healthy watchdog: `running` sleeping tools of this instance, spread over
 * `sessions` busy sessions, then `scans` timed scans after 3 of warm-up; a scan that acts on
 * healthy work fails the figure.
 */
export const timeHealthyScans = (options: {
  readonly title: string
  readonly sessions: number
  readonly running: number
  readonly scans: number
}) =>
  Effect.gen(function*() {
    const runner = yield* ToolRunner
    const watchdog = yield* Watchdog
    const sessions: Array<SessionId> = []
    for (let i = 0; i < options.sessions; i++) sessions.push(yield* openSession(`${options.title} ${i}`))
    for (let i = 0; i < options.running; i++) {
      yield* runner.runTool({ sessionId: sessions[i % sessions.length]!, tool: benchTools.sleep60, input: {} })
    }
    const timings: Array<number> = []
    for (let i = 0; i < options.scans + 3; i++) {
      const started = performance.now()
      const summary = yield* watchdog.scan
      const took = performance.now() - started
      if (summary.stuckParts !== 0 || summary.orphansRescued !== 0) {
        return yield* Effect.dieMessage(`a scan of healthy work acted: ${JSON.stringify(summary)}`)
      }
      if (i >= 3) timings.push(took)
    }
    return timings
  })
