import type { Instance, InstanceId, Part, Session } from "@vigil/domain"
import { instanceStates } from "@vigil/runtime"
import { InstanceRepo, PartRepo, SessionRepo } from "@vigil/store"
import { Clock, Duration, Effect } from "effect"

/** How many sessions `vigil status` lists (the newest; every busy or waiting one is listed too). */
export const statusSessionLimit = 50

/** A plain text table: a header row, then the rows, columns padded to their widest cell. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!))).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

/** `12s`, `4m 3s`, `2h 10m`: an age at a glance. */
export const age = (millis: number): string => {
  if (millis < 0) return "0s"
  const parts = Duration.parts(Duration.millis(Math.floor(millis / 1000) * 1000))
  if (parts.days > 0) return `${parts.days}d ${parts.hours}h`
  if (parts.hours > 0) return `${parts.hours}h ${parts.minutes}m`
  if (parts.minutes > 0) return `${parts.minutes}m ${parts.seconds}s`
  return `${parts.seconds}s`
}

export interface StatusReport {
  readonly now: number
  readonly sessions: ReadonlyArray<Session>
  readonly running: ReadonlyArray<Part>
  /** Each owner with liveness's verdict (as `/instance` gives it): its cause of death, or `alive`. */
  readonly instances: ReadonlyMap<string, { readonly instance: Instance; readonly state: string }>
}

const owner = (id: InstanceId, report: StatusReport): string => {
  const known = report.instances.get(id)
  return known === undefined
    ? `${id} (unknown)`
    : `${id} (pid ${known.instance.pid} on ${known.instance.host}, ${known.state})`
}

/** Reads only: sessions, pending/running parts and their owners. Registers nothing, writes nothing. */
export const readStatus = Effect.gen(function*() {
  const sessionRepo = yield* SessionRepo
  const partRepo = yield* PartRepo
  const instanceRepo = yield* InstanceRepo
  const now = yield* Clock.currentTimeMillis
  const recent = yield* sessionRepo.list({ limit: statusSessionLimit })
  const active = yield* sessionRepo.active()
  const seen = new Set(recent.map((session) => session.id))
  const sessions = [...recent, ...active.filter((session) => !seen.has(session.id))]
  const running = yield* partRepo.active()
  const ownerIds = [...new Set([...sessions.map((s) => s.ownerId), ...running.map((p) => p.ownerId)])]
  const owners = yield* instanceRepo.getMany(ownerIds)
  const states = yield* instanceStates(owners, now)
  const instances = new Map<string, { readonly instance: Instance; readonly state: string }>()
  for (const instance of owners) instances.set(instance.id, { instance, state: states.get(instance.id) ?? "alive" })
  return { now, sessions, running, instances } satisfies StatusReport
})

export const formatStatus = (report: StatusReport): string => {
  const { now } = report
  const sessions = report.sessions.length === 0
    ? "no sessions"
    : table(
      ["SESSION", "STATUS", "AGE", "IDLE", "OWNER", "TITLE"],
      report.sessions.map((session) => [
        session.id,
        session.status,
        age(now - session.createdAt),
        age(now - session.lastActivityAt),
        owner(session.ownerId, report),
        session.title
      ])
    )
  const running = report.running.length === 0
    ? "no running parts"
    : table(
      ["PART", "SESSION", "KIND", "TOOL", "STATUS", "AGE", "PID", "OWNER"],
      report.running.map((part) => [
        part.id,
        part.sessionId,
        part.kind,
        part.tool,
        part.status,
        age(now - (part.startedAt ?? part.createdAt)),
        part.pid === null ? "-" : String(part.pid),
        owner(part.ownerId, report)
      ])
    )
  return `${sessions}\n\n${running}`
}
