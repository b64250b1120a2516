import { Deferred, Duration, Effect, Exit, Fiber, FiberId } from "effect"
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { stat } from "node:fs/promises"
import { CappedOutput, outputCapBytes } from "./internal/CappedOutput.js"
import * as Containment from "./Containment.js"
import { hardStop } from "./HardStop.js"
import type { RestoreClock } from "./internal/LiveClock.js"
import { onLiveClock } from "./internal/LiveClock.js"
import * as ProcessTable from "./ProcessTable.js"
import { type ShellEnvironment, shellEnvironment } from "./internal/ShellEnvironment.js"
import type { ProcessRecord } from "./Tool.js"
import { ToolError } from "./Tool.js"

export interface ShellOptions {
  readonly command: string
  readonly cwd: string
  readonly env?: Record<string, string>
  /** What the shell inherits of the server's environment; secrets are removed by default. */
  readonly environment?: ShellEnvironment
  /** Inherited by every descendant, so a hard stop finds them wherever they went. */
  readonly marker: { readonly name: string; readonly value: string }
  /** Bytes of output kept; past it, the head and the tail are kept around a marker. */
  readonly outputCap?: number
  /** SIGTERM → SIGKILL. */
  readonly killGrace?: Duration.Duration
  /** How long to read what is left in the pipes after the shell exits. */
  readonly drain?: Duration.Duration
  readonly onStart?: (process: ProcessRecord) => Effect.Effect<void>
  /**
   * Every byte of output, in order, in batches. The pipes are paused while a batch is handed on
   * (see `pendingHighWater`), so a slow receiver slows the command instead of filling memory.
   */
  readonly onOutput?: (chunk: string) => Effect.Effect<void>
  /** Where the whole output was kept, if it was (named in the truncation marker); asked at the end. */
  readonly fullOutput?: () => string | undefined
  readonly onStep?: (step: "term" | "kill" | "survivors", data: Record<string, unknown>) => Effect.Effect<void>
}

export interface ShellResult {
  readonly exitCode: number | null
  readonly signal: string | null
  readonly output: string
  readonly truncated: boolean
}

export const defaultOutputCap = outputCapBytes
/**
 * Output read but not yet handed to `onOutput` past which the pipes are paused until it is: with
 * the head and tail (the cap), what a running shell holds is bounded by about these two, whatever
 * it prints (a `yes` flood waits on its pipe instead of growing the heap).
 */
export const pendingHighWater = 256 * 1024
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
        const flush = flushOf(shell, onOutput, restore)
        // Output is progress: it is handed on as it arrives, in 100 ms batches, or at once when
        // the batch reaches the high-water mark (the pipes wait meanwhile).
        const flusher = yield* Effect.fork(
          Effect.suspend(() => Deferred.await(shell.full)).pipe(
            Effect.timeoutTo({ duration: Duration.millis(100), onSuccess: () => undefined, onTimeout: () => undefined }),
            Effect.zipRight(flush),
            Effect.forever
          )
        )
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
        // Stop reading: a holder still writing must not refill memory nobody will hand on.
        shell.child.stdout?.destroy()
        shell.child.stderr?.destroy()
        const suffix = exited.code !== null && exited.code !== 0
          ? `\n[exit code ${exited.code}]`
          : exited.signal !== null
          ? `\n[killed by ${exited.signal}]`
          : ""
        return {
          exitCode: exited.code,
          signal: exited.signal,
          output: shell.output.text({ footer: suffix, fullOutput: options.fullOutput?.() }),
          truncated: shell.output.truncated
        } satisfies ShellResult
      }),
    (shell, exit) =>
      Effect.gen(function*() {
        // Stopped (a deadline, a cancel): what was read but not yet handed on is the tail of the
        // part's output, the lines that say how far it got. A finished shell flushed already.
        if (Exit.isFailure(exit)) yield* flushOf(shell, onOutput, restore)
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
 * Hands on what was read since the last batch, then lets the pipes flow again. Uninterruptible: a
 * batch taken out of `pending` is handed on whole, even when the flusher is stopped meanwhile.
 */
const flushOf = (
  shell: StartedShell,
  onOutput: ShellOptions["onOutput"],
  restore: RestoreClock
): Effect.Effect<void> =>
  Effect.uninterruptible(Effect.suspend(() => {
    const pending = shell.pending.splice(0).join("")
    shell.pendingBytes = 0
    const handOn = pending !== "" && onOutput ? restore(onOutput(pending)) : Effect.void
    return Effect.ensuring(handOn, Effect.sync(() => shell.resume()))
  }))

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
  /** Chunks not yet handed to `onOutput`, and their size in UTF-16 units (close enough to bytes for a mark). */
  readonly pending: Array<string>
  pendingBytes: number
  /** Completed when `pending` reaches the high-water mark; renewed by `resume`. */
  full: Deferred.Deferred<void>
  /** Lets the pipes flow again after a batch was handed on. */
  readonly resume: () => void
  readonly exited: Promise<{ code: number | null; signal: string | null; error?: string }>
  readonly pipesClosed: Promise<void>
}

/** Spawns and wires every listener at once, so no event can fire before someone listens. */
const startShell = (options: ShellOptions, cap: number): StartedShell => {
  // In the part's cgroup where there is one (see `Containment`), entered before the command runs.
  const contained = Containment.spawnCommand(options.marker.value, "/bin/sh", ["-c", options.command])
  const child = spawn(contained.file, contained.args, {
    cwd: options.cwd,
    env: { ...shellEnvironment(process.env, options.environment), ...options.env, [options.marker.name]: options.marker.value },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"]
  })
  const exited = new Promise<{ code: number | null; signal: string | null; error?: string }>((resolve) => {
    child.once("error", (error) => resolve({ code: null, signal: null, error: error.message }))
    child.once("exit", (code, signal) => resolve({ code, signal }))
  })
  const closed = (stream: NodeJS.ReadableStream) =>
    new Promise<void>((resolve) => {
      stream.once("end", resolve)
      stream.once("close", resolve)
    })
  let paused = false
  const started: StartedShell = {
    child,
    output: new CappedOutput(cap),
    pending: [],
    pendingBytes: 0,
    full: Deferred.unsafeMake<void>(FiberId.none),
    resume: () => {
      // Still over the mark (more arrived while the batch was handed on): stay paused, and the
      // completed `full` makes the flusher hand it on at once.
      if (!paused || started.pendingBytes >= pendingHighWater) return
      paused = false
      started.full = Deferred.unsafeMake<void>(FiberId.none)
      child.stdout!.resume()
      child.stderr!.resume()
    },
    exited,
    pipesClosed: Promise.all([closed(child.stdout!), closed(child.stderr!)]).then(() => undefined)
  }
  const onData = (text: string) => {
    started.output.add(text)
    started.pending.push(text)
    started.pendingBytes += text.length
    if (!paused && started.pendingBytes >= pendingHighWater) {
      paused = true
      child.stdout!.pause()
      child.stderr!.pause()
      Deferred.unsafeDone(started.full, Exit.void)
    }
  }
  // A decoder per stream: a character split across two reads is joined, not turned into U+FFFD.
  child.stdout!.setEncoding("utf8").on("data", onData)
  child.stderr!.setEncoding("utf8").on("data", onData)
  return started
}
