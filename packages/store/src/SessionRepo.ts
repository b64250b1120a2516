import { SqlClient } from "@effect/sql"
import type { InstanceId, SessionStatus } from "@vigil/domain"
import { ErrorReason, Session, SessionId } from "@vigil/domain"
import { Effect, Option, Schema } from "effect"
import { decodeSessions, reasonJson } from "./Rows.js"

/** Ids bound in one statement at most (well under SQLite's and PostgreSQL's parameter limits). */
const chunk = 500

/** A busy or waiting session as the tree walks see it. */
export interface SessionLink {
  readonly id: SessionId
  readonly parentId: SessionId | null
  readonly status: "busy" | "waiting"
  readonly lastActivityAt: number
  readonly ownerId: InstanceId
}

const statuses = new Set<string>(["busy", "waiting", "idle", "cancelled", "error"])
const decodeReasonJson = Schema.decodeUnknownSync(Schema.parseJson(ErrorReason))
const text = (row: Record<string, unknown>, column: string): string => {
  const value = row[column]
  if (typeof value !== "string") throw new Error(`a session row whose ${column} is not text: ${JSON.stringify(row)}`)
  return value
}
const nullableText = (row: Record<string, unknown>, column: string): string | null => row[column] === null ? null : text(row, column)
/** BIGINT columns come back as numbers from SQLite and as strings from PostgreSQL. */
const millis = (row: Record<string, unknown>, column: string): number => {
  const value = typeof row[column] === "string" ? Number(row[column]) : row[column]
  if (typeof value !== "number" || !Number.isFinite(value)) throw new Error(`a session row whose ${column} is not a number: ${JSON.stringify(row)}`)
  return value
}

/**
 * A session from a raw (snake_case) row, checked by hand: the walks over the live tree read every
 * busy and waiting session (100,000 of them in a deep chain), and the client's name transform plus
 * a Schema decode of each cost ten times the query. A row of another shape is a bug: it dies.
 */
const sessionOfRow = (row: Record<string, unknown>): Session => {
  const status = text(row, "status")
  if (!statuses.has(status)) throw new Error(`a session row with an unknown status: ${JSON.stringify(row)}`)
  const cancelReason = row["cancel_reason"] === null ? null : decodeReasonJson(row["cancel_reason"])
  return new Session({
    id: SessionId.make(text(row, "id")),
    parentId: nullableText(row, "parent_id") as SessionId | null,
    parentPartId: nullableText(row, "parent_part_id") as Session["parentPartId"],
    title: text(row, "title"),
    status: status as Session["status"],
    cancelReason,
    lastActivityAt: millis(row, "last_activity_at"),
    ownerId: text(row, "owner_id") as Session["ownerId"],
    createdAt: millis(row, "created_at")
  }, { disableValidation: true })
}

/**
 * Sessions. Every status change is a compare-and-set on the current status, so two writers (a
 * turn ending, the idle monitor, an abort) cannot both win.
 */
export class SessionRepo extends Effect.Service<SessionRepo>()("vigil/SessionRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const raw = sql.withoutTransforms()
    const sessionsOfRows = (rows: ReadonlyArray<Record<string, unknown>>) => Effect.try(() => rows.map(sessionOfRow))

    const insert = Effect.fn("SessionRepo.insert")(function*(session: Session) {
      yield* sql`INSERT INTO sessions ${
        sql.insert({
          id: session.id,
          parentId: session.parentId,
          parentPartId: session.parentPartId,
          title: session.title,
          status: session.status,
          cancelReason: reasonJson(session.cancelReason),
          lastActivityAt: session.lastActivityAt,
          ownerId: session.ownerId,
          createdAt: session.createdAt
        })
      }`
    }, Effect.orDie)

    const get = Effect.fn("SessionRepo.get")(function*(id: SessionId) {
      const rows = yield* sql`SELECT * FROM sessions WHERE id = ${id}`.pipe(Effect.flatMap(decodeSessions))
      return Option.fromNullable(rows[0])
    }, Effect.orDie)

    const list = Effect.fn("SessionRepo.list")(function*(options: { readonly limit?: number } = {}) {
      return yield* sql`SELECT * FROM sessions ORDER BY created_at DESC, id DESC LIMIT ${options.limit ?? 1000}`.pipe(
        Effect.flatMap(decodeSessions)
      )
    }, Effect.orDie)

    const children = Effect.fn("SessionRepo.children")(function*(parentId: SessionId) {
      return yield* sql`SELECT * FROM sessions WHERE parent_id = ${parentId} ORDER BY id`.pipe(
        Effect.flatMap(decodeSessions)
      )
    }, Effect.orDie)

    /** Busy and waiting sessions (a small set, read through a partial index). */
    const active = Effect.fn("SessionRepo.active")(function*() {
      return yield* raw`SELECT * FROM sessions WHERE status IN ('busy', 'waiting')`.pipe(Effect.flatMap(sessionsOfRows))
    }, Effect.orDie)

    /**
     * The links and activity of the busy and waiting sessions, five narrow columns a row: what the
     * walks over the live tree (the watchdog's subtree activity, the idle monitor's leaves, a
     * tree's end) need, read cheaply enough for a tree 100,000 sessions deep.
     */
    const activeLinks = Effect.fn("SessionRepo.activeLinks")(function*() {
      const rows = yield* raw`SELECT id, parent_id, status, last_activity_at, owner_id FROM sessions WHERE status IN ('busy', 'waiting')`
      return yield* Effect.try(() =>
        rows.map((row): SessionLink => {
          const status = text(row, "status")
          if (status !== "busy" && status !== "waiting") throw new Error(`an active session row with status ${status}`)
          return {
            id: SessionId.make(text(row, "id")),
            parentId: nullableText(row, "parent_id") as SessionId | null,
            status,
            lastActivityAt: millis(row, "last_activity_at"),
            ownerId: text(row, "owner_id") as InstanceId
          }
        })
      )
    }, Effect.orDie)

    /**
     * Moves a session from one of `from` to `to` and counts the change as activity. Returns
     * whether it happened: false means another writer changed the status first.
     */
    const transition = Effect.fn("SessionRepo.transition")(function*(
      id: SessionId,
      from: ReadonlyArray<SessionStatus>,
      to: SessionStatus,
      options: { readonly at: number; readonly cancelReason?: ErrorReason | null; readonly ownerId?: InstanceId }
    ) {
      const rows = yield* sql`UPDATE sessions SET ${
        sql.update({
          status: to,
          lastActivityAt: options.at,
          ...(options.cancelReason !== undefined ? { cancelReason: reasonJson(options.cancelReason) } : {}),
          ...(options.ownerId !== undefined ? { ownerId: options.ownerId } : {})
        })
      } WHERE id = ${id} AND status IN ${sql.in(from)} RETURNING id`
      return rows.length > 0
    }, Effect.orDie)

    /**
     * `transition` over many sessions at once (a tree's end), in statements of at most `chunk`
     * ids; returns the ids it changed (whole rows back would cost more than the update).
     */
    const transitionMany = Effect.fn("SessionRepo.transitionMany")(function*(
      ids: ReadonlyArray<SessionId>,
      from: ReadonlyArray<SessionStatus>,
      to: SessionStatus,
      options: { readonly at: number; readonly cancelReason?: ErrorReason | null }
    ) {
      const changed: Array<SessionId> = []
      for (let i = 0; i < ids.length; i += chunk) {
        const rows = yield* raw`UPDATE sessions SET ${
          raw.update({
            status: to,
            last_activity_at: options.at,
            ...(options.cancelReason !== undefined ? { cancel_reason: reasonJson(options.cancelReason) } : {})
          })
        } WHERE id IN ${raw.in(ids.slice(i, i + chunk))} AND status IN ${raw.in(from)} RETURNING id`
        for (const row of rows) changed.push(SessionId.make(text(row, "id")))
      }
      return changed
    }, Effect.orDie)

    /** Several sessions by id (those that exist), in statements of at most `chunk` ids. */
    const getMany = Effect.fn("SessionRepo.getMany")(function*(ids: ReadonlyArray<SessionId>) {
      const found: Array<Session> = []
      for (let i = 0; i < ids.length; i += chunk) {
        found.push(...(yield* sql`SELECT * FROM sessions WHERE id IN ${sql.in(ids.slice(i, i + chunk))}`.pipe(Effect.flatMap(decodeSessions))))
      }
      return found
    }, Effect.orDie)

    /** Progress: moves `lastActivityAt` forward, never back. */
    const touch = Effect.fnUntraced(function*(ids: ReadonlyArray<SessionId>, at: number) {
      if (ids.length === 0) return
      yield* sql`UPDATE sessions SET last_activity_at = ${at} WHERE id IN ${sql.in(ids)} AND last_activity_at < ${at}`
    }, Effect.orDie)

    /** Owners that have busy or waiting sessions. */
    const activeOwners = Effect.fn("SessionRepo.activeOwners")(function*() {
      const rows = yield* sql<{ ownerId: string }>`SELECT DISTINCT owner_id FROM sessions WHERE status IN ('busy', 'waiting')`
      return rows.map((row) => row.ownerId as InstanceId)
    }, Effect.orDie)

    /**
     * Frees every busy/waiting session of a dead owner; fenced on the owner, so a live one is never
     * touched. On PostgreSQL a row another rescue holds is skipped, as for parts.
     */
    const endActiveOfOwner = Effect.fn("SessionRepo.endActiveOfOwner")(function*(
      ownerId: InstanceId,
      reason: ErrorReason,
      at: number
    ) {
      const cancelReason = reasonJson(reason)
      const rows = yield* sql.onDialectOrElse({
        pg: () =>
          sql<{ id: string }>`UPDATE sessions SET status = 'error', cancel_reason = ${cancelReason}, last_activity_at = ${at}
            WHERE id IN (
              SELECT id FROM sessions WHERE owner_id = ${ownerId} AND status IN ('busy', 'waiting') FOR UPDATE SKIP LOCKED
            ) AND owner_id = ${ownerId} AND status IN ('busy', 'waiting') RETURNING id`,
        orElse: () =>
          sql<{ id: string }>`UPDATE sessions SET status = 'error', cancel_reason = ${cancelReason}, last_activity_at = ${at}
            WHERE owner_id = ${ownerId} AND status IN ('busy', 'waiting') RETURNING id`
      })
      return rows.map((row) => SessionId.make(row.id))
    }, Effect.orDie)

    return { insert, get, getMany, list, children, active, activeLinks, transition, transitionMany, touch, activeOwners, endActiveOfOwner } as const
  })
}) {}
