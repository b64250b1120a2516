import { Duration, Effect } from "effect"
import type { PartGroup } from "./Containment.js"
import * as Containment from "./Containment.js"
import type { RestoreClock } from "./internal/LiveClock.js"
import { onLiveClock } from "./internal/LiveClock.js"
import * as ProcessTable from "./ProcessTable.js"

export interface HardStopTarget {
  /** The tool's process group: the shell leads it, and its ordinary children stay in it. */
  readonly pgid?: number
  readonly pids?: Iterable<number>
  /** An environment marker every descendant inherits (finds `setsid` escapees and orphans). */
  readonly marker?: { readonly name: string; readonly value: string }
  /**
   * The part's cgroup (see `Containment`): every process started in it, whatever it did to its
   * environment or ancestry. Killed as a whole, and removed once empty.
   */
  readonly group?: PartGroup | undefined
  /** Between SIGTERM and SIGKILL. */
  readonly termGrace: Duration.Duration
  /** Each escalation step (`term`, `kill`, `survivors`), for the event log. */
  readonly onStep?: (step: "term" | "kill" | "survivors", data: Record<string, unknown>) => Effect.Effect<void>
}

export interface HardStopReport {
  readonly termed: ReadonlyArray<number>
  readonly killed: ReadonlyArray<number>
  readonly survivors: ReadonlyArray<number>
  readonly tookMs: number
}

const pollMillis = 10
/** How long to wait for SIGKILLed processes to vanish before calling them survivors. */
const killWaitMillis = 1_000

const signal = (pid: number, name: NodeJS.Signals) => {
  try {
    process.kill(pid, name)
  } catch {
    // ESRCH (already gone) or EPERM: nothing more to do for this one.
  }
}

/**
 * The processes a stop is about, by identity: pid → start time. A pid seen once is only ever the
 * same process again if its start time matches; a pid that died and was reused by a stranger
 * while we polled is neither signalled nor followed to its children.
 */
type Known = Map<number, string>

interface Round {
  /** Live (non-zombie) processes of the target, in this round's snapshot. */
  readonly alive: ReadonlySet<number>
  /**
   * Whether the group still has a member (a zombie counts: it still holds the group id). An empty
   * group's id is free for the kernel to reuse, so it is never signalled.
   */
  readonly groupInUse: boolean
}

/** The group's members, the given pids, their descendants, and every holder of the marker. */
const collect = (target: HardStopTarget, known: Known, firstRound: boolean): Effect.Effect<Round> =>
  Effect.gen(function*() {
    const table = yield* ProcessTable.snapshot()
    const byPid = new Map(table.map((proc) => [proc.pid, proc]))
    const isKnown = (proc: ProcessTable.ProcessInfo) => known.get(proc.pid) === proc.startTime
    const add = (pid: number) => {
      const proc = byPid.get(pid)
      if (proc !== undefined && !known.has(pid)) known.set(pid, proc.startTime)
    }
    let groupInUse = false
    for (const proc of table) {
      if (target.pgid !== undefined && proc.pgid === target.pgid) {
        groupInUse = true
        add(proc.pid)
      }
    }
    // The caller's pids are taken as they are now, once: later rounds follow identities, not numbers.
    if (firstRound) for (const pid of target.pids ?? []) add(pid)
    const roots = table.filter(isKnown).map((proc) => proc.pid)
    for (const pid of ProcessTable.descendantsIn(table, roots)) add(pid)
    if (target.marker !== undefined) {
      for (const pid of yield* ProcessTable.withEnvMarker(target.marker.name, target.marker.value)) add(pid)
    }
    // Read after the snapshot: a member forked since is not in it yet, and is caught next round
    // (and by the group kill in any case).
    if (target.group !== undefined) for (const pid of Containment.membersOf(target.group)) add(pid)
    const alive = new Set<number>()
    for (const proc of table) {
      if (proc.pid !== process.pid && proc.state !== "Z" && isKnown(proc)) alive.add(proc.pid)
    }
    return { alive, groupInUse }
  })

/**
 * Ends a process tree: SIGTERM to the group and to every member found, then SIGKILL to what is
 * left after `termGrace`, then at most a second more to see them go. The tree is collected before
 * anything is signalled (once a shell dies, its children are reparented and the parent link is
 * lost) and again on every poll, so children forked meanwhile are caught too; the environment
 * marker finds `setsid` escapees and what a crashed owner left, whoever their parent is now, and
 * the part's cgroup, where there is one, finds those that dropped the marker too: its SIGKILL is
 * the group's own (`Containment.killGroup`), which no member can dodge by forking. An emptied group
 * is removed, so groups do not pile up.
 *
 * Polls on the live clock (see `LiveClock`): these are real processes, and their tests are
 * real-process tests. `onStep` runs on the caller's clock.
 */
export const hardStop = (target: HardStopTarget): Effect.Effect<HardStopReport> =>
  onLiveClock((restore) => stopWith(target, restore)).pipe(Effect.withSpan("HardStop.hardStop"))

/**
 * How long an emptied group may take to become removable (a killed member still exiting). A
 * member found now joined after the last snapshot: it is part of the tree all the same.
 */
const removeWaitMillis = 200

const removeGroup = (target: HardStopTarget): Effect.Effect<void> =>
  Effect.gen(function*() {
    const group = target.group
    if (group === undefined) return
    const deadline = performance.now() + removeWaitMillis
    while (!Containment.removeGroup(group) && performance.now() < deadline) {
      if (Containment.membersOf(group).size > 0) yield* Containment.killGroup(group)
      yield* Effect.sleep(Duration.millis(pollMillis))
    }
  })

const stopWith = (target: HardStopTarget, restore: RestoreClock): Effect.Effect<HardStopReport> =>
  Effect.gen(function*() {
    const started = performance.now()
    const step = (name: "term" | "kill" | "survivors", pids: ReadonlyArray<number>) =>
      target.onStep ? restore(target.onStep(name, { pids })) : Effect.void
    const known: Known = new Map()
    let round = yield* collect(target, known, true)
    if (round.alive.size === 0 && !round.groupInUse) {
      yield* removeGroup(target)
      return { termed: [], killed: [], survivors: [], tookMs: Math.round(performance.now() - started) }
    }
    const termed = [...round.alive]
    const termedSet = new Set(termed)
    if (target.pgid !== undefined && round.groupInUse) signal(-target.pgid, "SIGTERM")
    for (const pid of round.alive) signal(pid, "SIGTERM")
    if (termed.length > 0) yield* step("term", termed)
    const deadline = started + Duration.toMillis(target.termGrace)
    while (round.alive.size > 0 && performance.now() < deadline) {
      yield* Effect.sleep(Duration.millis(pollMillis))
      round = yield* collect(target, known, false)
      // Children forked after the first signal get theirs too.
      for (const pid of round.alive) {
        if (termedSet.has(pid)) continue
        termedSet.add(pid)
        termed.push(pid)
        signal(pid, "SIGTERM")
      }
    }
    const killed = [...round.alive]
    if (killed.length > 0) {
      if (target.group !== undefined) yield* Containment.killGroup(target.group)
      if (target.pgid !== undefined && round.groupInUse) signal(-target.pgid, "SIGKILL")
      for (const pid of killed) signal(pid, "SIGKILL")
      yield* step("kill", killed)
      const killDeadline = performance.now() + killWaitMillis
      while (round.alive.size > 0 && performance.now() < killDeadline) {
        yield* Effect.sleep(Duration.millis(pollMillis))
        round = yield* collect(target, known, false)
        if (round.alive.size > 0 && target.group !== undefined) yield* Containment.killGroup(target.group)
        for (const pid of round.alive) signal(pid, "SIGKILL")
      }
    }
    const survivors = [...round.alive]
    if (survivors.length > 0) yield* step("survivors", survivors)
    else yield* removeGroup(target)
    return { termed, killed, survivors, tookMs: Math.round(performance.now() - started) }
  })
