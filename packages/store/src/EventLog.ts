import { SqlClient } from "@effect/sql"
import type { ErrorReason, InstanceId, PartId, SessionId } from "@vigil/domain"
import { Effect } from "effect"
import { decodeEvents, reasonJson } from "./Rows.js"
import { StoreTables } from "./Tables.js"

export interface EventInput {
  readonly type: string
  readonly at: number
  readonly instanceId?: InstanceId | null
  readonly sessionId?: SessionId | null
  readonly partId?: PartId | null
  readonly reason?: ErrorReason | null
  readonly data?: unknown
}

/** The append-only log of every state change the supervision layer made on its own, with why. */
export class EventLog extends Effect.Service<EventLog>()("vigil/EventLog", {
  effect: Effect.gen(function*() {
    // The raw client: columns as the database spells them, whatever transforms the app's client has.
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const events = sql.literal((yield* StoreTables).events)

    const append = Effect.fn("EventLog.append")(function*(event: EventInput) {
      const rows = yield* sql<{ id: number | string }>`INSERT INTO ${events} ${
        sql.insert({
          type: event.type,
          at: event.at,
          instance_id: event.instanceId ?? null,
          session_id: event.sessionId ?? null,
          part_id: event.partId ?? null,
          reason: reasonJson(event.reason ?? null),
          data: event.data === undefined ? null : JSON.stringify(event.data)
        })
      } RETURNING id`
      return Number(rows[0]!.id)
    }, Effect.orDie)

    const list = Effect.fn("EventLog.list")(function*(
      options: { readonly sessionId?: SessionId; readonly type?: string; readonly limit?: number } = {}
    ) {
      const limit = options.limit ?? 500
      const rows = options.sessionId !== undefined
        ? yield* sql`SELECT * FROM ${events} WHERE session_id = ${options.sessionId} ORDER BY id DESC LIMIT ${limit}`
        : options.type !== undefined
        ? yield* sql`SELECT * FROM ${events} WHERE type = ${options.type} ORDER BY id DESC LIMIT ${limit}`
        : yield* sql`SELECT * FROM ${events} ORDER BY id DESC LIMIT ${limit}`
      return yield* decodeEvents(rows)
    }, Effect.orDie)

    return { append, list } as const
  })
}) {}
