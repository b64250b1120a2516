import { SqlClient } from "@effect/sql"
import type { ErrorReason, InstanceId, SessionStatus } from "@vigil/domain"
import { Session, SessionId } from "@vigil/domain"
import { Effect, Option } from "effect"
import { decodeSessions, reasonJson } from "./Rows.js"

/** Ids bound in one statement at most (well under SQLite's and PostgreSQL's parameter limits). */
const chunk = 500

/**
 * Sessions. Every status change is a compare-and-set on the current status, so two writers (a
 * turn ending, the idle monitor, an abort) cannot both win.
 */
export class SessionRepo extends Effect.Service<SessionRepo>()("vigil/SessionRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

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
      return yield* sql`SELECT * FROM sessions WHERE status IN ('busy', 'waiting')`.pipe(
        Effect.flatMap(decodeSessions)
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
     * ids; returns the sessions it changed, as they are now.
     */
    const transitionMany = Effect.fn("SessionRepo.transitionMany")(function*(
      ids: ReadonlyArray<SessionId>,
      from: ReadonlyArray<SessionStatus>,
      to: SessionStatus,
      options: { readonly at: number; readonly cancelReason?: ErrorReason | null }
    ) {
      const changed: Array<Session> = []
      for (let i = 0; i < ids.length; i += chunk) {
        const rows = yield* sql`UPDATE sessions SET ${
          sql.update({
            status: to,
            lastActivityAt: options.at,
            ...(options.cancelReason !== undefined ? { cancelReason: reasonJson(options.cancelReason) } : {})
          })
        } WHERE id IN ${sql.in(ids.slice(i, i + chunk))} AND status IN ${sql.in(from)} RETURNING *`.pipe(Effect.flatMap(decodeSessions))
        changed.push(...rows)
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

    return { insert, get, getMany, list, children, active, transition, transitionMany, touch, activeOwners, endActiveOfOwner } as const
  })
}) {}
