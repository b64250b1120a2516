import type { InstanceId, PartId, RecoveryReport, SessionId, Settings as SettingsShape } from "@vigil/domain"
import { Instance, makeInstanceId, newPart } from "@vigil/domain"
import type { AnyTool } from "@vigil/tools"
import type { ToolContext } from "@vigil/tools"
import { ToolError } from "@vigil/tools"
import { PartRepo } from "@vigil/store"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Clock, Duration, Effect, Layer, Option, Schema } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import type { LanguageModelShape } from "../src/agent/LanguageModel.js"
import { LanguageModels } from "../src/agent/LanguageModel.js"
import { ProcessControl } from "../src/supervision/ProcessControl.js"
import { scriptModel } from "../src/agent/ScriptModel.js"
import { Tools } from "../src/agent/Tools.js"
import * as Vigil from "../src/Vigil.js"

const dirs: Array<string> = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

/** A new SQLite file in a temp folder that is removed after the test file. */
export const tempDb = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "vigil-runtime-"))
  dirs.push(dir)
  return join(dir, "vigil.db")
}

/** Settings for time tests: small, round numbers, and the scanning loops off unless asked for. */
export const testSettings = (overrides: Partial<SettingsShape> = {}): Partial<SettingsShape> => ({
  toolTimeout: Option.some(Duration.seconds(10)),
  taskTimeout: Option.some(Duration.seconds(60)),
  idleTimeout: Option.some(Duration.seconds(30)),
  watchdogInterval: Option.none(),
  instanceLease: Duration.seconds(30),
  abortGrace: Duration.seconds(1),
  killGrace: Duration.millis(300),
  ...overrides
})

/** The whole supervision layer on a real SQLite file, with the OS port faked (no real pids). */
export const testRuntime = (options: {
  readonly settings?: Partial<SettingsShape>
  readonly tools?: ReadonlyArray<AnyTool>
  readonly models?: ReadonlyArray<LanguageModelShape>
  readonly file?: string
  readonly processes?: Layer.Layer<ProcessControl>
  /** Replaces repositories of the real store (a flaky one, say); they are built on the same file. */
  readonly store?: (file: string) => ReturnType<typeof SqliteStoreLive>
} = {}) => {
  // A test's tool of a builtin's name (a bash with a short kill grace) takes that builtin's place.
  const own = new Set((options.tools ?? []).map((tool) => tool.name))
  const builtins = [{ name: "bash", layer: Tools.bash() }, { name: "read", layer: Tools.read() }, { name: "write", layer: Tools.write() }]
  return Vigil.layerWithStore((options.store ?? SqliteStoreLive)(options.file ?? tempDb()), {
    settings: testSettings(options.settings),
    tools: Layer.mergeAll(Tools.addAll(options.tools ?? []), ...builtins.filter((builtin) => !own.has(builtin.name)).map((builtin) => builtin.layer)),
    processes: options.processes ?? ProcessControl.test(),
    models: Layer.succeed(LanguageModels, {
      defaultModel: "script",
      models: new Map([scriptModel, ...(options.models ?? [])].map((model) => [model.name, model]))
    })
  })
}

/** Tools whose behaviour a test controls. */
export const testTools = {
  /** Runs until interrupted. */
  forever: {
    name: "forever",
    description: "never finishes on its own",
    input: Schema.Struct({}),
    run: () => Effect.never
  },
  /** Its abort handler never finishes: the wedged-finalizer case. */
  wedgedFinalizer: {
    name: "wedged_finalizer",
    description: "an interruption that never completes",
    input: Schema.Struct({}),
    run: () => Effect.never.pipe(Effect.onInterrupt(() => Effect.never))
  },
  /** Ignores interruption altogether. */
  uninterruptible: {
    name: "uninterruptible",
    description: "an uninterruptible region",
    input: Schema.Struct({}),
    run: () => Effect.uninterruptible(Effect.never)
  },
  /** Sleeps `ms`, printing a line first: progress. */
  sleep: {
    name: "sleep",
    description: "sleeps",
    input: Schema.Struct({ ms: Schema.Number }),
    run: (input: { readonly ms: number }, context: ToolContext) =>
      context.output(`sleeping ${input.ms}\n`).pipe(Effect.zipRight(Effect.sleep(Duration.millis(input.ms))), Effect.as(`slept ${input.ms}`))
  },
  fail: {
    name: "fail",
    description: "fails",
    input: Schema.Struct({ message: Schema.String }),
    run: (input: { readonly message: string }) => Effect.fail(new ToolError({ message: input.message }))
  },
  crash: {
    name: "crash",
    description: "dies",
    input: Schema.Struct({}),
    run: () => Effect.die(new Error("boom"))
  }
} satisfies Record<string, AnyTool>

export const allTestTools: ReadonlyArray<AnyTool> = Object.values(testTools)

/** A running tool part whose fiber is gone (a lost supervisor, a crashed owner): the watchdog's and recovery's case. */
export const runningPart = (fields: {
  readonly sessionId: SessionId
  readonly tool: string
  readonly ownerId: InstanceId
  readonly deadlineIn: number
  readonly input?: unknown
  readonly childSessionId?: SessionId
}) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const part = newPart({
      sessionId: fields.sessionId,
      kind: "tool",
      tool: fields.tool,
      input: fields.input ?? {},
      status: "running",
      createdAt: now,
      startedAt: now,
      deadlineAt: now + fields.deadlineIn,
      ownerId: fields.ownerId,
      childSessionId: fields.childSessionId ?? null
    })
    yield* (yield* PartRepo).insert(part)
    return part.id
  })

/** A recovery report that found nothing, but for `fields`. */
export const recoveryReport = (fields: Partial<RecoveryReport> = {}): RecoveryReport => ({
  deadOwners: [],
  orphanedParts: 0,
  sessionsFreed: 0,
  processesKilled: 0,
  partIds: [],
  sessionIds: [],
  tookMs: 0,
  dryRun: false,
  ...fields
})

export const getPart = (id: PartId) =>
  PartRepo.pipe(Effect.flatMap((parts) => parts.get(id)), Effect.map(Option.getOrThrow))

/** An instance that died long ago (its lease ran out ten minutes before `now`), on a host that is gone. */
export const deadInstance = (now: number) =>
  new Instance({
    id: makeInstanceId(),
    pid: 999_999,
    host: "gone-host",
    procStart: "1",
    startedAt: now - 600_000,
    heartbeatAt: now - 600_000,
    leaseMillis: 30_000,
    stoppedAt: null
  })
