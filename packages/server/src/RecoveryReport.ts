import type { RecoveryReport } from "@vigil/domain"

/**
 * What a recovery did, in words: one line when the server starts (beside its URL), and the whole
 * report for `vigil recover`. One report (`RecoveryReport`), whoever ran it: startup recovery, the
 * watchdog's recovery of a dead peer, or the CLI.
 */

const plural = (count: number, one: string, many = `${one}s`) => `${count} ${count === 1 ? one : many}`

/**
 * The recovery report in one line: counts, and how long it took. A dry run only counts the parts
 * it would end (it frees no session and looks for no process).
 */
export const formatRecoverySummary = (report: RecoveryReport): string =>
  report.dryRun
    ? `recovery (dry run): ${plural(report.orphanedParts, "orphaned part")} to end, ${
      plural(report.deadOwners.length, "dead owner")
    } (took ${report.tookMs} ms)`
    : `recovery: ${plural(report.orphanedParts, "orphaned part")}, ${plural(report.sessionsFreed, "session")} freed, ${
      plural(report.processesKilled, "process", "processes")
    } killed, ${plural(report.deadOwners.length, "dead owner")} (took ${report.tookMs} ms)`

/** The report: the one-line summary, then the dead owners and what they left. */
export const formatRecoveryReport = (report: RecoveryReport): string => {
  const lines = [formatRecoverySummary(report)]
  for (const owner of report.deadOwners) lines.push(`  dead owner ${owner.id}: ${owner.cause}`)
  const verb = report.dryRun ? "would end" : "ended"
  if (report.partIds.length > 0) {
    lines.push(`  ${verb} parts (OrphanedByCrash): ${report.partIds.join(", ")}${report.orphanedParts > report.partIds.length ? ", …" : ""}`)
  }
  if (report.sessionIds.length > 0) {
    lines.push(`  freed sessions: ${report.sessionIds.join(", ")}${report.sessionsFreed > report.sessionIds.length ? ", …" : ""}`)
  }
  if (report.deadOwners.length === 0) lines.push("  nothing to recover: every owner of running work is alive")
  return lines.join("\n")
}
