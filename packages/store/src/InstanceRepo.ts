import { SqlClient } from "@effect/sql"
import type { InstanceId } from "@vigil/domain"
import { Instance } from "@vigil/domain"
import { Effect } from "effect"
import { decodeInstances } from "./Rows.js"
import { StoreTables } from "./Tables.js"

/** One row per boot of a server process: its lease is the heartbeat it renews. */
export class InstanceRepo extends Effect.Service<InstanceRepo>()("vigil/InstanceRepo", {
  effect: Effect.gen(function*() {
    // The raw client: columns as the database spells them, whatever transforms the app's client has.
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const instances = sql.literal((yield* StoreTables).instances)

    const register = Effect.fn("InstanceRepo.register")(function*(instance: Instance) {
      yield* sql`INSERT INTO ${instances} ${
        sql.insert({
          id: instance.id,
          pid: instance.pid,
          host: instance.host,
          proc_start: instance.procStart,
          started_at: instance.startedAt,
          heartbeat_at: instance.heartbeatAt,
          lease_millis: instance.leaseMillis,
          stopped_at: instance.stoppedAt
        })
      }`
    }, Effect.orDie)

    /** Renews the lease; false when the row is gone or was marked stopped (a peer declared us dead). */
    const heartbeat = Effect.fn("InstanceRepo.heartbeat")(function*(id: InstanceId, at: number) {
      const rows = yield* sql`UPDATE ${instances} SET heartbeat_at = ${at} WHERE id = ${id} AND stopped_at IS NULL RETURNING id`
      return rows.length > 0
    }, Effect.orDie)

    const stop = Effect.fn("InstanceRepo.stop")(function*(id: InstanceId, at: number) {
      yield* sql`UPDATE ${instances} SET stopped_at = ${at} WHERE id = ${id} AND stopped_at IS NULL`
    }, Effect.orDie)

    const getMany = Effect.fn("InstanceRepo.getMany")(function*(ids: ReadonlyArray<InstanceId>) {
      if (ids.length === 0) return []
      return yield* sql`SELECT * FROM ${instances} WHERE id IN ${sql.in(ids)}`.pipe(Effect.flatMap(decodeInstances))
    }, Effect.orDie)

    /** Instances not known to have stopped, newest first. */
    const listRunning = Effect.fn("InstanceRepo.listRunning")(function*() {
      return yield* sql`SELECT * FROM ${instances} WHERE stopped_at IS NULL ORDER BY started_at DESC`.pipe(
        Effect.flatMap(decodeInstances)
      )
    }, Effect.orDie)

    return { register, heartbeat, stop, getMany, listRunning } as const
  })
}) {}
