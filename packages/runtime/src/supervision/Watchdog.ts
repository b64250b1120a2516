import type { Part, Session } from "@vigil/domain"
import { isSessionActive, WatchdogStuck } from "@vigil/domain"
import type { SessionLink } from "@vigil/store"
import { PartRepo, SessionRepo } from "@vigil/store"
import { Clock, Duration, Effect, Layer, Metric, Option, Ref, Schedule } from "effect"
import { Activity } from "./Activity.js"
import { Events } from "../events/Events.js"
import { InstanceLease } from "../recovery/InstanceLease.js"
import * as Metrics from "../Metrics.js"
import { endProcessesOf, ProcessControl } from "./ProcessControl.js"
import { Recovery } from "../recovery/Recovery.js"
import { SessionService } from "../agent/SessionService.js"
import { Settings } from "../Settings.js"
import { toolKinds } from "../agent/Tools.js"
import { ToolRunner } from "./ToolRunner.js"

export interface ScanSummary {
  readonly at: number
  readonly tookMs: number
  readonly orphansRescued: number
  readonly stuckParts: number
}

/** How long a `task` part may stay running after its child session has ended. */
export const taskEndGrace = Duration.seconds(5)

/**
 * What the watchdog decides for one of this instance's running parts: a reason to force-error it
 * (it is a stuck leaf), or nothing. Pure, so the rules can be read (and tested) in one place.
 *
 * - a leaf (a part whose tool waits on no child session) is stuck once it runs past its own
 *   deadline plus the abort grace plus one more grace: by then the runner should long have ended
 *   it, so something is wedged;
 * - a `task` (its tool waits on a child session, `waitsOn: "child-session"`) is never stuck while
 *   its child's subtree shows activity; it is stuck when its child ended but it still runs after
 *   `taskEndGrace`, or when the whole subtree was silent beyond `task_timeout`.
 */
export const stuckReason = (
  part: Pick<Part, "status" | "startedAt" | "deadlineAt"> & { readonly waitsOnChild: boolean },
  options: {
    readonly now: number
    readonly abortGrace: Duration.Duration
    readonly taskTimeout: Option.Option<Duration.Duration>
    readonly child: Pick<Session, "status" | "lastActivityAt"> | undefined
    /** The latest activity anywhere in the child's subtree (sessions and their running parts). */
    readonly subtreeActivityAt: number | undefined
  }
): WatchdogStuck | undefined => {
  if (part.status !== "running" || part.startedAt === null) return undefined
  const runningFor = options.now - part.startedAt
  if (!part.waitsOnChild) {
    if (part.deadlineAt === null) return undefined
    const threshold = part.deadlineAt - part.startedAt + 2 * Duration.toMillis(options.abortGrace)
    return runningFor > threshold ? new WatchdogStuck({ runningFor, threshold }) : undefined
  }
  if (options.child !== undefined && !isSessionActive(options.child.status)) {
    const endedFor = options.now - options.child.lastActivityAt
    const threshold = Duration.toMillis(taskEndGrace)
    return endedFor > threshold ? new WatchdogStuck({ runningFor, threshold }) : undefined
  }
  if (Option.isNone(options.taskTimeout)) return undefined
  const threshold = Duration.toMillis(options.taskTimeout.value)
  const silentFor = options.now - Math.max(part.startedAt, options.subtreeActivityAt ?? part.startedAt)
  return silentFor > threshold ? new WatchdogStuck({ runningFor, threshold }) : undefined
}

/**
 * The runtime safety net. Every `watchdog_interval` it recovers dead owners' work (`Recovery`,
 * shared with startup recovery) and force-errors this instance's stuck leaves: their fiber is stopped with
 * the abort that always lands, their process tree is hard-stopped, their session is cancelled
 * (children first) and the error travels up. The loop never dies: a failed scan is logged and
 * the next one runs.
 */
export class Watchdog extends Effect.Service<Watchdog>()("vigil/Watchdog", {
  effect: Effect.gen(function*() {
    const settings = yield* Settings
    const parts = yield* PartRepo
    const sessions = yield* SessionRepo
    const runner = yield* ToolRunner
    const sessionService = yield* SessionService
    const recovery = yield* Recovery
    const events = yield* Events
    const processes = yield* ProcessControl
    const lease = yield* InstanceLease
    const activity = yield* Activity
    const { waitingOnChild } = toolKinds(sessionService.tools())
    const lastScan = yield* Ref.make<Option.Option<ScanSummary>>(Option.none())

    /**
     * Latest activity in each session's subtree, from the active sessions and running parts.
     * Iterative and memoized: each session is visited once per scan however deep the tree (a
     * recursive walk overflowed the stack on a 12,000-deep chain, and every scan failed), and a
     * cycle, which the data should never hold, still ends.
     */
    const subtreeActivity = (active: ReadonlyArray<SessionLink>, partsActivity: ReadonlyMap<string, number>) => {
      const latest = new Map<string, number>(partsActivity)
      for (const session of active) {
        latest.set(session.id, Math.max(latest.get(session.id) ?? 0, activity.latest(session.id, session.lastActivityAt)))
      }
      const byParent = new Map<string, Array<string>>()
      for (const session of active) {
        if (session.parentId === null) continue
        const siblings = byParent.get(session.parentId)
        if (siblings === undefined) byParent.set(session.parentId, [session.id])
        else siblings.push(session.id)
      }
      const memo = new Map<string, number | undefined>()
      return (root: string): number | undefined => {
        if (memo.has(root)) return memo.get(root)
        // Depth-first order from the root (children after their parent), then folded backwards,
        // so each child's answer is ready before its parent's.
        const order: Array<string> = []
        const seen = new Set<string>([root])
        const stack = [root]
        while (stack.length > 0) {
          const id = stack.pop()!
          order.push(id)
          for (const child of byParent.get(id) ?? []) {
            if (seen.has(child) || memo.has(child)) continue
            seen.add(child)
            stack.push(child)
          }
        }
        for (let i = order.length - 1; i >= 0; i--) {
          const id = order[i]!
          let best = latest.get(id)
          for (const child of byParent.get(id) ?? []) {
            const childBest = memo.get(child)
            if (childBest !== undefined) best = Math.max(best ?? 0, childBest)
          }
          memo.set(id, best)
        }
        return memo.get(root)
      }
    }

    const forceError = Effect.fnUntraced(function*(part: Part, reason: WatchdogStuck) {
      yield* events.record({
        type: "watchdog.stuck_part",
        instanceId: lease.id,
        sessionId: part.sessionId,
        partId: part.id,
        reason,
        data: { tool: part.tool, runningFor: reason.runningFor, threshold: reason.threshold }
      })
      yield* Metric.increment(Metric.tagged(Metrics.watchdogActions, "action", "stuck_part"))
      const at = yield* Clock.currentTimeMillis
      // Written first, so a result the wedged body may still produce can only be a late completion.
      yield* parts.fail(part.id, { reason, at, ownerId: lease.id })
      yield* runner.cancel(part.id, reason)
      yield* endProcessesOf(processes, [part], (part, pids) =>
        events.record({
          type: "watchdog.processes_killed",
          instanceId: lease.id,
          sessionId: part.sessionId,
          partId: part.id,
          data: { pids }
        }).pipe(Effect.zipRight(Metric.increment(Metric.tagged(Metrics.watchdogActions, "action", "processes_killed")))))
      yield* sessionService.abort(part.sessionId, reason).pipe(Effect.ignore)
    })

    const scan = Effect.gen(function*() {
      const started = performance.now()
      const at = yield* Clock.currentTimeMillis
      const recovered = yield* recovery.recoverDeadOwners({ trigger: "watchdog" })
      // Only this instance's parts that could be stuck are read: the leaves past their deadline
      // plus twice the grace (the leaf rule below, as a bound), whole; and, narrow, the tasks that
      // could break the silence rule or whose child has ended (a tree of 100,000 healthy tasks is
      // then not read at all). `stuckReason` still decides each candidate.
      const leaves = yield* parts.stuckCandidates(lease.id, {
        // Clamped: a grace of centuries must still bind as a BIGINT (and then matches no leaf).
        deadlineBefore: Math.max(Number.MIN_SAFE_INTEGER, Math.ceil(at - 2 * Duration.toMillis(settings.abortGrace))),
        waitingTools: waitingOnChild,
        leavesOnly: true
      })
      const tasks = yield* parts.taskCandidates(lease.id, {
        taskStartedBefore: Option.match(settings.taskTimeout, {
          onNone: () => Number.MIN_SAFE_INTEGER,
          onSome: (timeout) => Math.max(Number.MIN_SAFE_INTEGER, Math.floor(at - Duration.toMillis(timeout)))
        }),
        waitingTools: waitingOnChild
      })
      let stuck = 0
      const ruleOptions = { now: at, abortGrace: settings.abortGrace, taskTimeout: settings.taskTimeout }
      for (const part of leaves) {
        const reason = stuckReason({ ...part, waitsOnChild: false }, { ...ruleOptions, child: undefined, subtreeActivityAt: undefined })
        if (reason === undefined) continue
        stuck++
        yield* forceError(part, reason)
      }
      if (tasks.length > 0) {
        // Only a task with a child looks at a subtree's activity: without one, no session or other part is read.
        const anyChild = tasks.some((task) => task.childSessionId !== null)
        const active = anyChild ? yield* sessions.activeLinks() : []
        const partsActivity = anyChild ? yield* parts.activeActivity() : new Map<string, number>()
        const activityOf = subtreeActivity(active, partsActivity)
        // The children: the active ones are already read; the others (ended) in a few batched reads.
        const children = new Map<string, Pick<Session, "status" | "lastActivityAt">>()
        for (const session of active) children.set(session.id, session)
        const missing = tasks.flatMap((task) =>
          task.childSessionId === null || children.has(task.childSessionId) ? [] : [task.childSessionId]
        )
        for (const child of yield* sessions.getMany(missing)) children.set(child.id, child)
        for (const task of tasks) {
          const reason = stuckReason({ status: "running", waitsOnChild: true, startedAt: task.startedAt, deadlineAt: null }, {
            ...ruleOptions,
            child: task.childSessionId === null ? undefined : children.get(task.childSessionId),
            subtreeActivityAt: task.childSessionId === null ? undefined : activityOf(task.childSessionId)
          })
          if (reason === undefined) continue
          const part = yield* parts.get(task.id)
          if (Option.isNone(part) || part.value.status !== "running") continue
          stuck++
          yield* forceError(part.value, reason)
        }
      }
      const summary: ScanSummary = {
        at,
        tookMs: Math.round((performance.now() - started) * 100) / 100,
        orphansRescued: recovered.orphanedParts,
        stuckParts: stuck
      }
      yield* Ref.set(lastScan, Option.some(summary))
      return summary
    }).pipe(Effect.withSpan("Watchdog.scan"))

    return { scan, lastScan: Ref.get(lastScan) } as const
  })
}) {}

/** The watchdog's loop, for the life of the layer; off when `watchdog_interval` is off. */
export const WatchdogLoop = Layer.scopedDiscard(
  Effect.gen(function*() {
    const settings = yield* Settings
    const watchdog = yield* Watchdog
    if (Option.isNone(settings.watchdogInterval)) {
      yield* Effect.logInfo("watchdog off (experimental.watchdog_interval is off)")
      return
    }
    yield* watchdog.scan.pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("watchdog scan failed; the next one runs on schedule", cause)),
      Effect.repeat(Schedule.spaced(settings.watchdogInterval.value)),
      Effect.annotateLogs({ module: "Watchdog" }),
      Effect.forkScoped
    )
  })
)
