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

/**
 * The event types that are state markers: a row that says "this part (session) changed here", so
 * a resumed stream can replay the change (from the row as it now is) at its place in the log.
 */
export const stateMarkerTypes = ["part.updated", "session.updated"] as const

/** The append-only log of every state change the supervision layer made on its own, with why. */
/** An event as its row: columns spelled as the table has them (no name transform needed). */
const rowOf = (event: EventInput) => ({
  type: event.type,
  at: event.at,
  instance_id: event.instanceId ?? null,
  session_id: event.sessionId ?? null,
  part_id: event.partId ?? null,
  reason: reasonJson(event.reason ?? null),
  data: event.data === undefined ? null : JSON.stringify(event.data)
})

export class EventLog extends Effect.Service<EventLog>()("vigil/EventLog", {
  effect: Effect.gen(function*() {
    // The raw client: columns as the database spells them, whatever transforms the app's client has.
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const table = (yield* StoreTables).events
    const events = sql.literal(table)
    const placeholder = sql.onDialectOrElse({ pg: () => (n: number) => `$${n}`, orElse: () => (_: number) => "?" })
    /**
     * `appendMany`'s statement for `rows` rows, built by hand and, for the usual sizes, once:
     * compiling `sql.insert` for a batch of markers cost more than running it (22 rows: ~150 µs
     * of ~360 on the CI machine, with a batch every few tool calls).
     */
    const appendTexts = new Map<number, string>()
    const appendText = (rows: number) => {
      const known = appendTexts.get(rows)
      if (known !== undefined) return known
      const values = Array.from({ length: rows }, (_, row) => `(${Array.from({ length: 7 }, (_, column) => placeholder(row * 7 + column + 1)).join(", ")})`)
      const text = `INSERT INTO ${table} (type, at, instance_id, session_id, part_id, reason, data) VALUES ${values.join(", ")} RETURNING id`
      if (rows <= 64) appendTexts.set(rows, text)
      return text
    }

    const append = Effect.fn("EventLog.append")(function*(event: EventInput) {
      const rows = yield* sql<{ id: number | string }>`INSERT INTO ${events} ${sql.insert(rowOf(event))} RETURNING id`
      return Number(rows[0]!.id)
    }, Effect.orDie)

    const list = Effect.fn("EventLog.list")(function*(
      options: { readonly sessionId?: SessionId; readonly type?: string; readonly limit?: number } = {}
    ) {
      const limit = options.limit ?? 500
      // State markers (see `appendMany`) are positions of the live stream, not supervision actions.
      const rows = options.sessionId !== undefined
        ? yield* sql`SELECT * FROM ${events} WHERE session_id = ${options.sessionId} AND type NOT IN ${sql.in(stateMarkerTypes)} ORDER BY id DESC LIMIT ${limit}`
        : options.type !== undefined
        ? yield* sql`SELECT * FROM ${events} WHERE type = ${options.type} ORDER BY id DESC LIMIT ${limit}`
        : yield* sql`SELECT * FROM ${events} WHERE type NOT IN ${sql.in(stateMarkerTypes)} ORDER BY id DESC LIMIT ${limit}`
      return yield* decodeEvents(rows)
    }, Effect.orDie)

    /**
     * One page of the supervision log, newest first, before the event id `before` (the last of the
     * previous page): keyset on the id, so a page costs its rows and an event logged while a client
     * pages is never skipped or repeated. `limit + 1` rows are read to know whether more follow.
     */
    const page = Effect.fn("EventLog.page")(function*(options: {
      readonly limit: number
      readonly sessionId?: SessionId | undefined
      readonly before?: number | undefined
    }) {
      const before = options.before === undefined ? sql`` : sql`AND id < ${options.before}`
      const session = options.sessionId === undefined ? sql`` : sql`AND session_id = ${options.sessionId}`
      const rows = yield* sql`SELECT * FROM ${events} WHERE type NOT IN ${sql.in(stateMarkerTypes)} ${session} ${before}
        ORDER BY id DESC LIMIT ${options.limit + 1}`
      const items = yield* decodeEvents(rows.slice(0, options.limit))
      return { items, more: rows.length > options.limit }
    }, Effect.orDie)

    // --- the live stream's positions (see runtime `Events`) -------------------------------------
    // Column names are spelled out (snake_case), so these run on a client with or without name transforms.

    /**
     * Appends several events in one statement; their ids, in the order given. One statement for a
     * batch is what keeps a state marker per `part.updated` cheap (see runtime `Events`).
     */
    const appendMany = Effect.fnUntraced(function*(inputs: ReadonlyArray<EventInput>) {
      if (inputs.length === 0) return [] as Array<number>
      const params: Array<unknown> = []
      for (const input of inputs) {
        const row = rowOf(input)
        params.push(row.type, row.at, row.instance_id, row.session_id, row.part_id, row.reason, row.data)
      }
      const rows = yield* sql.unsafe<{ id: number | string }>(appendText(inputs.length), params)
      // Rows are numbered in the order of VALUES (one writer's batch); RETURNING's order is not promised.
      return rows.map((row) => Number(row.id)).sort((a, b) => a - b)
    }, Effect.orDie)

    /** Up to `limit` events after `id`, oldest first: what a resuming stream replays. */
    const after = Effect.fn("EventLog.after")(function*(id: number, limit: number) {
      return yield* decodeEvents(yield* sql`SELECT * FROM ${events} WHERE id > ${id} ORDER BY id LIMIT ${limit}`)
    }, Effect.orDie)

    /** The newest id (0 on an empty log). */
    const head = sql<{ id: number | string | null }>`SELECT MAX(id) AS id FROM ${events}`.pipe(
      Effect.map((rows) => Number(rows[0]?.id ?? 0)),
      Effect.orDie
    )

    /** Deletes up to `batch` state markers older than `belowId`; how many went. Supervision events stay. */
    const pruneMarkers = Effect.fn("EventLog.pruneMarkers")(function*(belowId: number, batch: number) {
      const rows = yield* sql<{ id: number | string }>`DELETE FROM ${events} WHERE id IN (
        SELECT id FROM ${events} WHERE id < ${belowId} AND type IN ${sql.in(stateMarkerTypes)} ORDER BY id LIMIT ${batch}
      ) RETURNING id`
      return rows.length
    }, Effect.orDie)

    return { append, list, page, appendMany, after, head, pruneMarkers } as const
  })
}) {}
