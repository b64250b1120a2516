import type { EventRow, PartRow, SessionRow } from "./Database.js"
import { reasonOf } from "./Database.js"
import type { MarkedProcess } from "./Processes.js"
import { isLive, partMarker, processesWithEnv, readStat } from "./Processes.js"

/**
 * The guarantees of docs/design.md#guarantees as checks over what the SQLite file and /proc hold. Each returns
 * the violations it found, one line each naming the offending ids; an empty list is a pass.
 */

const activePart = (part: PartRow) => part.status === "pending" || part.status === "running"
const activeSession = (session: SessionRow) => session.status === "busy" || session.status === "waiting"

const list = (ids: ReadonlyArray<string>, max = 20) =>
  `${ids.slice(0, max).join(", ")}${ids.length > max ? `, … (${ids.length - max} more)` : ""}`

/** (1) No part is pending/running unless its owner is `live` (the one instance that should be running). */
export const partsWithoutLiveOwner = (parts: ReadonlyArray<PartRow>, live: string): Array<string> => {
  const orphans = parts.filter((part) => activePart(part) && part.ownerId !== live)
  return orphans.length === 0
    ? []
    : [`${orphans.length} part(s) ${orphans.map((part) => part.status).join("/")} whose owner is not the live instance ${live}: ${
      list(orphans.map((part) => `${part.id} (${part.tool}, owner ${part.ownerId})`))
    }`]
}

/** (2) No session is busy/waiting unless the live instance owns it and runs work in its subtree. */
export const sessionsWithoutWork = (sessions: ReadonlyArray<SessionRow>, parts: ReadonlyArray<PartRow>, live: string): Array<string> => {
  const children = new Map<string, Array<string>>()
  for (const session of sessions) {
    if (session.parentId !== null) children.set(session.parentId, [...(children.get(session.parentId) ?? []), session.id])
  }
  const working = new Set(parts.filter((part) => activePart(part) && part.ownerId === live).map((part) => part.sessionId))
  const hasWork = (id: string, depth = 0): boolean =>
    working.has(id) || (depth < 50 && (children.get(id) ?? []).some((child) => hasWork(child, depth + 1)))
  const stuck = sessions.filter((session) => activeSession(session) && (session.ownerId !== live || !hasWork(session.id)))
  return stuck.length === 0
    ? []
    : [`${stuck.length} session(s) busy/waiting without running work of the live instance: ${
      list(stuck.map((session) => `${session.id} (${session.status}, owner ${session.ownerId})`))
    }`]
}

/** (3) Every part seen completed is still completed, with the very same output. */
export const completedRewritten = (
  seen: ReadonlyMap<string, { readonly output: string }>,
  parts: ReadonlyArray<PartRow>
): Array<string> => {
  const byId = new Map(parts.map((part) => [part.id, part]))
  const violations: Array<string> = []
  for (const [id, { output }] of seen) {
    const now = byId.get(id)
    if (now === undefined) violations.push(`completed part ${id} is gone from the database`)
    else if (now.status !== "completed") violations.push(`completed part ${id} is now ${now.status} (${now.error})`)
    else if (now.output !== output) violations.push(`completed part ${id} was rewritten: ${JSON.stringify(output)} -> ${JSON.stringify(now.output)}`)
  }
  return violations
}

/**
 * A completed shell part has exactly the output its command prints; a command that cannot finish
 * never completes. An output that is a strict prefix of the right one (often empty) is returned
 * apart, as `lostOutput`: the drain after the shell's exit gave up before the pipe was read.
 */
export const wrongShellResults = (parts: ReadonlyArray<PartRow>, commands: ReadonlyMap<string, string | null>) => {
  const violations: Array<string> = []
  const lostOutput: Array<string> = []
  for (const part of parts) {
    if (part.tool !== "bash" || part.status !== "completed") continue
    const command = (JSON.parse(part.input) as { command?: string }).command ?? ""
    if (!commands.has(command)) continue
    const expected = commands.get(command) ?? null
    const line = `part ${part.id} (\`${command}\`) completed with ${JSON.stringify(part.output)}, not ${JSON.stringify(expected)}`
    if (expected === null) violations.push(`part ${part.id} completed \`${command}\`, which cannot finish in this test`)
    else if (part.output !== expected) (expected.startsWith(part.output ?? "") ? lostOutput : violations).push(line)
  }
  return { violations, lostOutput }
}

/**
 * (3b) A flood's stored output is cut, never its outcome: a completed flood keeps its last line
 * (the tail), says what it dropped, and fits the part's cap.
 */
export const wrongFloodResults = (parts: ReadonlyArray<PartRow>, floods: ReadonlyMap<string, string>, capBytes: number) => {
  const violations: Array<string> = []
  for (const part of parts) {
    if (part.tool !== "bash" || part.status !== "completed") continue
    const command = (JSON.parse(part.input) as { command?: string }).command ?? ""
    const tail = floods.get(command)
    if (tail === undefined) continue
    const output = part.output ?? ""
    const problems = [
      output.endsWith(tail) ? undefined : `does not end with ${JSON.stringify(tail)} (ends ${JSON.stringify(output.slice(-80))})`,
      output.includes("output truncated") ? undefined : "has no truncation marker",
      Buffer.byteLength(output) <= capBytes ? undefined : `is ${Buffer.byteLength(output)} bytes, over the ${capBytes}-byte cap`
    ].filter((problem) => problem !== undefined)
    if (problems.length > 0) violations.push(`flood part ${part.id} (\`${command}\`) ${problems.join(", ")}`)
  }
  return violations
}

const describePart = (part: PartRow) => {
  const command = part.tool === "bash" ? ` \`${(JSON.parse(part.input) as { command?: string }).command}\`` : ""
  const reason = reasonOf(part.error)
  return `${part.status} ${part.tool} part ${part.id}${command}${reason === undefined ? "" : ` (${JSON.stringify(reason)})`}`
}

export interface LeakedProcess {
  readonly pid: number
  readonly partId: string
  /** The part's recorded reason: `AbortIncomplete` leaks are a known finding (see Chaos.test.ts). */
  readonly reason: string | undefined
  readonly how: string
}

/**
 * (4) No process of a tool outlives it: no recorded `pid` is still the same process (same start
 * time: a reused pid is someone else), and no live process carries `VIGIL_PART_ID=<a part of
 * this database>` unless `running` says its part may still run.
 */
export const leakedProcesses = (
  parts: ReadonlyArray<PartRow>,
  options: { readonly mayRun?: (part: PartRow) => boolean } = {}
): Array<LeakedProcess> => {
  const mayRun = options.mayRun ?? (() => false)
  const byId = new Map(parts.map((part) => [part.id, part]))
  const leaked = new Map<number, LeakedProcess>()
  for (const part of parts) {
    if (part.pid === null || part.procStart === null || part.procStart === "" || mayRun(part)) continue
    const stat = readStat(part.pid)
    if (isLive(stat) && stat.startTime === part.procStart) {
      leaked.set(part.pid, { pid: part.pid, partId: part.id, reason: reasonOf(part.error)?._tag, how: `recorded pid of ${describePart(part)}, still running` })
    }
  }
  const marked: Array<MarkedProcess> = processesWithEnv(partMarker, (value) => byId.has(value) && !mayRun(byId.get(value)!))
  for (const proc of marked) {
    if (!leaked.has(proc.pid)) {
      const part = byId.get(proc.value)!
      leaked.set(proc.pid, { pid: proc.pid, partId: proc.value, reason: reasonOf(part.error)?._tag, how: `\`${proc.command}\` with ${partMarker} of ${describePart(part)}` })
    }
  }
  return [...leaked.values()]
}

/**
 * (5) Every supervision action is in the event log. A part ended `OrphanedByCrash` is listed by an
 * `*.orphans_rescued` event of its dead owner (events list at most 100 part ids: the rest is
 * covered by the event's `parts` count), and the counts per owner add up exactly; a part ended
 * `WatchdogStuck` or `IdleCancelled` has a `watchdog.stuck_part` / `idle.cancelled` event in its
 * session's tree (the reason travels up through `task` parts and down to cancelled children).
 */
export const unexplainedSupervision = (
  parts: ReadonlyArray<PartRow>,
  sessions: ReadonlyArray<SessionRow>,
  events: ReadonlyArray<EventRow>
): Array<string> => {
  const violations: Array<string> = []
  const parentOf = new Map(sessions.map((session) => [session.id, session.parentId]))
  const rootOf = (id: string): string => {
    let at = id
    for (let hops = 0; hops < 100; hops++) {
      const parent = parentOf.get(at)
      if (parent === null || parent === undefined) return at
      at = parent
    }
    return at
  }

  interface Rescue { readonly listed: Set<string>; counted: number; unlisted: number }
  const rescues = new Map<string, Rescue>()
  const stuckTrees = new Set<string>()
  const stuckParts = new Set<string>()
  const idleTrees = new Set<string>()
  for (const event of events) {
    if (event.type.endsWith(".orphans_rescued")) {
      const data = JSON.parse(event.data ?? "{}") as { ownerId?: string; parts?: number; partIds?: Array<string> }
      const owner = data.ownerId ?? "?"
      const rescue = rescues.get(owner) ?? { listed: new Set<string>(), counted: 0, unlisted: 0 }
      for (const id of data.partIds ?? []) rescue.listed.add(id)
      rescue.counted += data.parts ?? 0
      rescue.unlisted += Math.max(0, (data.parts ?? 0) - (data.partIds ?? []).length)
      rescues.set(owner, rescue)
    } else if (event.type === "watchdog.stuck_part") {
      if (event.partId !== null) stuckParts.add(event.partId)
      if (event.sessionId !== null) stuckTrees.add(rootOf(event.sessionId))
    } else if (event.type === "idle.cancelled" && event.sessionId !== null) {
      idleTrees.add(rootOf(event.sessionId))
    }
  }

  const orphanedByOwner = new Map<string, Array<string>>()
  const unexplained = { WatchdogStuck: [] as Array<string>, IdleCancelled: [] as Array<string> }
  for (const part of parts) {
    if (part.status !== "error") continue
    const reason = reasonOf(part.error)
    if (reason?._tag === "OrphanedByCrash") {
      const owner = String(reason["ownerId"])
      orphanedByOwner.set(owner, [...(orphanedByOwner.get(owner) ?? []), part.id])
    } else if (reason?._tag === "WatchdogStuck") {
      if (!stuckParts.has(part.id) && !stuckTrees.has(rootOf(part.sessionId))) unexplained.WatchdogStuck.push(part.id)
    } else if (reason?._tag === "IdleCancelled") {
      if (!idleTrees.has(rootOf(part.sessionId))) unexplained.IdleCancelled.push(part.id)
    }
  }
  for (const [owner, ids] of orphanedByOwner) {
    const rescue = rescues.get(owner)
    if (rescue === undefined) {
      violations.push(`${ids.length} part(s) OrphanedByCrash{${owner}} with no orphans_rescued event for that owner: ${list(ids)}`)
      continue
    }
    const unlisted = ids.filter((id) => !rescue.listed.has(id))
    if (unlisted.length > rescue.unlisted) {
      violations.push(`${unlisted.length} part(s) OrphanedByCrash{${owner}} not listed by its events (which leave ${rescue.unlisted} unlisted): ${list(unlisted)}`)
    }
    if (rescue.counted !== ids.length) {
      violations.push(`the orphans_rescued events of ${owner} count ${rescue.counted} part(s); the database has ${ids.length} OrphanedByCrash{${owner}}`)
    }
  }
  for (const [owner, rescue] of rescues) {
    if (!orphanedByOwner.has(owner) && rescue.counted > 0) violations.push(`orphans_rescued events of ${owner} count ${rescue.counted} part(s), none in the database`)
  }
  for (const [tag, ids] of Object.entries(unexplained)) {
    if (ids.length > 0) violations.push(`${ids.length} part(s) ended ${tag} with no matching event in their session tree: ${list(ids)}`)
  }
  const idleSessions = sessions.filter((session) => reasonOf(session.cancelReason)?._tag === "IdleCancelled" && !idleTrees.has(rootOf(session.id)))
  if (idleSessions.length > 0) violations.push(`${idleSessions.length} session(s) IdleCancelled with no idle.cancelled event in their tree: ${list(idleSessions.map((s) => s.id))}`)
  return violations
}

/** How the parts ended, by reason: the numbers a chaos run prints. */
export const tally = (parts: ReadonlyArray<PartRow>) => {
  const byReason = new Map<string, number>()
  let completed = 0
  for (const part of parts) {
    if (part.status === "completed") completed++
    else if (part.status === "error") {
      const tag = reasonOf(part.error)?._tag ?? "?"
      byReason.set(tag, (byReason.get(tag) ?? 0) + 1)
    }
  }
  return { completed, byReason }
}
