import { Schema } from "effect"
import { InstanceId, PartId, SessionId } from "./Ids.js"

/**
 * Why an instance is dead, as liveness judges it: it stopped, its lease ran out, its process is
 * gone (on this host), its instance lock is free (PostgreSQL, another host), or it has no row.
 */
export const DeathCause = Schema.Literal("stopped", "lease-expired", "process-gone", "lock-released", "unknown-instance")
export type DeathCause = typeof DeathCause.Type

/**
 * What a recovery did (or, for a dry run, would do): the dead owners it found and what it ended of
 * theirs. One report, whoever ran it: startup recovery, the watchdog's recovery of a dead peer, or
 * `vigil recover`; the same shape in `/health`, on `/event` (`recovery.completed`) and in the log.
 */
export const RecoveryReport = Schema.Struct({
  deadOwners: Schema.Array(Schema.Struct({ id: InstanceId, cause: DeathCause })),
  orphanedParts: Schema.Number,
  sessionsFreed: Schema.Number,
  processesKilled: Schema.Number,
  partIds: Schema.Array(PartId).annotations({ description: "at most 100, so the report of a large recovery stays printable" }),
  sessionIds: Schema.Array(SessionId).annotations({ description: "at most 100" }),
  tookMs: Schema.Number,
  dryRun: Schema.Boolean
}).annotations({ identifier: "RecoveryReport" })
export type RecoveryReport = typeof RecoveryReport.Type
