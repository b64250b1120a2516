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

/** What a supervisor starts for its part: the body's fiber and the output it streams into. */
interface Started<A> {
  readonly body: Fiber.RuntimeFiber<A, ToolError | PartEnded>
  readonly output: PartOutput
}

/** One running part, as `cancel` finds it. */
interface Control {
  readonly verdict: Verdict<Ending>
  /** Set by the supervisor itself as it starts, so a cancel that claims before that finds none to interrupt. */
  supervisor: Fiber.RuntimeFiber<unknown, unknown> | undefined
  readonly done: OneShot<Outcome<unknown>>
}

const bodyEnded: Ending = "body"
const shutdownReason = new SessionCancelled({ by: "shutdown" })

/**
 * Runs every tool execution and model step as a supervised fiber (one per part, in the runner's
 * `FiberSet`), shaped as a bracket over the part's body:
 * - `running` (with owner and deadline) is persisted before the body starts;
 * - the body runs detached (`forkDaemon`), so its supervisor can stop waiting for it;
 * - acquire: the supervisor takes charge of it (registers itself for `cancel`);
 * - use: it awaits the body under the deadline (`Effect.timeoutTo`, `ToolTimeout` past it), unless
 *   the body has already ended; a cancel or the shutdown interrupts that wait;
 * - release (uninterruptible, whatever ended the wait): for a stop, the body is interrupted and
 *   given at most `abortGrace` (past that the part is still made terminal, `AbortIncomplete`, and
 *   the abandoned fiber is counted and its processes ended); then the guarded terminal write (a
 *   result that arrives after someone else ended the part is logged as a late completion, never
 *   written), the output closed, and whoever awaits the part told how it ended, always.
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
      record(part, outcome).pipe(
        Effect.ensuring(output.close),
        Effect.catchTag("StoreWriteFailed", (error) =>
          pending.hold({
            key: `part:${part.id}`,
            what: `the end of part ${part.id} (${part.tool}, ${outcome._tag === "Completed" ? "completed" : outcome.reason._tag})`,
            sessionId: part.sessionId,
            partId: part.id,
            write: record(part, outcome).pipe(Effect.asVoid),
            error
          }).pipe(Effect.as(outcome), Effect.annotateLogs({ part: part.id, tool: part.tool }))
        ),
        Effect.tap(() =>
          activity.touch(part.sessionId).pipe(
            Effect.catchAllCause((cause) => Effect.logWarning("could not record a part's end as activity", cause))
          )
        ),
        Effect.tap((recorded) =>
          Effect.clockWith((clock) =>
            Metric.update(
              Metrics.partDurationOf(part.tool, recorded._tag === "Completed" ? "completed" : "error"),
              Math.max(0, clock.unsafeCurrentTimeMillis() - (part.startedAt ?? part.createdAt)) / 1000
            )
          )
        ),
        Effect.catchAllCause((cause) =>
          Effect.logError("could not record a terminal state", cause).pipe(
            Effect.annotateLogs({ part: part.id, tool: part.tool }),
            Effect.as(outcome)
          )
        ),
        Effect.flatMap((recorded) => control.done.tell(recorded as Outcome<unknown>))
      )

    /**
     * The body, in a fiber of its own. Its exit claims the verdict in the same step, so a stop that
     * comes later finds the part decided. Its logs carry the part and the tool: set once for the
     * fiber, which ends with the body (so nothing is restored after it, as `annotateLogs` would).
     */
    const bodyOf = <A>(part: Part, execution: Execution<A>, control: Control, output: PartOutput) =>
      Effect.zipRight(
        FiberRef.update(FiberRef.currentLogAnnotations, (annotations) => HashMap.set(HashMap.set(annotations, "part", part.id), "tool", part.tool)),
        execution.body(contextFor(part, output)).pipe(Effect.ensuring(Effect.sync(() => control.verdict.claim(bodyEnded))))
      )

    /** What ends the supervisor's wait: the body's end, or the deadline (on the Effect clock, so TestClock drives it). */
    const awaitBody = (body: Fiber.RuntimeFiber<unknown, ToolError | PartEnded>, timeout: Option.Option<Duration.Duration>) =>
      Option.isNone(timeout)
        ? Effect.as(Fiber.await(body), bodyEnded)
        : Fiber.await(body).pipe(Effect.timeoutTo({
          duration: timeout.value,
          onSuccess: (): Ending => bodyEnded,
          onTimeout: (): Ending => new ToolTimeout({ timeout: Duration.toMillis(timeout.value) })
        }))

    /** The supervisor's claim: what ended its wait, or, when something stopped the wait itself, the shutdown or a defect. */
    const endingOf = (waited: Exit.Exit<Ending>): Ending => {
      if (Exit.isSuccess(waited)) return waited.value
      // Interrupted: by a cancel (whose reason was claimed first) or by the runner's scope closing.
      if (Exit.isInterrupted(waited)) return shutdownReason
      return new ToolFailed({ message: `supervisor failed: ${Cause.pretty(waited.cause)}` })
    }

    /**
     * The release: whatever ended the wait claims the verdict unless someone did already, and the
     * verdict decides: the body's outcome, or a stop (the body interrupted, and given the grace).
     * Uninterruptible, so a shutdown that interrupts the wait still runs all of it.
     */
    const end = <A>(
      part: Part,
      execution: Execution<A>,
      control: Control,
      started: Started<A>,
      waited: Exit.Exit<Ending>
    ) => {
      const { body, output } = started
      const ending = control.verdict.claim(endingOf(waited))
      let decided: Outcome<A> | undefined
      // The body claimed as it exited, so its exit is there or about to be (read at once when it
      // is: a quick tool's has been since before its supervisor ran); a stop waits at most the grace for it.
      const bodyOutcome = (exit: Exit.Exit<A, ToolError | PartEnded>): Outcome<A> =>
        Exit.isSuccess(exit)
          ? { _tag: "Completed", value: exit.value, output: execution.render(exit.value) }
          : { _tag: "Failed", reason: reasonOfBodyExit(exit), output: output.text() }
      const bodyExit = ending === "body" ? body.unsafePoll() : null
      const outcome: Effect.Effect<Outcome<A>> = ending === "body"
        ? bodyExit !== null ? Effect.sync(() => bodyOutcome(bodyExit)) : Effect.map(Fiber.await(body), bodyOutcome)
        : Effect.map(stopBody(part, body, ending), (ended) => ({ _tag: "Failed", reason: ended, output: output.text() }))
      const ended = outcome.pipe(
        Effect.flatMap((outcome) => {
          decided = outcome
          return finish(part, control, outcome, output)
        }),
        Effect.catchAllCause((cause) => Effect.logError("could not end a part", cause).pipe(Effect.annotateLogs({ part: part.id, tool: part.tool }))),
        // Whatever failed above, the end is decided: whoever awaits the part hears how it ended
        // (a no-op once `finish` told them).
        Effect.ensuring(Effect.sync(() => {
          controls.delete(part.id)
          control.done.unsafeTell(
            decided ?? { _tag: "Failed", reason: ending === "body" ? new ToolFailed({ message: "the part's end could not be recorded" }) : ending, output: output.text() }
          )
        }))
      )
      // Only a stop logs on its way, so only a stop pays for the annotations.
      return ending === "body" ? ended : Effect.annotateLogs(ended, { part: part.id, tool: part.tool })
    }

    /**
     * A part's supervisor, a bracket over its running body. It registers itself for `cancel` as it
     * starts, so a cancel either finds it to interrupt or has claimed before it starts. A body that
     * has already ended by then (a quick tool) is not waited for: no deadline fibers for it at all.
     */
    const supervise = <A>(part: Part, execution: Execution<A>, control: Control, started: Started<A>) =>
      Effect.acquireUseRelease(
        Effect.withFiberRuntime<Started<A>>((self) => {
          control.supervisor = self
          return Effect.succeed(started)
        }),
        ({ body }) => (control.verdict.claimed ? Effect.succeed(bodyEnded) : Effect.interruptible(awaitBody(body, execution.timeout))),
        (started, waited) => end(part, execution, control, started, waited)
      )

    /** Creates the part, persists `running` (with owner and deadline, before the body starts), and starts its body and supervisor. */
    const execute = Effect.fnUntraced(function*<A>(execution: Execution<A>) {
      const now = yield* Clock.currentTimeMillis
      const running = newPart({
        sessionId: execution.sessionId,
        kind: execution.kind,
        tool: execution.name,
        input: execution.input,
        callId: execution.callId ?? null,
        status: "running",
        createdAt: now,
        startedAt: now,
        deadlineAt: Option.isSome(execution.timeout) ? now + Duration.toMillis(execution.timeout.value) : null,
        ownerId: lease.id
      })
      yield* parts.insert(running)
      yield* publish(running)
      yield* activity.touch(execution.sessionId)
      const control: Control = { verdict: new Verdict<Ending>(), supervisor: undefined, done: new OneShot<Outcome<unknown>>() }
      const output = outputFiles.track(running.id)
      // One uninterruptible step: a part `cancel` can find always has a body and a supervisor that
      // will end it, and the bracket runs whole even when interrupted at once (a set already closed
      // by the shutdown interrupts what it is given). The body, forked from here, is said
      // interruptible: a stop must reach it.
      yield* Effect.uninterruptible(Effect.suspend(() => {
        controls.set(running.id, control)
        return Effect.forkDaemon(Effect.interruptible(bodyOf(running, execution, control, output))).pipe(
          Effect.flatMap((body) => Effect.forkDaemon(supervise(running, execution, control, { body, output }))),
          Effect.tap((supervisor) => Effect.sync(() => FiberSet.unsafeAdd(supervisors, supervisor)))
        )
      }))
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
      const supervisor = control.supervisor
      if (control.verdict.claim(reason) === reason && supervisor !== undefined) {
        yield* Effect.fiberIdWith((self) => Effect.sync(() => supervisor.unsafeInterruptAsFork(self)))
      }
      yield* control.done.await
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
