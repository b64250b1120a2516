import { SqlClient } from "@effect/sql"
import type { InstanceId } from "@vigil/domain"
import { capText, ErrorReason, isPartTerminal, Part, PartId, SessionId } from "@vigil/domain"
import { Effect, Option, Schema } from "effect"
import { GroupCommit } from "./GroupCommit.js"
import { decodeParts, reasonJson } from "./Rows.js"
import { StoreTables } from "./Tables.js"

/** How much of a tool's output a part keeps (the domain's one definition). */
export { outputCapBytes } from "@vigil/domain"

/**
 * The last guard on a tool's or a model step's output, with the same head-and-tail cut as the shell
 * and the runner (whose text already fits, so this never cuts twice). A prompt or an assistant's
 * text is stored whole (the in-memory history of a turn shows the same): what the server accepted is never cut (the body limit bounds a prompt).
 */
export const capOutput = (output: string): string => capText(output)
const capPartOutput = (part: Part): string | null =>
  part.output === null ? null : part.kind === "prompt" || part.kind === "text" ? part.output : capOutput(part.output)

/** A running `task` the watchdog looks at: what its rule needs, and no more. */
export interface TaskCandidate {
  readonly id: PartId
  readonly sessionId: SessionId
  readonly startedAt: number
  readonly childSessionId: SessionId | null
}

/** What a rescue needs of a part it ended: its session, its tool and its recorded process. */
export interface EndedPart {
  readonly id: PartId
  readonly sessionId: SessionId
  readonly tool: string
  readonly pid: number | null
  readonly pgid: number | null
  readonly procStart: string | null
}

/** Ids bound in one statement at most (well under SQLite's and PostgreSQL's parameter limits). */
const chunk = 500

/**
 * Room a live row keeps for its end: written with the row while it is pending or running, and
 * given back by the write that ends it (`reserve = NULL`), so what that write adds (the reason as
 * JSON, `ended_at`) takes the room's place instead of growing the row. On SQLite a row that grows
 * past its page's free space splits the page: a rescue of 10,000 orphans scattered through a
 * million parts split 8,800 pages and wrote 3.4 times the pages it changed (issue 21). 80 bytes
 * hold a rescue's end (an `OrphanedByCrash` naming an instance id is 66 bytes of JSON, `ended_at`
 * 6 more) and the watchdog's and timeouts' reasons. Only live rows carry it, history none.
 */
export const reservedRoom = " ".repeat(80)
const reserveOf = (part: Part): string | null => (isPartTerminal(part.status) ? null : reservedRoom)

const kinds = new Set<string>(["prompt", "text", "model", "tool"])
const partStatuses = new Set<string>(["pending", "running", "completed", "error"])
const decodeReasonJson = Schema.decodeUnknownSync(Schema.parseJson(ErrorReason))

/**
 * A part from a raw (snake_case) row, checked by hand: the watchdog may read 100,000 candidates
 * (a deep tree older than task_timeout), and the client's name transform plus a Schema decode of
 * each cost several times the query. Same result as `decodeParts`; a row of another shape dies.
 */
const partOfRow = (row: Record<string, unknown>): Part => {
  const bad = (column: string): never => {
    throw new Error(`a part row whose ${column} is unexpected: ${JSON.stringify(row)}`)
  }
  const text = (column: string): string => (typeof row[column] === "string" ? row[column] as string : bad(column))
  const nullableText = (column: string): string | null => (row[column] === null ? null : text(column))
  const number = (column: string): number => {
    const value = typeof row[column] === "string" ? Number(row[column]) : row[column]
    return typeof value === "number" && Number.isFinite(value) ? value : bad(column)
  }
  const nullableNumber = (column: string): number | null => (row[column] === null ? null : number(column))
  const kind = text("kind")
  const status = text("status")
  if (!kinds.has(kind)) bad("kind")
  if (!partStatuses.has(status)) bad("status")
  return new Part({
    id: PartId.make(text("id")),
    sessionId: SessionId.make(text("session_id")),
    kind: kind as Part["kind"],
    tool: text("tool"),
    input: JSON.parse(text("input")) as unknown,
    callId: nullableText("call_id"),
    status: status as Part["status"],
    output: nullableText("output"),
    error: row["error"] === null ? null : decodeReasonJson(row["error"]),
    createdAt: number("created_at"),
    startedAt: nullableNumber("started_at"),
    endedAt: nullableNumber("ended_at"),
    deadlineAt: nullableNumber("deadline_at"),
    ownerId: text("owner_id") as Part["ownerId"],
    childSessionId: nullableText("child_session_id") as SessionId | null,
    pid: nullableNumber("pid"),
    pgid: nullableNumber("pgid"),
    procStart: nullableText("proc_start")
  }, { disableValidation: true })
}

const nullableNumber = (value: unknown): number | null => (value === null ? null : Number(value))

/**
 * Six plain columns, checked by hand: a rescue returns up to one row per orphan, and a Schema
 * decode of each would cost more than the update. A row of another shape is a bug: it dies.
 */
const decodeEndedPart = (row: Record<string, unknown>): EndedPart => {
  const { id, pgid, pid, proc_start: procStart, session_id: sessionId, tool } = row
  if (
    typeof id !== "string" || typeof sessionId !== "string" || typeof tool !== "string" ||
    (procStart !== null && typeof procStart !== "string")
  ) {
    throw new Error(`an ended part row of an unexpected shape: ${JSON.stringify(row)}`)
  }
  return {
    id: PartId.make(id),
    sessionId: SessionId.make(sessionId),
    tool,
    pid: nullableNumber(pid),
    pgid: nullableNumber(pgid),
    procStart
  }
}

/**
 * Parts. Every state change is a guarded write (the current status, and for terminal writes the
 * owner, are in the `WHERE`), and each reports whether it won:
 * - a completion never overwrites an error written by the watchdog, an abort or a rescue;
 * - a force-error never overwrites a completion;
 * - a terminal part is never rewritten.
 *
 * The writes on a tool call's path (`insert`, `complete`, `fail`) go through `GroupCommit`: the
 * calls of one scheduler turn share a transaction, and each returns once it is committed.
 */
export class PartRepo extends Effect.Service<PartRepo>()("vigil/PartRepo", {
  dependencies: [GroupCommit.Default],
  effect: Effect.gen(function*() {
    // The raw client: columns as the database spells them, whatever transforms the app's client
    // has. Reads of many narrow rows (the walks over the live tree) are mapped by hand: a name
    // transform costs several times the query on 100,000 rows.
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const tables = yield* StoreTables
    const parts = sql.literal(tables.parts)
    const sessions = sql.literal(tables.sessions)
    const commits = yield* GroupCommit

    // The columns spelled out (not `sql.insert`): the statement text is the same on every call, with
    // no per-call name transform, and it is on every tool call's path.
    const insert = Effect.fnUntraced(function*(part: Part) {
      yield* commits.run(sql`INSERT INTO ${parts} (id, session_id, kind, tool, input, call_id, status, output, error, created_at,
        started_at, ended_at, deadline_at, owner_id, child_session_id, pid, pgid, proc_start, reserve)
        VALUES (${part.id}, ${part.sessionId}, ${part.kind}, ${part.tool}, ${JSON.stringify(part.input ?? null)},
          ${part.callId}, ${part.status}, ${capPartOutput(part)}, ${reasonJson(part.error)},
          ${part.createdAt}, ${part.startedAt}, ${part.endedAt}, ${part.deadlineAt}, ${part.ownerId},
          ${part.childSessionId}, ${part.pid}, ${part.pgid}, ${part.procStart}, ${reserveOf(part)})`)
    }, Effect.orDie)

    const get = Effect.fn("PartRepo.get")(function*(id: PartId) {
      const rows = yield* sql`SELECT * FROM ${parts} WHERE id = ${id}`.pipe(Effect.flatMap(decodeParts))
      return Option.fromNullable(rows[0])
    }, Effect.orDie)

    /** A session's parts in the order they were made (ids sort by creation). */
    const bySession = Effect.fn("PartRepo.bySession")(function*(sessionId: SessionId) {
      return yield* sql`SELECT * FROM ${parts} WHERE session_id = ${sessionId} ORDER BY id`.pipe(
        Effect.flatMap(decodeParts)
      )
    }, Effect.orDie)

    /**
     * `running → completed`, only by its owner and only if nobody ended it first. A write the store
     * refuses is the caller's to handle (an `SqlError`, not a defect): a part's end rests on it.
     */
    const complete = Effect.fnUntraced(function*(
      id: PartId,
      options: { readonly ownerId: InstanceId; readonly output: string; readonly at: number }
    ) {
      const rows = yield* commits.run(sql`UPDATE ${parts} SET status = 'completed', output = ${capOutput(options.output)}, ended_at = ${options.at}, reserve = NULL
        WHERE id = ${id} AND status = 'running' AND owner_id = ${options.ownerId} RETURNING id`)
      return rows.length > 0
    })

    /**
     * `pending | running → error`. With `ownerId` the write is fenced on the owner (a rescue of a
     * dead owner's part must not land on a part another instance has since taken). A refused write
     * is the caller's to handle, as for `complete`.
     */
    const fail = Effect.fnUntraced(function*(
      id: PartId,
      options: {
        readonly reason: ErrorReason
        readonly at: number
        readonly ownerId?: InstanceId
        readonly output?: string | null
      }
    ) {
      const output = options.output === undefined || options.output === null ? null : capOutput(options.output)
      const rows = yield* commits.run(
        options.ownerId === undefined
          ? sql`UPDATE ${parts} SET status = 'error', error = ${reasonJson(options.reason)}, ended_at = ${options.at},
            output = COALESCE(${output}, output), reserve = NULL
            WHERE id = ${id} AND status IN ('pending', 'running') RETURNING id`
          : sql`UPDATE ${parts} SET status = 'error', error = ${reasonJson(options.reason)}, ended_at = ${options.at},
            output = COALESCE(${output}, output), reserve = NULL
            WHERE id = ${id} AND status IN ('pending', 'running') AND owner_id = ${options.ownerId} RETURNING id`
      )
      return rows.length > 0
    })

    const recordProcess = Effect.fn("PartRepo.recordProcess")(function*(
      id: PartId,
      process: { readonly pid: number; readonly pgid: number; readonly startTime: string }
    ) {
      yield* sql`UPDATE ${parts} SET pid = ${process.pid}, pgid = ${process.pgid}, proc_start = ${process.startTime} WHERE id = ${id}`
    }, Effect.orDie)

    const setChildSession = Effect.fn("PartRepo.setChildSession")(function*(id: PartId, childSessionId: SessionId) {
      yield* sql`UPDATE ${parts} SET child_session_id = ${childSessionId} WHERE id = ${id}`
    }, Effect.orDie)

    /** Every pending or running part (read through a partial index: the live set, not history). */
    const active = Effect.fn("PartRepo.active")(function*() {
      return yield* sql`SELECT * FROM ${parts} WHERE status IN ('pending', 'running')`.pipe(Effect.flatMap(decodeParts))
    }, Effect.orDie)

    const activeOfOwner = Effect.fn("PartRepo.activeOfOwner")(function*(ownerId: InstanceId) {
      return yield* sql`SELECT * FROM ${parts} WHERE owner_id = ${ownerId} AND status IN ('pending', 'running')`.pipe(
        Effect.flatMap(decodeParts)
      )
    }, Effect.orDie)

    /** The pending and running parts of these sessions, in statements of at most `chunk` ids. */
    const activeOfSessions = Effect.fn("PartRepo.activeOfSessions")(function*(sessionIds: ReadonlyArray<SessionId>) {
      const found: Array<Part> = []
      for (let i = 0; i < sessionIds.length; i += chunk) {
        const rows = yield* sql`SELECT * FROM ${parts} WHERE session_id IN ${sql.in(sessionIds.slice(i, i + chunk))} AND status IN ('pending', 'running')`
          .pipe(Effect.flatMap(decodeParts))
        found.push(...rows)
      }
      return found
    }, Effect.orDie)

    /** The ids of these sessions' pending and running parts (a tree's end needs no more). */
    const activeIdsOfSessions = Effect.fn("PartRepo.activeIdsOfSessions")(function*(sessionIds: ReadonlyArray<SessionId>) {
      const found: Array<PartId> = []
      for (let i = 0; i < sessionIds.length; i += chunk) {
        const rows = yield* sql<{ id: string }>`SELECT id FROM ${parts} WHERE session_id IN ${sql.in(sessionIds.slice(i, i + chunk))}
          AND status IN ('pending', 'running')`
        for (const row of rows) found.push(PartId.make(row.id))
      }
      return found
    }, Effect.orDie)

    /**
     * For each session with pending or running parts, the latest start among them (the creation
     * of one not started yet): the parts' share of a subtree's activity, one narrow row a session.
     */
    const activeActivity = Effect.fn("PartRepo.activeActivity")(function*() {
      const rows = yield* sql<{ session_id: string; at: number | string }>`SELECT session_id, MAX(COALESCE(started_at, created_at)) AS at
        FROM ${parts} WHERE status IN ('pending', 'running') GROUP BY session_id`
      const latest = new Map<string, number>()
      for (const row of rows) latest.set(row.session_id, Number(row.at))
      return latest
    }, Effect.orDie)

    /** `fail` (not fenced on the owner) over many parts at once; returns the ids it ended. */
    const failMany = Effect.fn("PartRepo.failMany")(function*(
      ids: ReadonlyArray<PartId>,
      options: { readonly reason: ErrorReason; readonly at: number; readonly ownerId?: InstanceId }
    ) {
      const error = reasonJson(options.reason)
      const ended: Array<PartId> = []
      const owned = options.ownerId === undefined ? sql`` : sql` AND owner_id = ${options.ownerId}`
      for (let i = 0; i < ids.length; i += chunk) {
        const rows = yield* sql<{ id: string }>`UPDATE ${parts} SET status = 'error', error = ${error}, ended_at = ${options.at}, reserve = NULL
          WHERE id IN ${sql.in(ids.slice(i, i + chunk))} AND status IN ('pending', 'running')${owned} RETURNING id`
        for (const row of rows) ended.push(PartId.make(row.id))
      }
      return ended
    }, Effect.orDie)

    /**
     * The watchdog's candidates among one owner's running parts: every `task` (a part of one of
     * `waitingTools`, the tools that wait on a child session: its rule looks at the child's
     * subtree), and the leaves whose deadline is at or before `deadlineBefore`. Healthy
     * leaves are filtered out in SQL, so a scan decodes nothing when nothing is late. The status
     * term repeats the partial index's own (`vigil_parts_active_owner`), so the planner may use it.
     */
    const stuckCandidates = Effect.fn("PartRepo.stuckCandidates")(function*(
      ownerId: InstanceId,
      options: {
        readonly deadlineBefore: number
        /** The tools whose parts wait on a child session (`task`), as their definitions say. */
        readonly waitingTools: ReadonlyArray<string>
        /**
         * With it, only the tasks that could be stuck: started at or before it (silent long
         * enough to break the silence rule), or whose child session has ended. Without it, every task.
         */
        readonly taskStartedBefore?: number
        /** Only the leaves (the tasks are read narrow, by `taskCandidates`). */
        readonly leavesOnly?: boolean
      }
    ) {
      const waiting = sql.in("tool", options.waitingTools)
      const tasks = options.leavesOnly
        ? sql`1 = 0`
        : options.taskStartedBefore === undefined
        ? waiting
        : sql`${waiting} AND (started_at <= ${options.taskStartedBefore} OR (child_session_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM ${sessions} WHERE ${sessions}.id = ${parts}.child_session_id AND ${sessions}.status IN ('busy', 'waiting'))))`
      const rows = yield* sql`SELECT * FROM ${parts} WHERE owner_id = ${ownerId} AND status IN ('pending', 'running')
        AND status = 'running' AND kind IN ('tool', 'model') AND started_at IS NOT NULL
        AND ((${tasks}) OR (deadline_at <= ${options.deadlineBefore}${options.leavesOnly ? sql` AND NOT (${waiting})` : sql``}))`
      return yield* Effect.try(() => rows.map(partOfRow))
    }, Effect.orDie)

    /**
     * The task candidates of `stuckCandidates` (with `taskStartedBefore`), four narrow columns a
     * row: a tree of 100,000 tasks older than task_timeout is read without whole rows; the
     * watchdog reads the whole part only of one it force-errors.
     */
    const taskCandidates = Effect.fn("PartRepo.taskCandidates")(function*(
      ownerId: InstanceId,
      options: { readonly taskStartedBefore: number; readonly waitingTools: ReadonlyArray<string> }
    ) {
      const rows = yield* sql`SELECT id, session_id, started_at, child_session_id FROM ${parts}
        WHERE owner_id = ${ownerId} AND status IN ('pending', 'running') AND status = 'running' AND kind IN ('tool', 'model')
        AND started_at IS NOT NULL AND ${sql.in("tool", options.waitingTools)} AND (started_at <= ${options.taskStartedBefore} OR (child_session_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM ${sessions} WHERE ${sessions}.id = ${parts}.child_session_id AND ${sessions}.status IN ('busy', 'waiting'))))`
      return rows.map((row): TaskCandidate => ({
        id: PartId.make(String(row["id"])),
        sessionId: SessionId.make(String(row["session_id"])),
        startedAt: Number(row["started_at"]),
        childSessionId: row["child_session_id"] === null ? null : SessionId.make(String(row["child_session_id"]))
      }))
    }, Effect.orDie)

    /** Owners that have pending or running parts. */
    const activeOwners = Effect.fn("PartRepo.activeOwners")(function*() {
      const rows = yield* sql<{ owner_id: string }>`SELECT DISTINCT owner_id FROM ${parts} WHERE status IN ('pending', 'running')`
      return rows.map((row) => row.owner_id as InstanceId)
    }, Effect.orDie)

    /**
     * Ends every pending/running part of a dead owner in one fenced statement, returning what the
     * caller needs of each part it ended (its session, its tool and its recorded process, so those
     * can be ended too): a rescue may end thousands, and their whole rows are not read back. The
     * status fence already makes a second rescue a no-op; on PostgreSQL, where several instances
     * on several hosts may rescue the same owner at once, the rows are also locked and a row
     * another rescue holds is skipped rather than waited for, so concurrent rescues return
     * disjoint sets.
     */
    const endActiveOfOwner = Effect.fn("PartRepo.endActiveOfOwner")(function*(
      ownerId: InstanceId,
      reason: ErrorReason,
      at: number
    ) {
      const error = reasonJson(reason)
      const rows = yield* sql.onDialectOrElse({
        pg: () =>
          sql`UPDATE ${parts} SET status = 'error', error = ${error}, ended_at = ${at}, reserve = NULL
            WHERE id IN (
              SELECT id FROM ${parts} WHERE owner_id = ${ownerId} AND status IN ('pending', 'running') FOR UPDATE SKIP LOCKED
            ) AND owner_id = ${ownerId} AND status IN ('pending', 'running')
            RETURNING id, session_id, tool, pid, pgid, proc_start`,
        orElse: () =>
          sql`UPDATE ${parts} SET status = 'error', error = ${error}, ended_at = ${at}, reserve = NULL
            WHERE owner_id = ${ownerId} AND status IN ('pending', 'running')
            RETURNING id, session_id, tool, pid, pgid, proc_start`
      })
      return rows.map(decodeEndedPart)
    }, Effect.orDie)

    // --- pages (GET /session/:id/part, GET /part/active): keyset on the id -------------------

    /**
     * One page of a session's parts in the order they were made, after the part id `after`:
     * keyset on the id (ids sort by creation), through `parts_session (session_id, id)`.
     * `limit + 1` rows are read to know whether another page follows.
     */
    const pageOfSession = Effect.fn("PartRepo.pageOfSession")(function*(
      sessionId: SessionId,
      options: { readonly limit: number; readonly after?: string | undefined }
    ) {
      const rows = yield* (options.after === undefined
        ? sql`SELECT * FROM ${parts} WHERE session_id = ${sessionId} ORDER BY id LIMIT ${options.limit + 1}`
        : sql`SELECT * FROM ${parts} WHERE session_id = ${sessionId} AND id > ${options.after} ORDER BY id LIMIT ${options.limit + 1}`)
      const items = yield* Effect.try(() => rows.slice(0, options.limit).map(partOfRow))
      return { items, more: rows.length > options.limit }
    }, Effect.orDie)

    /**
     * One page of the pending and running parts of every session, by id, after `after`: read
     * through the partial index `parts_active_id`, so it costs the live rows, not the history.
     */
    const pageActive = Effect.fn("PartRepo.pageActive")(function*(
      options: { readonly limit: number; readonly after?: string | undefined }
    ) {
      const rows = yield* (options.after === undefined
        ? sql`SELECT * FROM ${parts} WHERE status IN ('pending', 'running') ORDER BY id LIMIT ${options.limit + 1}`
        : sql`SELECT * FROM ${parts} WHERE status IN ('pending', 'running') AND id > ${options.after} ORDER BY id LIMIT ${
          options.limit + 1
        }`)
      const items = yield* Effect.try(() => rows.slice(0, options.limit).map(partOfRow))
      return { items, more: rows.length > options.limit }
    }, Effect.orDie)

    /** How many parts `ownerId` runs now (`GET /metrics`), through the partial index of live rows. */
    const countRunningOfOwner = Effect.fn("PartRepo.countRunningOfOwner")(function*(ownerId: InstanceId) {
      const rows = yield* sql`SELECT COUNT(*) AS n FROM ${parts} WHERE owner_id = ${ownerId} AND status IN ('pending', 'running')
        AND status = 'running'`
      return Number(rows[0]?.["n"] ?? 0)
    }, Effect.orDie)

    return {
      insert,
      get,
      bySession,
      pageOfSession,
      pageActive,
      countRunningOfOwner,
      complete,
      fail,
      recordProcess,
      setChildSession,
      active,
      activeOfOwner,
      activeOfSessions,
      failMany,
      activeIdsOfSessions,
      activeActivity,
      activeOwners,
      stuckCandidates,
      taskCandidates,
      endActiveOfOwner
    } as const
  })
}) {}
