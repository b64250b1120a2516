import type { ErrorReason, PartKind, SessionId } from "@vigil/domain"
import {
  AbortIncomplete,
  describeReason,
  newPart,
  Part,
  PartId,
  SessionCancelled,
  ToolFailed,
  ToolTimeout
} from "@vigil/domain"
import { PartRepo } from "@vigil/store"
import type { AnyTool, ToolContext } from "@vigil/tools"
import { ToolError } from "@vigil/tools"
import {
  Cause,
  Clock,
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberSet,
  Metric,
  Option,
  ParseResult,
  Ref,
  Schema
} from "effect"
import { Activity } from "./Activity.js"
import { Events } from "../events/Events.js"
import { InstanceLease } from "../recovery/InstanceLease.js"
import * as Metrics from "../Metrics.js"
import type { PartOutput } from "./OutputFiles.js"
import { OutputFiles } from "./OutputFiles.js"
import { PendingWrites } from "./PendingWrites.js"
import type { StoreWriteFailed } from "./PendingWrites.js"
import { ProcessControl } from "./ProcessControl.js"
import { Settings } from "../Settings.js"
import { ToolRoot } from "../agent/Tools.js"

/** A body that ends its part with a given reason (a `task` whose child was cancelled, say). */
export class PartEnded extends Data.TaggedError("PartEnded")<{ readonly reason: ErrorReason }> {}

export type Outcome<A> =
  | { readonly _tag: "Completed"; readonly value: A; readonly output: string }
  | { readonly _tag: "Failed"; readonly reason: ErrorReason; readonly output: string | null }

export interface Execution<A> {
  readonly sessionId: SessionId
  readonly kind: Extract<PartKind, "tool" | "model">
  readonly name: string
  readonly input: unknown
  readonly callId?: string | null
  /** The deadline; `None` only when the configured timeout is off and the call asked for none. */
  readonly timeout: Option.Option<Duration.Duration>
  readonly body: (context: ToolContext) => Effect.Effect<A, ToolError | PartEnded>
  /** The text stored as the part's output. */
  readonly render: (value: A) => string
  /** Called with the part id once the part row exists, before the body runs. */
  readonly onCreated?: (partId: PartId) => Effect.Effect<void>
}

export interface Handle<A> {
  readonly partId: PartId
  /** The part's terminal outcome, as recorded (an error written by someone else wins over a late result). */
  readonly await: Effect.Effect<Outcome<A>>
}

/**
 * One running part. How it ends is decided once, by whoever comes first: the body's own exit
 * (`"body"`: the body's fiber records it), or a stop (`"stop"`: the deadline, a cancel, or the
 * shutdown; the supervisor stops the body and records it). A plain field, not a race of fibers:
 * every claim is made synchronously inside one fiber's step, and the hot path (a body that ends
 * before its deadline) then needs no fiber but the body's and its sleeping supervisor's.
 */
interface Control {
  decided: "body" | "stop" | undefined
  stopReason: ErrorReason | undefined
  body: Fiber.RuntimeFiber<unknown, unknown> | undefined
  supervisor: Fiber.RuntimeFiber<unknown, unknown> | undefined
  readonly done: Deferred.Deferred<Outcome<unknown>>
}

const shutdownReason = new SessionCancelled({ by: "shutdown" })

/**
 * Runs every tool execution and model step as a supervised fiber:
 * - `running` (with owner and deadline) is persisted before the body starts;
 * - the body runs detached from its supervisor, so the supervisor can stop waiting for it;
 * - the deadline (`Effect.timeout` on the wait), a cancel, or the supervisor's own interruption
 *   interrupts the body and waits at most `abortGrace` for it; past that the part is still made
 *   terminal (`AbortIncomplete`), the session is freed, and the abandoned fiber is counted;
 * - the terminal state is written in `onExit` of the supervisor, with a guarded write: a result
 *   that arrives after someone else ended the part is logged as a late completion, never written.
 */
export class ToolRunner extends Effect.Service<ToolRunner>()("vigil/ToolRunner", {
  scoped: Effect.gen(function*() {
    const parts = yield* PartRepo
    const events = yield* Events
    const activity = yield* Activity
    const settings = yield* Settings
    const lease = yield* InstanceLease
    const processes = yield* ProcessControl
    const outputFiles = yield* OutputFiles
    const pending = yield* PendingWrites
    const toolRoot = yield* ToolRoot
    // Hard stops of abandoned bodies: the runner's scope waits for them (each bounded by the kill
    // grace), so even a clean shutdown leaves no process of a wedged tool behind. Made before the
    // supervisors' map, so it closes after it: supervisors interrupted at shutdown can still add.
    const abandonedStops = yield* FiberSet.make()
    const supervisors = yield* FiberSet.make()
    const controls = new Map<PartId, Control>()
    const leaked = yield* Ref.make(0)
    const grace = settings.abortGrace

    const publish = (part: Part) => events.publish({ type: "part.updated", part })

    // What a part streams is held as head and tail (plus a file with every byte once it outgrows
    // them, see OutputFiles): what a stopped part printed is stored from it, bounded whatever it printed.
    const contextFor = (part: Part, outputSoFar: PartOutput): ToolContext => ({
      partId: part.id,
      sessionId: part.sessionId,
      root: toolRoot ?? process.cwd(),
      output: (chunk) =>
        outputSoFar.add(chunk).pipe(
          Effect.zipRight(activity.touch(part.sessionId)),
          // Live to whoever follows `/event` (batched there; never waits on a reader).
          Effect.zipRight(events.delta(part.id, part.sessionId, chunk))
        ),
      fullOutput: outputSoFar.fullOutput,
      recordProcess: (proc) =>
        parts.recordProcess(part.id, proc).pipe(
          Effect.zipRight(publish(new Part({ ...part, status: "running", pid: proc.pid, pgid: proc.pgid, procStart: proc.startTime }, true))),
          // A store that refuses the record (a full disk) must not fail the tool: the process is
          // still ended by its own hard stop, and found after a crash by its marker.
          Effect.catchAllCause((cause) => Effect.logWarning("could not record a part's process", cause))
        ),
      event: (type, data) =>
        events.record({ type, instanceId: lease.id, sessionId: part.sessionId, partId: part.id, data }).pipe(Effect.asVoid)
    })

    const reasonOfBodyExit = (exit: Exit.Exit<unknown, ToolError | PartEnded>): ErrorReason => {
      if (Exit.isSuccess(exit)) throw new Error("unreachable: a success has no reason")
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure)) {
        return failure.value._tag === "PartEnded" ? failure.value.reason : new ToolFailed({ message: failure.value.message })
      }
      const defect = Cause.dieOption(exit.cause)
      if (Option.isSome(defect)) {
        return new ToolFailed({ message: `the tool crashed: ${defect.value instanceof Error ? defect.value.message : String(defect.value)}` })
      }
      return new SessionCancelled({ by: "interrupt" })
    }

    /** Interrupts the body and waits for it at most `grace`; past that the fiber is abandoned. */
    const stopBody = Effect.fnUntraced(function*(part: Part, body: Fiber.RuntimeFiber<unknown, unknown>, reason: ErrorReason) {
      // The first escalation step; the shell's TERM/KILL steps follow from its finalizer.
      // The log is best effort here: a store that refuses writes must not keep the part from ending.
      yield* events.record({ type: "part.interrupt", instanceId: lease.id, sessionId: part.sessionId, partId: part.id, reason }).pipe(
        Effect.catchAllCause((cause) => Effect.logWarning("could not log a part's interruption", cause))
      )
      yield* Fiber.interruptFork(body)
      // Interruptible: this runs in a supervisor's exit handler, and a timeout cannot give up on an
      // uninterruptible wait (it would wait for the wedged body after all).
      const finished = yield* Fiber.await(body).pipe(Effect.interruptible, Effect.timeout(grace), Effect.option)
      if (Option.isSome(finished)) return reason
      const count = yield* Ref.updateAndGet(leaked, (n) => n + 1)
      yield* Metric.increment(Metrics.leakedFibers)
      const abandoned = new AbortIncomplete({ grace: Duration.toMillis(grace), cause: describeReason(reason) })
      // The body's own finalizer (a shell's hard stop) may be what is wedged: end the part's
      // processes from here too, by its marker and recorded group, without waiting for it.
      yield* FiberSet.run(
        abandonedStops,
        parts.get(part.id).pipe(
          Effect.flatMap((current) => processes.endPartProcesses(Option.isSome(current) ? [current.value] : [part])),
          Effect.catchAllCause((cause) => Effect.logWarning("hard stop of an abandoned part failed", cause))
        )
      )
      yield* events.record({
        type: "part.abort_incomplete",
        instanceId: lease.id,
        sessionId: part.sessionId,
        partId: part.id,
        reason: abandoned,
        data: { leakedFibers: count, for: reason._tag }
      }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("could not log an incomplete abort", cause)))
      return abandoned
    })

    /**
     * The guarded terminal write, and what the part really ended as. It can fail (the store
     * refused the write: a full disk, a lost connection), and the type says so: the caller must
     * still end the part in memory and free its session.
     */
    const record = <A>(part: Part, outcome: Outcome<A>): Effect.Effect<Outcome<A>, StoreWriteFailed> =>
      pending.attempt(`the end of part ${part.id} (${part.tool})`, recordUnguarded(part, outcome))

    const recordUnguarded = Effect.fnUntraced(function*<A>(part: Part, outcome: Outcome<A>) {
      const at = yield* Clock.currentTimeMillis
      if (outcome._tag === "Completed") {
        if (yield* parts.complete(part.id, { ownerId: lease.id, output: outcome.output, at })) {
          yield* publish(new Part({ ...part, status: "completed", output: outcome.output, endedAt: at }, true))
          return outcome
        }
        const current = yield* parts.get(part.id)
        yield* events.record({
          type: "part.late_completion",
          instanceId: lease.id,
          sessionId: part.sessionId,
          partId: part.id,
          data: { output: outcome.output.slice(0, 4096), recordedStatus: Option.getOrNull(Option.map(current, (p) => p.status)) }
        })
        yield* Metric.increment(Metrics.lateCompletions)
        const reason = Option.flatMap(current, (p) => Option.fromNullable(p.error))
        return {
          _tag: "Failed",
          reason: Option.getOrElse(reason, () => new ToolFailed({ message: "the part was ended by someone else" })),
          // What is recorded, not the late output: a turn's in-memory history shows what the store has.
          output: Option.getOrNull(Option.flatMap(current, (p) => Option.fromNullable(p.output)))
        } as Outcome<A>
      }
      if (yield* parts.fail(part.id, { reason: outcome.reason, at, output: outcome.output })) {
        yield* publish(new Part({ ...part, status: "error", error: outcome.reason, output: outcome.output ?? part.output, endedAt: at }, true))
        if (outcome.reason._tag === "ToolTimeout") {
          yield* events.record({ type: "part.timeout", instanceId: lease.id, sessionId: part.sessionId, partId: part.id, reason: outcome.reason })
          yield* Metric.increment(Metrics.timeouts)
        }
        return outcome
      }
      // Someone else (the watchdog, a rescue) ended it first: theirs is the recorded reason.
      const current = yield* parts.get(part.id)
      const recorded = Option.flatMap(current, (p) => Option.fromNullable(p.error))
      return Option.isSome(recorded)
        ? { ...outcome, reason: recorded.value, output: Option.getOrNull(Option.flatMap(current, (p) => Option.fromNullable(p.output))) }
        : outcome
    })

    /**
     * Records how the part ended, frees its session's turn for it, and wakes whoever awaits it.
     * When the store refuses the write, the outcome is held and retried (`PendingWrites`) and the
     * part still ends here, at once: its turn goes on with the outcome as it happened, instead of
     * the part staying `running` and its session `busy` until the idle monitor gives up on it.
     * Whatever fails, `done` completes: nobody waits forever on a part whose end was decided.
     */
    const finish = <A>(part: Part, control: Control, outcome: Outcome<A>, output: PartOutput) =>
      Effect.gen(function*() {
        const recorded = yield* record(part, outcome).pipe(
          Effect.ensuring(output.close),
          Effect.catchTag("StoreWriteFailed", (error) =>
            pending.hold({
              key: `part:${part.id}`,
              what: `the end of part ${part.id} (${part.tool}, ${outcome._tag === "Completed" ? "completed" : outcome.reason._tag})`,
              sessionId: part.sessionId,
              partId: part.id,
              write: record(part, outcome).pipe(Effect.asVoid),
              error
            }).pipe(Effect.as(outcome))
          )
        )
        yield* activity.touch(part.sessionId, { force: true }).pipe(
          Effect.catchAllCause((cause) => Effect.logWarning("could not record a part's end as activity", cause))
        )
        const endedAt = yield* Clock.currentTimeMillis
        yield* Metric.update(
          Metric.tagged(Metric.tagged(Metrics.partDuration, "tool", part.tool), "outcome", recorded._tag === "Completed" ? "completed" : "error"),
          Math.max(0, endedAt - (part.startedAt ?? part.createdAt)) / 1000
        )
        yield* Deferred.succeed(control.done, recorded as Outcome<unknown>)
      }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.logError("could not record a terminal state", cause).pipe(
            Effect.zipRight(Deferred.succeed(control.done, outcome as Outcome<unknown>))
          )
        ),
        Effect.ensuring(Effect.sync(() => controls.delete(part.id)))
      )

    /**
     * The body, run detached (`forkDaemon`) so that the supervisor can stop waiting for a body
     * whose interruption never finishes (such a fiber is counted in `leaked`). When it ends first,
     * it records its own outcome and then lets its supervisor go.
     */
    const bodyOf = <A>(part: Part, execution: Execution<A>, control: Control, output: PartOutput) =>
      execution.body(contextFor(part, output)).pipe(
        Effect.onExit((exit) =>
          Effect.suspend(() => {
            if (control.decided !== undefined) return Effect.void
            control.decided = "body"
            const outcome: Outcome<A> = Exit.isSuccess(exit)
              ? { _tag: "Completed", value: exit.value, output: execution.render(exit.value) }
              : { _tag: "Failed", reason: reasonOfBodyExit(exit), output: output.text() }
            return finish(part, control, outcome, output).pipe(
              Effect.zipRight(Effect.fiberIdWith((self) =>
                Effect.sync(() => control.supervisor?.unsafeInterruptAsFork(self))
              ))
            )
          })
        )
      )

    /**
     * The supervisor: sleeps until the deadline (on the Effect clock, so TestClock drives it). A
     * cancel or the shutdown interrupts it; the body's own end interrupts it too, after recording.
     * Whatever stopped it, its exit handler decides (if nobody has yet) and, for a stop, interrupts
     * the body and waits at most `abortGrace` for it before recording.
     */
    const supervisorOf = <A>(part: Part, execution: Execution<A>, control: Control, output: PartOutput) =>
      Effect.suspend(() =>
        control.decided !== undefined
          ? Effect.void
          : Option.isSome(execution.timeout)
          ? Effect.sleep(execution.timeout.value)
          : Effect.never
      ).pipe(
        Effect.onExit((exit) =>
          Effect.suspend(() => {
            // The body records its own end in its exit handler: its fiber is done when that is.
            if (control.decided === "body") return Fiber.await(control.body!).pipe(Effect.asVoid)
            let reason: ErrorReason
            if (control.decided === "stop") reason = control.stopReason!
            else {
              control.decided = "stop"
              reason = Exit.isSuccess(exit)
                ? new ToolTimeout({ timeout: Duration.toMillis(Option.getOrThrow(execution.timeout)) })
                : Exit.isInterrupted(exit)
                ? shutdownReason // The supervisor itself was interrupted: the body still gets its grace.
                : new ToolFailed({ message: `supervisor failed: ${Cause.pretty(exit.cause)}` })
            }
            return stopBody(part, control.body!, reason).pipe(
              Effect.flatMap((ended) =>
                finish(part, control, { _tag: "Failed", reason: ended, output: output.text() }, output)
              ),
              Effect.catchAllCause((cause) =>
                Effect.logError("could not end a stopped part", cause).pipe(
                  // Still decided: whoever awaits the part hears how it ended.
                  Effect.zipRight(Deferred.succeed(control.done, { _tag: "Failed", reason, output: output.text() })),
                  Effect.zipRight(Effect.sync(() => controls.delete(part.id)))
                )
              ),
              // Only a stop logs here, so only a stop pays for the annotations.
              Effect.annotateLogs({ part: part.id, tool: part.tool })
            )
          })
        )
      )

    /**
     * Creates the part, persists `running` (with owner and deadline, before the body starts), and
     * starts the body and its supervisor. A call with `onCreated` gets the part id between a
     * `pending` row and the `running` one; without it the row is written `running` at once.
     */
    const execute = Effect.fnUntraced(function*<A>(execution: Execution<A>) {
      const now = yield* Clock.currentTimeMillis
      const deadlineAt = Option.isSome(execution.timeout) ? now + Duration.toMillis(execution.timeout.value) : null
      const fields = {
        sessionId: execution.sessionId,
        kind: execution.kind,
        tool: execution.name,
        input: execution.input,
        callId: execution.callId ?? null,
        createdAt: now,
        ownerId: lease.id
      }
      let running: Part
      if (execution.onCreated) {
        const pending = newPart({ ...fields, status: "pending" })
        yield* parts.insert(pending)
        yield* execution.onCreated(pending.id)
        yield* parts.start(pending.id, { ownerId: lease.id, at: now, deadlineAt })
        running = new Part({ ...pending, status: "running", startedAt: now, deadlineAt }, true)
      } else {
        running = newPart({ ...fields, status: "running", startedAt: now, deadlineAt })
        yield* parts.insert(running)
      }
      yield* publish(running)
      yield* activity.touch(execution.sessionId, { force: true })
      const control: Control = {
        decided: undefined,
        stopReason: undefined,
        body: undefined,
        supervisor: undefined,
        done: yield* Deferred.make<Outcome<unknown>>()
      }
      controls.set(running.id, control)
      const output = outputFiles.track(running.id)
      control.body = yield* Effect.forkDaemon(
        bodyOf(running, execution, control, output).pipe(Effect.annotateLogs({ part: running.id, tool: running.tool }))
      )
      control.supervisor = yield* FiberSet.run(supervisors, supervisorOf(running, execution, control, output))
      return { partId: running.id, await: Deferred.await(control.done) as Effect.Effect<Outcome<A>> } satisfies Handle<A>
    })

    /** The deadline a tool call gets: its own timeout, capped by the configured one for its kind. */
    const deadlineFor = (tool: AnyTool, input: unknown, requested: Option.Option<Duration.Duration>) => {
      const configured = (tool.waitsOn ?? "nothing") === "nothing" ? settings.toolTimeout : settings.taskTimeout
      const own = Option.orElse(Option.fromNullable(tool.timeoutOf?.(input)), () => requested)
      return Option.match(own, {
        onNone: () => configured,
        onSome: (d) => Option.some(Option.match(configured, { onNone: () => d, onSome: (cap) => Duration.min(d, cap) }))
      })
    }

    /**
     * Runs one tool call. The input is decoded by the tool's schema before anything runs; a bad
     * input still makes a part, ended `ToolFailed` with the decoder's message.
     */
    const runTool = Effect.fnUntraced(function*(options: {
      readonly sessionId: SessionId
      readonly tool: AnyTool
      readonly input: unknown
      readonly callId?: string | null
      readonly timeout?: Duration.Duration
    }) {
      const decoded = Schema.decodeUnknownEither(options.tool.input)(options.input)
      const timeout = decoded._tag === "Right"
        ? deadlineFor(options.tool, decoded.right, Option.fromNullable(options.timeout))
        : Option.some(Duration.seconds(1))
      return yield* execute({
        sessionId: options.sessionId,
        kind: "tool",
        name: options.tool.name,
        input: options.input,
        callId: options.callId ?? null,
        timeout,
        render: (output: string) => output,
        body: (context) =>
          decoded._tag === "Left"
            ? Effect.fail(new ToolError({ message: `invalid input for ${options.tool.name}: ${ParseResult.TreeFormatter.formatErrorSync(decoded.left)}` }))
            : options.tool.run(decoded.right, context)
      })
    })

    /**
     * Ends a part this instance runs with `reason`, and returns once it is terminal (at most the
     * abort grace later). False when this instance has no fiber for it.
     */
    const cancel = Effect.fn("ToolRunner.cancel")(function*(partId: PartId, reason: ErrorReason) {
      const control = controls.get(partId)
      if (control === undefined) return false
      if (control.decided === undefined) {
        control.decided = "stop"
        control.stopReason = reason
        const supervisor = control.supervisor
        if (supervisor !== undefined) yield* Effect.fiberIdWith((self) => Effect.sync(() => supervisor.unsafeInterruptAsFork(self)))
      }
      yield* Deferred.await(control.done)
      return true
    })

    return {
      execute,
      runTool,
      cancel,
      isRunningHere: (partId: PartId) => Effect.sync(() => controls.has(partId)),
      running: Effect.sync(() => [...controls.keys()].map((id) => PartId.make(id))),
      leakedFibers: Ref.get(leaked)
    } as const
  })
}) {}
