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
  Context,
  Data,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberRef,
  FiberSet,
  HashMap,
  Metric,
  Option,
  ParseResult,
  Ref,
  Schema
} from "effect"
import { Activity } from "./Activity.js"
import type { Deadline } from "./Deadlines.js"
import * as Deadlines from "./Deadlines.js"
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
import { OneShot } from "./OneShot.js"
import { Verdict } from "./Verdict.js"

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
}

export interface Handle<A> {
  readonly partId: PartId
  /** The part's terminal outcome, as recorded (an error written by someone else wins over a late result). */
  readonly await: Effect.Effect<Outcome<A>>
}

/**
 * How a part ends: by the body's own exit (`"body"`), or by a stop with its reason (the deadline,
 * a cancel, the shutdown). Whoever claims it first decides; the hot path (a body that ends before
 * its deadline) is one claim.
 */
type Ending = "body" | ErrorReason

/** One running part: what its fiber, its deadline, a stop and `cancel` share. */
interface Control {
  readonly part: Part
  readonly output: PartOutput
  readonly verdict: Verdict<Ending>
  /**
   * The part's fiber (its body, then its end when the body decides it). Set by the fiber itself as
   * it starts, so a stop claimed before that finds none to interrupt, and the fiber, finding the
   * stop claimed, ends the part without running the body.
   */
  fiber: Fiber.RuntimeFiber<void> | undefined
  /** The deadline's milliseconds (for its `ToolTimeout`), and its entry while it waits. */
  readonly timeoutMs: number | null
  deadline: Deadline<Control> | undefined
  readonly done: OneShot<Outcome<unknown>>
}

const bodyEnded: Ending = "body"
const shutdownReason = new SessionCancelled({ by: "shutdown" })

/**
 * Runs every tool execution and model step as a supervised fiber, one per part:
 * - `running` (with owner and deadline) is persisted before the body starts;
 * - the part's fiber runs the body (interruptible), and when the body's exit decides the part (it
 *   ended before any stop), ends it from the same fiber: a quick tool costs one fiber;
 * - its deadline is an entry in one queue of every part's deadlines (`Deadlines`, on the Effect
 *   clock), not a fiber; a part that ends takes it out;
 * - a stop (the deadline, a cancel, the shutdown) that claims the part first is carried out by a
 *   fiber of its own, uninterruptible, as the body's may be wedged: the body interrupted and given
 *   at most `abortGrace` (past that the part is still made terminal, `AbortIncomplete`, and the
 *   abandoned fiber is counted and its processes ended);
 * - either way the guarded terminal write (a result that arrives after someone else ended the
 *   part is logged as a late completion, never written), the output closed, and whoever awaits
 *   the part told how it ended, always.
 * Whether the body's own exit or a stop ends the part is a `Verdict`, claimed once.
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
    // grace), so even a clean shutdown leaves no process of a wedged tool behind.
    const abandonedStops = yield* FiberSet.make()
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
      // Interruptible: this runs in an uninterruptible stop, and a timeout cannot give up on an
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
     * Ends the part (in a fiber whose logs carry the part and the tool): records how (`outcome`), closes its output, frees its session's turn for it,
     * and wakes whoever awaits it. When the store refuses the write, the outcome is held and
     * retried (`PendingWrites`) and the part still ends here, at once: its turn goes on with the
     * outcome as it happened, instead of the part staying `running` and its session `busy` until
     * the idle monitor gives up on it. Whatever fails, `done` completes (with `fallback` when not
     * even the outcome could be had): nobody waits forever on a part whose end was decided.
     */
    const end = (control: Control, outcome: Effect.Effect<Outcome<unknown>>, fallback: ErrorReason): Effect.Effect<void> => {
      const { part } = control
      let decided: Outcome<unknown> | undefined
      return outcome.pipe(
        Effect.flatMap((outcome) => {
          decided = outcome
          return record(part, outcome).pipe(Effect.catchTag("StoreWriteFailed", (error) => hold(part, outcome, error)))
        }),
        Effect.catchAllCause((cause) =>
          Effect.logError("could not record a terminal state", cause).pipe(
            Effect.as<Outcome<unknown>>(decided ?? { _tag: "Failed", reason: fallback, output: control.output.text() })
          )
        ),
        Effect.flatMap((recorded) => settle(control, recorded))
      )
    }

    /** A terminal write the store refused, held to be retried; the part ends now with the outcome as it happened. */
    const hold = (part: Part, outcome: Outcome<unknown>, error: StoreWriteFailed) =>
      pending.hold({
        key: `part:${part.id}`,
        what: `the end of part ${part.id} (${part.tool}, ${outcome._tag === "Completed" ? "completed" : outcome.reason._tag})`,
        sessionId: part.sessionId,
        partId: part.id,
        write: record(part, outcome).pipe(Effect.asVoid),
        error
      }).pipe(Effect.as(outcome))

    /**
     * What follows the terminal write, whatever became of it: the output closed, the session's
     * activity touched (best effort), the part forgotten (and its deadline taken out), whoever
     * awaits it told, and its duration counted: the last three in one step.
     */
    const settle = (control: Control, recorded: Outcome<unknown>) =>
      control.output.close.pipe(
        Effect.zipRight(activity.touch(control.part.sessionId)),
        Effect.catchAllCause((cause) => Effect.logWarning("could not record a part's end as activity", cause)),
        Effect.zipRight(Effect.withFiberRuntime<void>((fiber) => {
          const { part } = control
          controls.delete(part.id)
          if (control.deadline !== undefined) deadlines.remove(control.deadline)
          control.done.unsafeTell(recorded)
          const now = Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis()
          Metrics.partDurationOf(part.tool, recorded._tag === "Completed" ? "completed" : "error").unsafeUpdate(
            Math.max(0, now - (part.startedAt ?? part.createdAt)) / 1000,
            fiber.getFiberRef(FiberRef.currentMetricLabels)
          )
          return Effect.void
        }))
      )

    /**
     * A part's fiber: the body, interruptible, and, when its exit decides the part (no stop claimed
     * first), the part's end, here. Its logs carry the part and the tool: set once for the fiber,
     * which ends with the part (so nothing is restored after it, as `annotateLogs` would).
     */
    const runPart = <A>(execution: Execution<A>, control: Control) =>
      Effect.withFiberRuntime<void>((self) => {
        control.fiber = self
        const { output, part } = control
        const stopped = control.verdict.decided
        // A stop claimed before this fiber ran: there is no body to stop, only the part to end.
        if (stopped !== undefined) return stopPart(control, stopped as ErrorReason, null)
        // A tool's `run` that throws instead of returning an effect is a crash of the tool, not of its
        // part (caught here rather than by `Effect.suspend`: no step more on the hot path).
        let body: Effect.Effect<A, ToolError | PartEnded>
        try {
          body = execution.body(contextFor(part, output))
        } catch (thrown) {
          body = Effect.die(thrown)
        }
        return FiberRef.update(FiberRef.currentLogAnnotations, (annotations) => HashMap.set(HashMap.set(annotations, "part", part.id), "tool", part.tool)).pipe(
          Effect.zipRight(Effect.exit(Effect.interruptible(body))),
          Effect.flatMap((exit) => {
            // Claimed in the step after the body's exit: a stop that comes later finds the part decided.
            if (!control.verdict.win(bodyEnded)) return Effect.void
            return end(
              control,
              Effect.sync((): Outcome<unknown> =>
                Exit.isSuccess(exit)
                  ? { _tag: "Completed", value: exit.value, output: execution.render(exit.value) }
                  : { _tag: "Failed", reason: reasonOfBodyExit(exit), output: output.text() }
              ),
              new ToolFailed({ message: "the part's end could not be recorded" })
            )
          })
        )
      })

    /**
     * A stop that claimed the part: the body (when it started) interrupted and given the grace,
     * then the part ended with the reason, or `AbortIncomplete` past the grace.
     */
    const stopPart = (control: Control, reason: ErrorReason, fiber: Fiber.RuntimeFiber<void> | null) =>
      end(
        control,
        Effect.map(fiber === null ? Effect.succeed(reason) : stopBody(control.part, fiber, reason), (ended) => ({
          _tag: "Failed",
          reason: ended,
          output: control.output.text()
        })),
        reason
      ).pipe(Effect.annotateLogs({ part: control.part.id, tool: control.part.tool }))

    /**
     * Stops a part with `reason` unless its end is decided already. The stop is carried out by a
     * fiber of its own (uninterruptible, whoever asked): the part's may be wedged.
     */
    const stop = (control: Control, reason: ErrorReason): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (!control.verdict.win(reason)) return Effect.void
        const fiber = control.fiber
        // Not started yet: the fiber finds the stop claimed as it starts and ends the part itself.
        if (fiber === undefined) return Effect.void
        return Effect.asVoid(Effect.forkDaemon(Effect.uninterruptible(stopPart(control, reason, fiber))))
      })

    /** Creates the part, persists `running` (with owner and deadline, before the body starts), and starts its fiber. */
    const execute = Effect.fnUntraced(function*<A>(execution: Execution<A>) {
      const now = yield* Clock.currentTimeMillis
      const deadlineAt = Option.isSome(execution.timeout) ? now + Duration.toMillis(execution.timeout.value) : null
      const running = newPart({
        sessionId: execution.sessionId,
        kind: execution.kind,
        tool: execution.name,
        input: execution.input,
        callId: execution.callId ?? null,
        status: "running",
        createdAt: now,
        startedAt: now,
        deadlineAt,
        ownerId: lease.id
      })
      const control: Control = {
        part: running,
        output: outputFiles.track(running.id),
        verdict: new Verdict<Ending>(),
        fiber: undefined,
        timeoutMs: Option.isSome(execution.timeout) ? Duration.toMillis(execution.timeout.value) : null,
        deadline: undefined,
        done: new OneShot<Outcome<unknown>>()
      }
      // Uninterruptible from the insert to the fork: once `running` may be in the store, the part
      // has a fiber that will end it, and `cancel` finds it. (A caller interrupted while its write
      // waits for its batch's commit stops waiting, but the write may land all the same.) Nothing
      // after the insert can fail. The fiber inherits the uninterruptibility: only its body is
      // interruptible, so a stop reaches the body and never the part's end. A part started while
      // the runner shuts down is ended by the shutdown at once, its body never run.
      yield* Effect.uninterruptible(Effect.zipRight(
        parts.insert(running),
        publish(running).pipe(
          Effect.zipRight(activity.touch(execution.sessionId)),
          Effect.catchAllCause((cause) => Effect.logWarning("could not record a part's start as activity", cause)),
          Effect.zipRight(Effect.suspend(() => {
            controls.set(running.id, control)
            if (closing) control.verdict.win(shutdownReason)
            else if (deadlineAt !== null) control.deadline = deadlines.add(deadlineAt, control)
            return Effect.forkDaemon(runPart(execution, control))
          }))
        )
      ))
      return { partId: running.id, await: control.done.await as Effect.Effect<Outcome<A>> } satisfies Handle<A>
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
      yield* stop(control, reason)
      yield* control.done.await
      return true
    })

    const deadlines = yield* Deadlines.make((control: Control) => stop(control, new ToolTimeout({ timeout: control.timeoutMs ?? 0 })))
    // The shutdown: every running part stopped (`SessionCancelled` by the shutdown), and each one's
    // end awaited, so its terminal write lands before the store closes; again for any part that
    // started meanwhile (a caller whose start was under way), until none is left. Added after the
    // abandoned parts' hard stops, so it runs before them: a stop that abandons a body can still add one.
    let closing = false
    const stopAll: Effect.Effect<void> = Effect.suspend(() => {
      const running = [...controls.values()]
      if (running.length === 0) return Effect.void
      return Effect.forEach(running, (control) => stop(control, shutdownReason), { discard: true }).pipe(
        Effect.zipRight(Effect.forEach(running, (control) => control.done.await, { discard: true })),
        Effect.zipRight(stopAll)
      )
    })
    yield* Effect.addFinalizer(() => Effect.suspend(() => {
      closing = true
      return stopAll
    }))

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
