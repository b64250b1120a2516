import { Duration, Effect, Exit, Fiber } from "effect"
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { stat } from "node:fs/promises"
import { CappedOutput } from "./CappedOutput.js"
import * as Containment from "./Containment.js"
import { hardStop } from "./HardStop.js"
import type { RestoreClock } from "./LiveClock.js"
import { onLiveClock } from "./LiveClock.js"
import * as ProcessTable from "./ProcessTable.js"
import type { ProcessRecord } from "./Tool.js"
import { ToolError } from "./Tool.js"

export interface ShellOptions {
  readonly command: string
  readonly cwd: string
  readonly env?: Record<string, string>
  /** Inherited by every descendant, so a hard stop finds them wherever they went. */
  readonly marker: { readonly name: string; readonly value: string }
  /** Bytes of output kept; past it, the head and the tail are kept around a marker. */
  readonly outputCap?: number
  /** SIGTERM → SIGKILL. */
  readonly killGrace?: Duration.Duration
  /** How long to read what is left in the pipes after the shell exits. */
  readonly drain?: Duration.Duration
  readonly onStart?: (process: ProcessRecord) => Effect.Effect<void>
  readonly onOutput?: (chunk: string) => Effect.Effect<void>
  readonly onStep?: (step: "term" | "kill" | "survivors", data: Record<string, unknown>) => Effect.Effect<void>
}

export interface ShellResult {
  readonly exitCode: number | null
  readonly signal: string | null
  readonly output: string
  readonly truncated: boolean
}

export const defaultOutputCap = 64 * 1024
export const defaultKillGrace = Duration.seconds(2)
export const defaultDrain = Duration.millis(100)
/** The bound on reading what a shell wrote when nothing it started is left to hold the pipes. */
const drainWithoutHolders = Duration.seconds(5)

/**
 * `/bin/sh -c command` in its own process group. Done when the shell exits plus a short, bounded
 * drain of its pipes: a background job holding stdout (a dev server, `sleep 300 &`) never keeps
 * the tool running. What the shell leaves behind is hard-stopped then, and on interruption the
 * whole tree is (SIGTERM to the group and every descendant, SIGKILL after the kill grace); either
 * way the release takes at most the kill grace plus about a second.
 *
 * Its waits run on the live clock (they are about real processes, see `LiveClock`); the caller's
 * callbacks run on the caller's.
 *
 * Not `@effect/platform`'s Command: it cannot start the child as a group leader (`detached`) nor
 * return on exit while a grandchild still holds the pipes, and the hard stop needs both.
 */
export const runShell = (options: ShellOptions): Effect.Effect<ShellResult, ToolError> =>
  onLiveClock((restore) => runShellWith(options, restore))

const runShellWith = (options: ShellOptions, restore: RestoreClock): Effect.Effect<ShellResult, ToolError> => {
  const cap = options.outputCap ?? defaultOutputCap
  const killGrace = options.killGrace ?? defaultKillGrace
  const drain = options.drain ?? defaultDrain
  const onStart = options.onStart
  const onOutput = options.onOutput
  const onStep = options.onStep
    ? (step: "term" | "kill" | "survivors", data: Record<string, unknown>) => restore(options.onStep!(step, data))
    : undefined
  const stopTree = (child: ChildProcess) =>
    hardStop({
      ...(child.pid !== undefined ? { pgid: child.pid, pids: [child.pid] } : {}),
      marker: options.marker,
      group: Containment.groupOf(options.marker.value),
      termGrace: killGrace,
      ...(onStep ? { onStep } : {})
    })

  return Effect.acquireUseRelease(
    Effect.flatMap(checkCwd(options.cwd), () =>
      Effect.try({
        try: () => startShell(options, cap),
        catch: (error) => new ToolError({ message: `cannot start /bin/sh in ${options.cwd}: ${String(error)}` })
      })),
    (shell) =>
      Effect.gen(function*() {
        const { child } = shell
        if (child.pid !== undefined && onStart) {
          const pid = child.pid
          // Recorded first: a crash from here on leaves a process recovery can find.
          const start = yield* ProcessTable.startTime(pid)
          yield* restore(onStart({ pid, pgid: pid, startTime: start._tag === "Some" ? start.value : "" }))
        }
        const flush = Effect.suspend(() => {
          const pending = shell.pending.splice(0).join("")
          return pending !== "" && onOutput ? restore(onOutput(pending)) : Effect.void
        })
        // Output is progress: it is handed on as it arrives, in 100 ms batches.
        const flusher = yield* Effect.fork(flush.pipe(Effect.delay(Duration.millis(100)), Effect.forever))
        const exited = yield* Effect.promise(() => shell.exited)
        if (exited.error !== undefined) {
          return yield* new ToolError({ message: `cannot run the command in ${options.cwd}: ${exited.error}` })
        }
        // The drain. The pipes stay open after the shell exits only while something it started
        // still holds them; with nothing left, wait for them to close (a busy event loop may not
        // have read what was already written: a short timer here would lose it). With a holder
        // (`sleep 300 &`, a dev server), read for a bounded moment, then stop.
        const holders = yield* Containment.treeMembers(options.marker)
        yield* Effect.promise(() => shell.pipesClosed).pipe(
          Effect.timeoutTo({
            duration: holders.size === 0 ? Duration.max(drain, drainWithoutHolders) : drain,
            onSuccess: () => undefined,
            onTimeout: () => undefined
          })
        )
        yield* Fiber.interrupt(flusher)
        yield* flush
        const suffix = exited.code !== null && exited.code !== 0
          ? `\n[exit code ${exited.code}]`
          : exited.signal !== null
          ? `\n[killed by ${exited.signal}]`
          : ""
        return {
          exitCode: exited.code,
          signal: exited.signal,
          output: shell.output.text() + suffix,
          truncated: shell.output.truncated
        } satisfies ShellResult
      }),
    (shell, exit) =>
      Effect.gen(function*() {
        shell.child.stdout?.destroy()
        shell.child.stderr?.destroy()
        // Interrupted: the whole tree goes. Finished: only what it left behind (background jobs).
        const report = yield* stopTree(shell.child)
        if (Exit.isSuccess(exit) && report.termed.length > 0 && onStep) {
          yield* onStep("survivors", { leftBehind: report.termed })
        }
      })
  )
}

/**
 * Node reports a missing cwd as `spawn /bin/sh ENOENT`, which blames the shell: say what is
 * really wrong before spawning.
 */
const checkCwd = (cwd: string): Effect.Effect<void, ToolError> =>
  Effect.tryPromise({
    try: () => stat(cwd),
    catch: (error) =>
      new ToolError({
        message: (error as NodeJS.ErrnoException).code === "ENOENT"
          ? `working directory does not exist: ${cwd}`
          : `cannot use working directory ${cwd}: ${String(error)}`
      })
  }).pipe(
    Effect.flatMap((info) =>
      info.isDirectory() ? Effect.void : Effect.fail(new ToolError({ message: `working directory is not a directory: ${cwd}` }))
    )
  )

interface StartedShell {
  readonly child: ChildProcess
  readonly output: CappedOutput
  /** Chunks not yet handed to `onOutput`. */
  readonly pending: Array<string>
  readonly exited: Promise<{ code: number | null; signal: string | null; error?: string }>
  readonly pipesClosed: Promise<void>
}

/** Spawns and wires every listener at once, so no event can fire before someone listens. */
const startShell = (options: ShellOptions, cap: number): StartedShell => {
  // In the part's cgroup where there is one (see `Containment`), entered before the command runs.
  const contained = Containment.spawnCommand(options.marker.value, "/bin/sh", ["-c", options.command])
  const child = spawn(contained.file, contained.args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env, [options.marker.name]: options.marker.value },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"]
  })
  const output = new CappedOutput(cap)
  const pending: Array<string> = []
  const onData = (text: string) => {
    output.add(text)
    pending.push(text)
  }
  // A decoder per stream: a character split across two reads is joined, not turned into U+FFFD.
  child.stdout!.setEncoding("utf8").on("data", onData)
  child.stderr!.setEncoding("utf8").on("data", onData)
  const exited = new Promise<{ code: number | null; signal: string | null; error?: string }>((resolve) => {
    child.once("error", (error) => resolve({ code: null, signal: null, error: error.message }))
    child.once("exit", (code, signal) => resolve({ code, signal }))
  })
  const closed = (stream: NodeJS.ReadableStream) =>
    new Promise<void>((resolve) => {
      stream.once("end", resolve)
      stream.once("close", resolve)
    })
  return {
    child,
    output,
    pending,
    exited,
    pipesClosed: Promise.all([closed(child.stdout!), closed(child.stderr!)]).then(() => undefined)
  }
}
