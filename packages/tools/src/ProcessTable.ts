import { Effect, Option } from "effect"
import { readdirSync, readFileSync } from "node:fs"

/**
 * Linux `/proc`, read synchronously (each read is a few microseconds from the kernel). A process
 * vanishing between two reads is normal here, never an error: every read answers "not found".
 */

export interface ProcessInfo {
  readonly pid: number
  readonly ppid: number
  readonly pgid: number
  readonly state: string
  /** Clock ticks since boot: with the pid, the identity of a process (pids are reused). */
  readonly startTime: string
}

const readStat = (pid: number): ProcessInfo | undefined => {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8")
  } catch {
    return undefined
  }
  // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
  // fields[0] is field 3 (state); field N is fields[N - 3].
  return {
    pid,
    state: fields[0] ?? "?",
    ppid: Number(fields[1]),
    pgid: Number(fields[2]),
    startTime: fields[19] ?? ""
  }
}

const allPids = (): Array<number> => {
  try {
    return readdirSync("/proc").flatMap((name) => (/^\d+$/.test(name) ? [Number(name)] : []))
  } catch {
    return []
  }
}

export const info = (pid: number): Effect.Effect<Option.Option<ProcessInfo>> => Effect.sync(() => Option.fromNullable(readStat(pid)))

export const startTime = (pid: number): Effect.Effect<Option.Option<string>> =>
  Effect.sync(() => Option.fromNullable(readStat(pid)?.startTime))

export const selfStartTime = (): Effect.Effect<string | undefined> => Effect.sync(() => readStat(process.pid)?.startTime)

/** Exists, is not a zombie, and (when given) has the recorded start time: a reused pid is not "alive". */
export const isAlive = (pid: number, expectedStart?: string): Effect.Effect<boolean> =>
  Effect.sync(() => {
    const stat = readStat(pid)
    if (stat === undefined || stat.state === "Z" || stat.state === "X") return false
    return expectedStart === undefined || stat.startTime === expectedStart
  })

export const snapshot = (): Effect.Effect<ReadonlyArray<ProcessInfo>> =>
  Effect.sync(() => allPids().flatMap((pid) => readStat(pid) ?? []))

/** Every transitive child of `roots` in `table` (the pure half of `descendants`, for callers holding a snapshot). */
export const descendantsIn = (table: ReadonlyArray<ProcessInfo>, roots: Iterable<number>): Set<number> => {
  const children = new Map<number, Array<number>>()
  for (const proc of table) {
    const siblings = children.get(proc.ppid)
    if (siblings === undefined) children.set(proc.ppid, [proc.pid])
    else siblings.push(proc.pid)
  }
  const found = new Set<number>()
  const queue = [...roots]
  while (queue.length > 0) {
    const pid = queue.pop()!
    for (const child of children.get(pid) ?? []) {
      if (found.has(child)) continue
      found.add(child)
      queue.push(child)
    }
  }
  return found
}

export const descendants = (roots: Iterable<number>): Effect.Effect<Set<number>> =>
  Effect.map(snapshot(), (table) => descendantsIn(table, roots))

const environOf = (pid: number): string | undefined => {
  try {
    // utf8 as node wrote it (a non-ASCII marker value must match); stray bytes of others' variables just become U+FFFD.
    return readFileSync(`/proc/${pid}/environ`, "utf8")
  } catch {
    return undefined
  }
}

/**
 * For each wanted marker value, the processes whose environment holds `name=value`. The marker is
 * inherited by every descendant, whatever group or session it moved to and whoever it was
 * reparented to, so it finds what a tool left behind even after its shell and its server died.
 * One pass over /proc however many values are asked for.
 */
export const withEnvMarkers = (name: string, values: ReadonlySet<string>): Effect.Effect<Map<string, Set<number>>> =>
  values.size === 0 ? Effect.sync(() => new Map()) : markerHolders(name, (value) => values.has(value))

/**
 * Every live process carrying the marker `name`, by its value (all values, or those `wanted`):
 * what a sweep for processes whose part has ended uses. One pass over /proc.
 */
export const markerHolders = (
  name: string,
  wanted: (value: string) => boolean = () => true
): Effect.Effect<Map<string, Set<number>>> =>
  Effect.sync(() => {
    const found = new Map<string, Set<number>>()
    const prefix = `${name}=`
    for (const pid of allPids()) {
      if (pid === process.pid) continue
      const environ = environOf(pid)
      if (environ === undefined || !environ.includes(prefix)) continue
      for (const entry of environ.split("\0")) {
        if (!entry.startsWith(prefix)) continue
        const value = entry.slice(prefix.length)
        if (wanted(value)) {
          const stat = readStat(pid)
          if (stat !== undefined && stat.state !== "Z") found.set(value, (found.get(value) ?? new Set()).add(pid))
        }
      }
    }
    return found
  })

export const withEnvMarker = (name: string, value: string): Effect.Effect<Set<number>> =>
  Effect.map(withEnvMarkers(name, new Set([value])), (found) => found.get(value) ?? new Set())
