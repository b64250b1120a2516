import { Duration, Effect } from "effect"
import * as ProcessTable from "./ProcessTable.js"

export interface HardStopTarget {
  /** The tool's process group: the shell leads it, and its ordinary children stay in it. */
  readonly pgid?: number
  readonly pids?: Iterable<number>
  /** An environment marker every descendant inherits (finds `setsid` escapees and orphans). */
  readonly marker?: { readonly name: string; readonly value: string }
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

/** The group's members, the given pids, their descendants, and every holder of the marker. */
const collect = (target: HardStopTarget, known: Set<number>) =>
  Effect.gen(function*() {
    const table = yield* ProcessTable.snapshot()
    for (const proc of table) {
      if (target.pgid !== undefined && proc.pgid === target.pgid && proc.state !== "Z") known.add(proc.pid)
    }
    for (const pid of target.pids ?? []) known.add(pid)
    for (const pid of ProcessTable.descendantsIn(table, known)) known.add(pid)
    if (target.marker !== undefined) {
      for (const pid of yield* ProcessTable.withEnvMarker(target.marker.name, target.marker.value)) known.add(pid)
    }
    known.delete(process.pid)
    const alive = table.filter((proc) => known.has(proc.pid) && proc.state !== "Z").map((proc) => proc.pid)
    return new Set(alive)
  })

/**
 * Ends a process tree: SIGTERM to the group and to every member found, then SIGKILL to what is
 * left after `termGrace`. The tree is collected before anything is signalled (once a shell dies,
 * its children are reparented and the parent link is lost) and again on every poll, so children
 * forked meanwhile are caught too. Runs on the live clock: these are real processes.
 */
export const hardStop = (target: HardStopTarget): Effect.Effect<HardStopReport> =>
  Effect.gen(function*() {
    const started = performance.now()
    const known = new Set<number>()
    let alive = yield* collect(target, known)
    const termed = [...alive]
    if (termed.length === 0 && target.pgid === undefined) {
      return { termed: [], killed: [], survivors: [], tookMs: 0 }
    }
    if (target.pgid !== undefined) signal(-target.pgid, "SIGTERM")
    for (const pid of alive) signal(pid, "SIGTERM")
    if (termed.length > 0 && target.onStep) yield* target.onStep("term", { pids: termed })
    const deadline = started + Duration.toMillis(target.termGrace)
    while (alive.size > 0 && performance.now() < deadline) {
      yield* Effect.sleep(Duration.millis(pollMillis))
      alive = yield* collect(target, known)
      // Children forked after the first signal get theirs too.
      for (const pid of alive) if (!termed.includes(pid)) {
        termed.push(pid)
        signal(pid, "SIGTERM")
      }
    }
    const killed = [...alive]
    if (killed.length > 0) {
      if (target.pgid !== undefined) signal(-target.pgid, "SIGKILL")
      for (const pid of killed) signal(pid, "SIGKILL")
      if (target.onStep) yield* target.onStep("kill", { pids: killed })
      const killDeadline = performance.now() + killWaitMillis
      while (alive.size > 0 && performance.now() < killDeadline) {
        yield* Effect.sleep(Duration.millis(pollMillis))
        alive = yield* collect(target, known)
        for (const pid of alive) signal(pid, "SIGKILL")
      }
    }
    const survivors = [...alive]
    if (survivors.length > 0 && target.onStep) yield* target.onStep("survivors", { pids: survivors })
    return { termed, killed, survivors, tookMs: Math.round(performance.now() - started) }
  }).pipe(Effect.withSpan("HardStop.hardStop"))
