import { SqlClient } from "@effect/sql"
import type { InstanceId, SessionStatus } from "@vigil/domain"
import { ErrorReason, isSessionActive, Session, SessionId } from "@vigil/domain"
import { Effect, Option, Schema } from "effect"
import { GroupCommit } from "./GroupCommit.js"
import { decodeReason, decodeSessions, reasonJson } from "./Rows.js"
import { StoreTables } from "./Tables.js"

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
  // The same GroupCommit as PartRepo's (one layer, built once per store): a tool call's activity
  // touches share the transaction of the part writes made in the same turn.
  dependencies: [GroupCommit.Default],
  effect: Effect.gen(function*() {
    // The raw client: columns as the database spells them, whatever transforms the app's client
    // has, and no per-row name transform on the walks over 100,000 rows.
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const sessions = sql.literal((yield* StoreTables).sessions)
    const commits = yield* GroupCommit
    const sessionsOfRows = (rows: ReadonlyArray<Record<string, unknown>>) => Effect.try(() => rows.map(sessionOfRow))

    const insert = Effect.fn("SessionRepo.insert")(function*(session: Session) {
      yield* sql`INSERT INTO ${sessions} ${
        sql.insert({
          id: session.id,
          parent_id: session.parentId,
          parent_part_id: session.parentPartId,
          title: session.title,
          status: session.status,
          cancel_reason: reasonJson(session.cancelReason),
          last_activity_at: session.lastActivityAt,
          owner_id: session.ownerId,
          created_at: session.createdAt
        })
      }`
    }, Effect.orDie)

    const get = Effect.fn("SessionRepo.get")(function*(id: SessionId) {
      const rows = yield* sql`SELECT * FROM ${sessions} WHERE id = ${id}`.pipe(Effect.flatMap(decodeSessions))
      return Option.fromNullable(rows[0])
    }, Effect.orDie)

    const list = Effect.fn("SessionRepo.list")(function*(options: { readonly limit?: number } = {}) {
      return yield* sql`SELECT * FROM ${sessions} ORDER BY created_at DESC, id DESC LIMIT ${options.limit ?? 1000}`.pipe(
        Effect.flatMap(decodeSessions)
      )
    }, Effect.orDie)

    const children = Effect.fn("SessionRepo.children")(function*(parentId: SessionId) {
      return yield* sql`SELECT * FROM ${sessions} WHERE parent_id = ${parentId} ORDER BY id`.pipe(
        Effect.flatMap(decodeSessions)
      )
    }, Effect.orDie)

    /** Busy and waiting sessions (a small set, read through a partial index). */
    const active = Effect.fn("SessionRepo.active")(function*() {
      return yield* sql`SELECT * FROM ${sessions} WHERE status IN ('busy', 'waiting')`.pipe(Effect.flatMap(sessionsOfRows))
    }, Effect.orDie)

    /**
     * The links and activity of the busy and waiting sessions, five narrow columns a row: what the
     * walks over the live tree (the watchdog's subtree activity, the idle monitor's leaves, a
     * tree's end) need, read cheaply enough for a tree 100,000 sessions deep.
     */
    const activeLinks = Effect.fn("SessionRepo.activeLinks")(function*() {
      const rows = yield* sql`SELECT id, parent_id, status, last_activity_at, owner_id FROM ${sessions} WHERE status IN ('busy', 'waiting')`
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
     * whether it happened: false means another writer changed the status first. With `turnId` the
     * write is fenced on the turn that holds the session: a turn that lost it moves nothing. A
     * session put at rest has no cancel request left.
     */
    const transition = Effect.fn("SessionRepo.transition")(function*(
      id: SessionId,
      from: ReadonlyArray<SessionStatus>,
      to: SessionStatus,
      options: {
        readonly at: number
        readonly cancelReason?: ErrorReason | null
        readonly ownerId?: InstanceId
        readonly turnId?: string
      }
    ) {
      const rows = yield* sql`UPDATE ${sessions} SET ${
        sql.update({
          status: to,
          last_activity_at: options.at,
          ...(options.cancelReason !== undefined ? { cancel_reason: reasonJson(options.cancelReason) } : {}),
          ...(options.ownerId !== undefined ? { owner_id: options.ownerId } : {}),
          ...(isSessionActive(to) ? {} : { cancel_request: null })
        })
      } WHERE id = ${id} AND status IN ${sql.in(from)}${
        options.turnId === undefined ? sql`` : sql` AND turn_id = ${options.turnId}`
      } RETURNING id`
      return rows.length > 0
    }, Effect.orDie)

    /**
     * `transition` over many sessions at once (a tree's end), in statements of at most `chunk`
     * ids; returns the ids it changed (whole rows back would cost more than the update). With
     * `ownerId`, only the sessions that instance holds move: a tree's end never takes a session
     * another live instance runs.
     */
    const transitionMany = Effect.fn("SessionRepo.transitionMany")(function*(
      ids: ReadonlyArray<SessionId>,
      from: ReadonlyArray<SessionStatus>,
      to: SessionStatus,
      options: { readonly at: number; readonly cancelReason?: ErrorReason | null; readonly ownerId?: InstanceId }
    ) {
      const changed: Array<SessionId> = []
      for (let i = 0; i < ids.length; i += chunk) {
        const rows = yield* sql`UPDATE ${sessions} SET ${
          sql.update({
            status: to,
            last_activity_at: options.at,
            ...(options.cancelReason !== undefined ? { cancel_reason: reasonJson(options.cancelReason) } : {}),
            ...(isSessionActive(to) ? {} : { cancel_request: null })
          })
        } WHERE id IN ${sql.in(ids.slice(i, i + chunk))} AND status IN ${sql.in(from)}${
          options.ownerId === undefined ? sql`` : sql` AND owner_id = ${options.ownerId}`
        } RETURNING id`
        for (const row of rows) changed.push(SessionId.make(text(row, "id")))
      }
      return changed
    }, Effect.orDie)

    /** Several sessions by id (those that exist), in statements of at most `chunk` ids. */
    const getMany = Effect.fn("SessionRepo.getMany")(function*(ids: ReadonlyArray<SessionId>) {
      const found: Array<Session> = []
      for (let i = 0; i < ids.length; i += chunk) {
        found.push(...(yield* sql`SELECT * FROM ${sessions} WHERE id IN ${sql.in(ids.slice(i, i + chunk))}`.pipe(Effect.flatMap(decodeSessions))))
      }
      return found
    }, Effect.orDie)

    /**
     * Claims a session at rest for a new turn: `busy`, owned by `ownerId`, held by `turnId`, in one
     * compare-and-set, so of two instances (or two requests) claiming at once exactly one wins, and
     * a session runs at most one turn whoever asks where.
     */
    const claim = Effect.fn("SessionRepo.claim")(function*(
      id: SessionId,
      options: { readonly ownerId: InstanceId; readonly turnId: string; readonly at: number }
    ) {
      const rows = yield* sql`UPDATE ${sessions} SET status = 'busy', owner_id = ${options.ownerId}, turn_id = ${options.turnId},
          cancel_reason = NULL, cancel_request = NULL, last_activity_at = ${options.at}
        WHERE id = ${id} AND status IN ('idle', 'cancelled', 'error') RETURNING id`
      return rows.length > 0
    }, Effect.orDie)

    /** Who holds a session now: its status, owner and turn (none for an unknown id). */
    const holder = Effect.fn("SessionRepo.holder")(function*(id: SessionId) {
      const rows = yield* sql<{ status: string; owner_id: string; turn_id: string | null }>`
        SELECT status, owner_id, turn_id FROM ${sessions} WHERE id = ${id}`
      const row = rows[0]
      return row === undefined
        ? Option.none()
        : Option.some({ status: row.status as SessionStatus, ownerId: row.owner_id as InstanceId, turnId: row.turn_id })
    }, Effect.orDie)

    /**
     * Asks the owner of a session's turn to abort it, with `reason` (the first request's reason
     * stays). Fenced on the turn: a request for a turn that already ended is not made (false).
     */
    const requestCancel = Effect.fn("SessionRepo.requestCancel")(function*(
      id: SessionId,
      options: { readonly turnId: string | null; readonly reason: ErrorReason }
    ) {
      const rows = yield* sql`UPDATE ${sessions} SET cancel_request = COALESCE(cancel_request, ${reasonJson(options.reason)})
        WHERE id = ${id} AND status IN ('busy', 'waiting') AND ${
        options.turnId === null ? sql`turn_id IS NULL` : sql`turn_id = ${options.turnId}`
      } RETURNING id`
      return rows.length > 0
    }, Effect.orDie)

    /** The aborts other instances asked of `ownerId`, for sessions it still holds (through a partial index). */
    const cancelRequests = Effect.fn("SessionRepo.cancelRequests")(function*(ownerId: InstanceId) {
      const rows = yield* sql<{ id: string; turn_id: string | null; cancel_request: string }>`
        SELECT id, turn_id, cancel_request FROM ${sessions}
        WHERE owner_id = ${ownerId} AND cancel_request IS NOT NULL AND status IN ('busy', 'waiting')`
      return yield* Effect.forEach(rows, (row) =>
        decodeReason(row.cancel_request).pipe(
          Effect.map((reason) => ({ id: SessionId.make(row.id), turnId: row.turn_id, reason }))
        ))
    }, Effect.orDie)

    /** Progress: moves `lastActivityAt` forward, never back. */
    const touch = Effect.fnUntraced(function*(ids: ReadonlyArray<SessionId>, at: number) {
      if (ids.length === 0) return
      yield* commits.run(sql`UPDATE ${sessions} SET last_activity_at = ${at} WHERE id IN ${sql.in(ids)} AND last_activity_at < ${at}`)
    }, Effect.orDie)

    /** Owners that have busy or waiting sessions. */
    const activeOwners = Effect.fn("SessionRepo.activeOwners")(function*() {
      const rows = yield* sql<{ owner_id: string }>`SELECT DISTINCT owner_id FROM ${sessions} WHERE status IN ('busy', 'waiting')`
      return rows.map((row) => row.owner_id as InstanceId)
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
          sql<{ id: string }>`UPDATE ${sessions} SET status = 'error', cancel_reason = ${cancelReason}, cancel_request = NULL,
            last_activity_at = ${at}
            WHERE id IN (
              SELECT id FROM ${sessions} WHERE owner_id = ${ownerId} AND status IN ('busy', 'waiting') FOR UPDATE SKIP LOCKED
            ) AND owner_id = ${ownerId} AND status IN ('busy', 'waiting') RETURNING id`,
        orElse: () =>
          sql<{ id: string }>`UPDATE ${sessions} SET status = 'error', cancel_reason = ${cancelReason}, cancel_request = NULL,
            last_activity_at = ${at}
            WHERE owner_id = ${ownerId} AND status IN ('busy', 'waiting') RETURNING id`
      })
      return rows.map((row) => SessionId.make(row.id))
    }, Effect.orDie)

    // --- pages (GET /session): keyset, newest first -------------------------------------------

    /**
     * One page of sessions, newest first, after `after` (the last session of the previous page):
     * keyset on (created_at, id), read through `sessions_created`, so page 1,000 costs what page 1
     * does and a session made while a client pages is never skipped or repeated. `limit + 1` rows
     * are read to know whether another page follows.
     */
    const page = Effect.fn("SessionRepo.page")(function*(options: {
      readonly limit: number
      readonly after?: { readonly createdAt: number; readonly id: string } | undefined
    }) {
      const after = options.after
      const rows = yield* (after === undefined
        ? sql`SELECT * FROM ${sessions} ORDER BY created_at DESC, id DESC LIMIT ${options.limit + 1}`
        // The range term first, so the planner walks the index from the cursor down.
        : sql`SELECT * FROM ${sessions} WHERE created_at <= ${after.createdAt}
            AND (created_at < ${after.createdAt} OR id < ${after.id})
            ORDER BY created_at DESC, id DESC LIMIT ${options.limit + 1}`)
      const items = yield* sessionsOfRows(rows.slice(0, options.limit))
      return { items, more: rows.length > options.limit }
    }, Effect.orDie)

    /** How many sessions `ownerId` holds busy and waiting now (`GET /metrics`), through the partial index. */
    const countActiveOfOwner = Effect.fn("SessionRepo.countActiveOfOwner")(function*(ownerId: InstanceId) {
      const rows = yield* sql`SELECT status, COUNT(*) AS n FROM ${sessions} WHERE owner_id = ${ownerId} AND status IN ('busy', 'waiting')
        GROUP BY status`
      const count = (status: string) => Number(rows.find((row) => row["status"] === status)?.["n"] ?? 0)
      return { busy: count("busy"), waiting: count("waiting") }
    }, Effect.orDie)

    return {
      insert,
      get,
      getMany,
      list,
      page,
      countActiveOfOwner,
      children,
      active,
      activeLinks,
      transition,
      transitionMany,
      claim,
      holder,
      requestCancel,
      cancelRequests,
      touch,
      activeOwners,
      endActiveOfOwner
    } as const
  })
}) {}
