import { SqlClient } from "@effect/sql"
import type { InstanceId } from "@vigil/domain"
import type { Scope } from "effect"
import { Context, Data, Deferred, Duration, Effect, Layer, Option, Schedule } from "effect"

export class InstanceLockError extends Data.TaggedError("InstanceLockError")<{
  readonly instanceId: InstanceId
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * Liveness the database can vouch for. An instance holds a lock for as long as its process (and
 * its connection to the database) lives; a peer that finds the lock free knows at once that the
 * instance is gone, on any host, without waiting out the lease. Where the store cannot tell
 * (SQLite, or a failed check) the answer is `None` and the lease stays the rule.
 */
export interface InstanceLocksShape {
  /**
   * Takes this instance's lock and holds it for the life of the scope; if the connection holding
   * it drops, it is taken again. Fails when it cannot be taken at first.
   */
  readonly hold: (instanceId: InstanceId) => Effect.Effect<void, InstanceLockError, Scope.Scope>
  /** Whether the instance's lock is held now; `None` when this store cannot tell. */
  readonly isHeld: (instanceId: InstanceId) => Effect.Effect<Option.Option<boolean>>
}

/** How often the held lock's connection is checked. */
const checkEvery = Duration.seconds(1)
const pingTimeout = Duration.seconds(5)
/** A lost lock is taken again at once, then backing off to once a second while the database is away. */
const retake = Schedule.exponential(Duration.millis(50)).pipe(Schedule.union(Schedule.spaced(checkEvery)))

/**
 * How long a lock must stay free before a peer takes it for death. A live instance whose
 * connection dropped (a database restart, a killed backend) has its lock free until it takes it
 * again: within a ping period and a reconnect, about a second. A second look after this long tells
 * that apart from a process that is gone.
 */
export const lockConfirmAfter = Duration.seconds(3)

/**
 * PostgreSQL: a session-level advisory lock keyed by the instance id, taken on a connection
 * reserved from the pool for the instance's lifetime (as @effect/cluster's SqlRunnerStorage holds
 * its shard locks). The server drops the lock as soon as the session ends, which a killed
 * process's closed socket ends at once. Peers read `pg_locks`, so checking never takes the lock.
 */
const postgres = (sql: SqlClient.SqlClient): InstanceLocksShape => {
  const raw = sql.withoutTransforms()
  return {
    hold: (instanceId) =>
      Effect.gen(function*() {
        const taken = yield* Deferred.make<void, InstanceLockError>()
        const holdOnce = Effect.scoped(Effect.gen(function*() {
          const conn = yield* sql.reserve
          // Released before the connection goes back to the pool, where a session lock would outlive us.
          yield* Effect.addFinalizer(() =>
            conn.executeRaw("SELECT pg_advisory_unlock_all()", []).pipe(
              Effect.timeout(Duration.seconds(2)),
              Effect.interruptible,
              Effect.ignore
            )
          )
          const rows = yield* conn.executeValues("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", [instanceId])
          if (rows[0]?.[0] !== true) {
            return yield* new InstanceLockError({ instanceId, message: "the instance lock is held by another session" })
          }
          yield* Deferred.succeed(taken, undefined)
          // Holds it; a failed ping means the connection, and with it the lock, is gone.
          return yield* conn.executeRaw("SELECT 1", []).pipe(
            Effect.timeoutFail({ duration: pingTimeout, onTimeout: () => new Error("no answer on the lock's connection") }),
            Effect.delay(checkEvery),
            Effect.forever
          )
        }))
        yield* holdOnce.pipe(
          Effect.mapError((cause) =>
            cause instanceof InstanceLockError
              ? cause
              : new InstanceLockError({ instanceId, message: "cannot hold the instance lock", cause })
          ),
          Effect.tapError((error) => Deferred.fail(taken, error)),
          Effect.catchAllCause((cause) => Effect.logError("instance lock lost; taking it again", cause)),
          Effect.repeat(retake),
          Effect.annotateLogs({ module: "InstanceLocks", instance: instanceId }),
          Effect.forkScoped
        )
        yield* Deferred.await(taken)
      }),
    isHeld: (instanceId) =>
      raw<{ held: boolean }>`SELECT EXISTS (
          SELECT 1 FROM pg_locks
          WHERE locktype = 'advisory' AND granted AND objsubid = 1
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND classid = ((hashtextextended(${instanceId}, 0) >> 32) & 4294967295)::oid
            AND objid = (hashtextextended(${instanceId}, 0) & 4294967295)::oid
        ) AS held`.pipe(
        Effect.map((rows) => Option.some(rows[0]?.held === true)),
        Effect.catchAllCause((cause) =>
          Effect.logWarning("cannot read instance locks; the lease decides", cause).pipe(Effect.as(Option.none()))
        )
      )
  }
}

/** SQLite (one machine): there is nothing to hold; the lease and the pid decide. */
const none: InstanceLocksShape = {
  hold: () => Effect.void,
  isHeld: () => Effect.succeed(Option.none())
}

export class InstanceLocks extends Context.Tag("vigil/InstanceLocks")<InstanceLocks, InstanceLocksShape>() {
  /** Chosen by the store's dialect: advisory locks on PostgreSQL, none elsewhere. */
  static readonly Live = Layer.effect(
    InstanceLocks,
    Effect.map(SqlClient.SqlClient, (sql) => sql.onDialectOrElse({ pg: () => postgres(sql), orElse: () => none }))
  )
}
