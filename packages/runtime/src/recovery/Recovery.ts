import type { InstanceId, Part, RecoveryReport, SessionId } from "@vigil/domain"
import { isPartTerminal, OrphanedByCrash, PartId } from "@vigil/domain"
import { PartRepo, SessionRepo } from "@vigil/store"
import { SqlClient } from "@effect/sql"
import { Clock, Effect, Metric, Option } from "effect"
import { Events } from "../events/Events.js"
import { InstanceLease } from "./InstanceLease.js"
import { Liveness } from "./Liveness.js"
import * as Metrics from "../Metrics.js"
import { Tools, toolKinds } from "../agent/Tools.js"
import { onRefusal } from "../supervision/PendingWrites.js"
import { endProcessesOf, ProcessControl } from "../supervision/ProcessControl.js"

/**
 * The recovery of dead owners' work. Ends what dead owners left: their pending/running parts become `OrphanedByCrash`, their
 * busy/waiting sessions are freed, and the processes they left on this host are ended. Shared by
 * startup recovery and the watchdog. Every write is fenced on the dead owner, so a live
 * instance's work is never touched, and a completed part is never rewritten.
 */
export class Recovery extends Effect.Service<Recovery>()("vigil/Recovery", {
  effect: Effect.gen(function*() {
    const parts = yield* PartRepo
    const sessions = yield* SessionRepo
    const sql = yield* SqlClient.SqlClient
    const liveness = yield* Liveness
    const events = yield* Events
    const processes = yield* ProcessControl
    const self = yield* InstanceLease
    const owningProcesses = new Set(toolKinds(yield* Tools).owningProcesses)

    /**
     * Processes still running for parts that already ended under an owner that is now dead: a hard
     * stop abandoned with `AbortIncomplete` and cut short by a crash, or a recovery done from another
     * host, which could not signal them. Found by the marker every tool process carries (one pass
     * over /proc) and by the part cgroups left on this host (which hold those that dropped the
     * marker, and outlive a crash), so nothing is missed however long ago the part ended. A part
     * this database does not know (another deployment's, on the same host) is left alone.
     */
    const endLeftoverProcesses = Effect.fnUntraced(function*() {
      const leftovers = yield* processes.leftoverPartIds
      const ended: Array<Part> = []
      for (const id of leftovers) {
        const part = yield* parts.get(PartId.make(id))
        if (Option.isSome(part) && isPartTerminal(part.value.status) && part.value.ownerId !== self.id) ended.push(part.value)
      }
      if (ended.length === 0) return 0
      const dead = yield* liveness.deadAmong([...new Set(ended.map((part) => part.ownerId))])
      const left = ended.filter((part) => dead.has(part.ownerId))
      return yield* endProcessesOf(processes, left, (part, pids) =>
        events.record({
          type: "recovery.processes_killed",
          instanceId: self.id,
          sessionId: part.sessionId,
          partId: part.id,
          data: { pids, ownerId: part.ownerId, partStatus: part.status, leftover: true }
        }))
    })

    const recoverDeadOwners = Effect.fn("Recovery.recoverDeadOwners")(function*(
      options: { readonly dryRun?: boolean; readonly trigger: "startup" | "watchdog" | "cli" }
    ) {
      const started = yield* Clock.currentTimeMillis
      const startedReal = performance.now()
      const owners = new Set([...(yield* parts.activeOwners()), ...(yield* sessions.activeOwners())])
      const dead = [...(yield* liveness.deadAmong([...owners]))]
      // Every dead owner's parts and sessions end in one transaction: one commit writes each page
      // it changed once, where a commit per owner wrote the index pages they share again for each
      // (figure 1, ten dead owners: 7,000 WAL frames down to 790). Processes and events follow the
      // commit: nothing is signalled or told for an end that could still be rolled back. When the
      // transaction fails, each owner is ended on its own, so one that cannot be (its rows refused)
      // keeps nobody else's orphans running; it is logged and tried again by the next recovery.
      const endOwner = (ownerId: InstanceId) => {
        const reason = new OrphanedByCrash({ ownerId })
        return Effect.zip(parts.endActiveOfOwner(ownerId, reason, started), sessions.endActiveOfOwner(ownerId, reason, started))
      }
      // Each owner in a transaction of its own: its parts and its sessions end together or not at all.
      const endEachAlone = Effect.forEach(dead, ([ownerId]) =>
        sql.withTransaction(endOwner(ownerId)).pipe(onRefusal((cause) =>
          Effect.logWarning("could not end a dead owner's work; the next recovery tries again", cause).pipe(
            Effect.annotateLogs({ owner: ownerId }),
            Effect.as([[], []] as const)
          )
        )))
      const endings = options.dryRun || dead.length === 0 ? [] : yield* sql.withTransaction(Effect.forEach(dead, ([ownerId]) => endOwner(ownerId))).pipe(
        onRefusal((cause) =>
          Effect.logWarning("the recovery's one transaction failed: each dead owner is ended on its own", cause).pipe(
            Effect.zipRight(endEachAlone)
          )
        )
      )
      const partIds: Array<PartId> = []
      const sessionIds: Array<SessionId> = []
      let orphanedParts = 0
      let sessionsFreed = 0
      let processesKilled = 0
      for (const [index, [ownerId, { cause, instance }]] of dead.entries()) {
        const reason = new OrphanedByCrash({ ownerId })
        if (options.dryRun) {
          const active = yield* parts.activeOfOwner(ownerId)
          orphanedParts += active.length
          partIds.push(...active.slice(0, 100 - partIds.length).map((part) => part.id))
          continue
        }
        const [ended, freed] = endings[index]!
        orphanedParts += ended.length
        sessionsFreed += freed.length
        partIds.push(...ended.slice(0, Math.max(0, 100 - partIds.length)).map((part) => part.id))
        sessionIds.push(...freed.slice(0, Math.max(0, 100 - sessionIds.length)))
        // Only this host can signal what the dead owner left here; another host's processes are
        // recorded as orphaned and ended by that host's next start.
        const onThisHost = instance === undefined || instance.host === processes.host
        // A part that recorded no pid may still have processes (its owner died between the spawn
        // and the record): those of a tool that owns processes are looked for by their marker.
        const withProcesses = ended.filter((part) => part.pid !== null || owningProcesses.has(part.tool))
        if (onThisHost) {
          processesKilled += yield* endProcessesOf(processes, withProcesses, (part, pids) =>
            events.record({
              type: "recovery.processes_killed",
              instanceId: self.id,
              sessionId: part.sessionId,
              partId: part.id,
              data: { pids, ownerId }
            }))
        }
        if (!onThisHost && withProcesses.length > 0) {
          yield* events.record({
            type: "recovery.processes_elsewhere",
            instanceId: self.id,
            data: { ownerId, host: instance?.host ?? null, partIds: withProcesses.slice(0, 100).map((part) => part.id) }
          })
        }
        if (ended.length > 0 || freed.length > 0) {
          yield* Metric.increment(Metric.tagged(Metrics.rescues, "trigger", options.trigger))
          yield* Metric.incrementBy(Metric.tagged(Metrics.rescuedParts, "trigger", options.trigger), ended.length)
          yield* events.record({
            type: `${options.trigger === "watchdog" ? "watchdog" : "recovery"}.orphans_rescued`,
            instanceId: self.id,
            reason,
            data: {
              ownerId,
              cause,
              host: instance?.host ?? null,
              parts: ended.length,
              sessions: freed.length,
              partIds: ended.slice(0, 100).map((part) => part.id)
            }
          })
        }
      }
      if (options.trigger !== "watchdog" && !options.dryRun) {
        processesKilled += yield* endLeftoverProcesses()
        const removed = yield* processes.removeStaleGroups
        if (removed > 0) {
          yield* Effect.logInfo("removed stale empty process groups").pipe(
            Effect.annotateLogs({ groups: removed, reason: "empty for over a minute: no tool will enter them" })
          )
        }
      }
      return {
        deadOwners: [...dead].map(([id, { cause }]) => ({ id, cause })),
        orphanedParts,
        sessionsFreed,
        processesKilled,
        partIds,
        sessionIds,
        tookMs: Math.round((performance.now() - startedReal) * 100) / 100,
        dryRun: options.dryRun ?? false
      } satisfies RecoveryReport
    })

    return { recoverDeadOwners } as const
  })
}) {}
