import type { Session } from "@vigil/domain"
import { IdleCancelled } from "@vigil/domain"
import { SessionRepo } from "@vigil/store"
import { Clock, Duration, Effect, Layer, Metric, Option, Schedule } from "effect"
import { Activity } from "./Activity.js"
import { Events } from "../events/Events.js"
import { InstanceLease } from "../recovery/InstanceLease.js"
import * as Metrics from "../Metrics.js"
import { SessionService } from "../agent/SessionService.js"
import { Settings } from "../Settings.js"

/**
 * The idle sessions to cancel: busy or waiting, owned here, with no activity for longer than the
 * threshold, and leaves of the active tree. A session whose `task` waits on an active child counts
 * the child's activity as its own, so only the idle leaf is cancelled; its parent's task then ends
 * with that error and the parent goes on.
 */
const idleLeaves = <S extends Pick<Session, "id" | "parentId" | "ownerId" | "lastActivityAt">>(
  active: ReadonlyArray<S>,
  options: {
    readonly now: number
    readonly threshold: number
    readonly ownerId: string
    /** A session's latest activity from its row's: the row lags what `Activity` holds by up to a second. */
    readonly latest: (session: S) => number
  }
): ReadonlyArray<{ readonly session: S; readonly reason: IdleCancelled }> => {
  const parentsOfActive = new Set(active.flatMap((session) => (session.parentId === null ? [] : [session.parentId])))
  return active.flatMap((session) => {
    if (session.ownerId !== options.ownerId || parentsOfActive.has(session.id)) return []
    const idleFor = options.now - options.latest(session)
    return idleFor > options.threshold
      ? [{ session, reason: new IdleCancelled({ idleFor, threshold: options.threshold }) }]
      : []
  })
}

/** Cancels idle busy/waiting sessions every `watchdog_interval`; off when `idle_timeout` is off. */
export class IdleMonitor extends Effect.Service<IdleMonitor>()("vigil/IdleMonitor", {
  effect: Effect.gen(function*() {
    const settings = yield* Settings
    const sessions = yield* SessionRepo
    const sessionService = yield* SessionService
    const events = yield* Events
    const lease = yield* InstanceLease
    const activity = yield* Activity

    const scan = Effect.gen(function*() {
      if (Option.isNone(settings.idleTimeout)) return 0
      const now = yield* Clock.currentTimeMillis
      // The narrow rows: a tree 100,000 deep is read in one cheap pass, and only leaves are looked at.
      const idle = idleLeaves(yield* sessions.activeLinks(), {
        now,
        threshold: Duration.toMillis(settings.idleTimeout.value),
        ownerId: lease.id,
        latest: (session) => activity.latest(session.id, session.lastActivityAt)
      })
      for (const { reason, session } of idle) {
        yield* events.record({
          type: "idle.cancelled",
          instanceId: lease.id,
          sessionId: session.id,
          reason,
          data: { status: session.status, idleFor: reason.idleFor, threshold: reason.threshold, parentId: session.parentId }
        })
        yield* Metric.increment(Metrics.idleCancels)
        yield* sessionService.abort(session.id, reason).pipe(Effect.ignore)
      }
      return idle.length
    }).pipe(Effect.withSpan("IdleMonitor.scan"))

    return { scan } as const
  })
}) {}

export const IdleMonitorLoop = Layer.scopedDiscard(
  Effect.gen(function*() {
    const settings = yield* Settings
    const monitor = yield* IdleMonitor
    if (Option.isNone(settings.watchdogInterval) || Option.isNone(settings.idleTimeout)) {
      yield* Effect.logInfo("idle monitor off")
      return
    }
    yield* monitor.scan.pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("idle scan failed; the next one runs on schedule", cause)),
      Effect.repeat(Schedule.spaced(settings.watchdogInterval.value)),
      Effect.annotateLogs({ module: "IdleMonitor" }),
      Effect.forkScoped
    )
  })
)
