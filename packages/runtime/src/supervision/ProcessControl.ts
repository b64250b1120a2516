import { Containment, HardStop, partMarkerName, ProcessTable } from "@vigil/tools"
import { Config, Context, Effect, Layer, Option } from "effect"
import { hostname } from "node:os"
import { Settings } from "../Settings.js"

/** What recovery and liveness need from the operating system, as a port so time tests never touch it. */
export interface ProcessControlShape {
  readonly host: string
  readonly pid: number
  readonly selfStartTime: Effect.Effect<string | null>
  /** Alive and still the same process (a reused pid with another start time is not). */
  readonly isAlive: (pid: number, startTime: string | null) => Effect.Effect<boolean>
  /**
   * Ends what parts left running on this host: each recorded group (only if the recorded process
   * is still the same one: a reused pid is never signalled) and every process carrying a part's
   * marker, which also finds `setsid` escapees and children reparented after their shell died.
   * Where a cgroup holds tool processes (see `Containment`), the part's group too, which finds
   * those that dropped the marker; the emptied group is removed.
   * Returns the pids ended, by part id.
   */
  readonly endPartProcesses: (parts: ReadonlyArray<ProcessOwner>) => Effect.Effect<ReadonlyMap<string, ReadonlyArray<number>>>
  /** How tool processes are held on this host, so a hard stop finds them all (`/health` says it). */
  readonly containment: Containment.Mechanism
  /**
   * The parts that still have something on this host: a process carrying their marker, or a
   * cgroup (with or without members). Recovery checks them against the database.
   */
  readonly leftoverPartIds: Effect.Effect<ReadonlySet<string>>
  /** Removes the part groups that are empty and older than a minute (nobody will enter them); how many. */
  readonly removeStaleGroups: Effect.Effect<number>
}

/** A shell enters its group milliseconds after it is made: an empty group this old is unused. */
const staleGroupMillis = 60_000

export interface ProcessOwner {
  readonly id: string
  readonly pid: number | null
  readonly pgid: number | null
  readonly procStart: string | null
}

/** This host's name, as instances record it and liveness compares it. */
export const thisHost: Effect.Effect<string> =
  // VIGIL_HOST_NAME stands in for the host name only in tests that play several machines on one.
  Config.option(Config.nonEmptyString("VIGIL_HOST_NAME")).pipe(
    Effect.map(Option.getOrElse(() => hostname())),
    Effect.orElseSucceed(() => hostname())
  )

/**
 * Ends what `parts` left on this host (`endPartProcesses`) and hands each part that had processes
 * to `record` with the pids it ended, so whoever ends processes says which (an event, a metric).
 * The one way the watchdog and recovery end parts' processes. Returns how many it ended.
 */
export const endProcessesOf = <P extends ProcessOwner, R>(
  processes: ProcessControlShape,
  parts: ReadonlyArray<P>,
  record: (part: P, pids: ReadonlyArray<number>) => Effect.Effect<void, never, R>
): Effect.Effect<number, never, R> =>
  Effect.flatMap(processes.endPartProcesses(parts), (ended) =>
    Effect.reduce(parts, 0, (count, part) => {
      const pids = ended.get(part.id)
      return pids === undefined || pids.length === 0 ? Effect.succeed(count) : Effect.as(record(part, pids), count + pids.length)
    }))

export class ProcessControl extends Context.Tag("vigil/ProcessControl")<ProcessControl, ProcessControlShape>() {
  static readonly Live = Layer.effect(
    ProcessControl,
    Effect.gen(function*() {
      const settings = yield* Settings
      const host = yield* thisHost
      const containment = Containment.current()
      yield* Effect.logInfo(`process containment: ${containment.mechanism}`).pipe(
        Effect.annotateLogs({ module: "ProcessControl", detail: containment.detail })
      )
      return {
        host,
        pid: process.pid,
        containment: containment.mechanism,
        leftoverPartIds: Effect.gen(function*() {
          const holders = yield* ProcessTable.markerHolders(partMarkerName)
          const ids = new Set(holders.keys())
          for (const group of Containment.listGroups(containment)) ids.add(group.key)
          return ids
        }),
        removeStaleGroups: Effect.sync(() => Containment.removeStaleEmptyGroups(staleGroupMillis, containment)),
        selfStartTime: ProcessTable.selfStartTime().pipe(Effect.map((start) => start ?? null)),
        isAlive: (pid, startTime) => ProcessTable.isAlive(pid, startTime ?? undefined),
        endPartProcesses: (parts) =>
          Effect.gen(function*() {
            const ended = new Map<string, ReadonlyArray<number>>()
            if (parts.length === 0) return ended
            // One pass over /proc for all parts, however many a crash left.
            const marked = yield* ProcessTable.withEnvMarkers(partMarkerName, new Set(parts.map((part) => part.id)))
            yield* Effect.forEach(parts, (part) =>
              Effect.gen(function*() {
                const sameProcess = part.pid !== null && part.procStart !== null &&
                  (yield* ProcessTable.isAlive(part.pid, part.procStart))
                const holders = marked.get(part.id)
                const group = Containment.groupOf(part.id, containment)
                const members = group === undefined ? new Set<number>() : yield* Effect.sync(() => Containment.membersOf(group))
                if (!sameProcess && (holders === undefined || holders.size === 0) && members.size === 0) {
                  // Nothing left to end; an empty group of the part still goes.
                  if (group !== undefined) yield* Effect.sync(() => Containment.removeGroup(group))
                  return
                }
                const report = yield* HardStop.hardStop({
                  ...(sameProcess && part.pgid !== null ? { pgid: part.pgid } : {}),
                  pids: [...(sameProcess ? [part.pid!] : []), ...(holders ?? []), ...members],
                  marker: { name: partMarkerName, value: part.id },
                  group,
                  termGrace: settings.killGrace
                })
                const pids = [...new Set([...report.termed, ...report.killed])]
                if (pids.length > 0) ended.set(part.id, pids)
              }), { concurrency: 16, discard: true })
            return ended
          })
      } satisfies ProcessControlShape
    })
  )

  /** For time tests: one host, every recorded process alive unless listed dead, nothing to kill. */
  static readonly test = (options: { readonly host?: string; readonly dead?: ReadonlySet<number> } = {}) =>
    Layer.succeed(ProcessControl, {
      host: options.host ?? "test-host",
      pid: 1_000_000,
      selfStartTime: Effect.succeed("1"),
      isAlive: (pid) => Effect.succeed(!(options.dead?.has(pid) ?? false)),
      endPartProcesses: () => Effect.succeed(new Map()),
      containment: "marker",
      leftoverPartIds: Effect.succeed(new Set<string>()),
      removeStaleGroups: Effect.succeed(0)
    })
}
