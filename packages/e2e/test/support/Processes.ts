import { readdirSync, readFileSync } from "node:fs"

/**
 * Linux `/proc`, read by the tests themselves: the leak checks must not trust the process table
 * code of the packages they check. A process that vanishes between two reads is "not found".
 */

/** The variable a bash tool's processes carry (docs/design.md#guarantees, 5): `VIGIL_PART_ID=<part id>`. */
export const partMarker = "VIGIL_PART_ID"

export interface ProcStat {
  readonly pid: number
  /** `R`, `S`, `Z` (zombie: already dead, only its exit status is left), … */
  readonly state: string
  /** Field 22, clock ticks since boot: with the pid, the identity of a process (pids are reused). */
  readonly startTime: string
}

export const readStat = (pid: number): ProcStat | undefined => {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8")
  } catch {
    return undefined
  }
  // Field 2 (the command) is in parentheses and may itself hold spaces and parentheses.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
  return { pid, state: fields[0] ?? "?", startTime: fields[19] ?? "" }
}

/** Running or sleeping, not a zombie: a zombie has ended and holds nothing. */
export const isLive = (stat: ProcStat | undefined): stat is ProcStat =>
  stat !== undefined && stat.state !== "Z" && stat.state !== "X"

const allPids = (): Array<number> =>
  readdirSync("/proc").flatMap((name) => (/^\d+$/.test(name) ? [Number(name)] : []))

const environOf = (pid: number): Array<string> => {
  try {
    return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0")
  } catch {
    return []
  }
}

/** The value of `name` in a process's environment, if it has it. */
export const envValue = (pid: number, name: string): string | undefined => {
  const prefix = `${name}=`
  return environOf(pid).find((entry) => entry.startsWith(prefix))?.slice(prefix.length)
}

export interface MarkedProcess {
  readonly pid: number
  readonly value: string
  readonly command: string
}

const commandOf = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim()
  } catch {
    return "?"
  }
}

/** Every live process (not this one) whose environment holds `name=<value>` with a value `accept`s. */
export const processesWithEnv = (name: string, accept: (value: string) => boolean): Array<MarkedProcess> =>
  allPids().flatMap((pid) => {
    if (pid === process.pid) return []
    const value = envValue(pid, name)
    if (value === undefined || !accept(value) || !isLive(readStat(pid))) return []
    return [{ pid, value, command: commandOf(pid) }]
  })

export const killQuietly = (pid: number, signal: NodeJS.Signals = "SIGKILL") => {
  try {
    process.kill(pid, signal)
  } catch {
    // ESRCH: already gone.
  }
}
