import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import type { Connection } from "@effect/sql/SqlConnection"
import type { Statement } from "@effect/sql/Statement"
import { Effect, Exit, Option } from "effect"
import { SqliteAutocommit } from "./SqliteAutocommit.js"

/**
 * At most this many writes share one transaction, so that it stays short: better-sqlite3 blocks
 * the thread while it runs (a few ms at this size).
 */
export const maxBatch = 256

/**
 * After this many writes in a row found nobody to share their transaction with, writes stop
 * waiting for company: all the gathering yield would buy them is a hop of the scheduler (figure
 * 4's start of 10,000 tools one after another: 5.3 s with the yield, 3.7 s without). One write in
 * `probeEvery` still gathers, so a burst is noticed within that many writes and every write
 * gathers again.
 */
export const aloneBeforeSkipping = 32
export const probeEvery = 8

interface Write {
  readonly statement: Statement<unknown>
  /**
   * How the write ended, what its caller hears: set once, when it is final (its transaction
   * committed, or it ran again alone), or at the settling of its batch when nothing set it.
   */
  exit: Exit.Exit<unknown, SqlError> | undefined
  /** Its caller, while it waits (a lone write runs in its caller's own fiber and never waits). */
  resume: ((exit: Exit.Exit<unknown, SqlError>) => void) | undefined
}

const newWrite = (statement: Statement<unknown>): Write => ({ statement, exit: undefined, resume: undefined })

/**
 * The caller's wait for its write's batch: a one-shot callback rather than a `Deferred` (one per
 * write of every batch, on every tool call's path; a `Deferred` costs several times more to make
 * and to await). Interruptible: an interrupted caller stops waiting, and its later wake is a no-op.
 */
const settledOf = (write: Write): Effect.Effect<unknown, SqlError> =>
  Effect.async<unknown, SqlError>((resume) => {
    if (write.exit !== undefined) resume(write.exit)
    else write.resume = resume
  })

/** Wakes the caller with how its write ended, or, when nothing ended it, that it was cut off. */
const settleWrite = (write: Write) => {
  const exit = write.exit ??= Exit.die(new Error("the store closed before this write ran"))
  const resume = write.resume
  write.resume = undefined
  if (resume !== undefined) resume(exit)
}

/**
 * Group commit: the writes that concurrent fibers make in one scheduler turn share one
 * transaction, as databases batch their log flushes. A commit costs more than the small writes
 * in it (SQLite appends every page it changed to the WAL at each commit; PostgreSQL waits for a
 * round trip and a log flush), so a burst of tool calls pays for one commit, not one each.
 *
 * The first write of a turn opens a batch and yields once, so that the fibers already scheduled
 * in this turn run (and add their writes); then a fiber of its own runs them all between `BEGIN`
 * and `COMMIT`, and wakes their callers. A lone write runs as it would without this (autocommit);
 * after a long run of them, writes skip the gathering yield too, but for a probe now and then
 * (`aloneBeforeSkipping`, `probeEvery`).
 * A write returns only once its transaction is committed (what it returns, such as the rows of a
 * guarded `UPDATE … RETURNING`, is its own statement's: exact per write), so a caller that goes
 * on after it (a body that starts once its `running` row is written, a terminal state that is
 * reported) never goes on from something a crash could undo. When the batch fails
 * (a bad row, a full disk, a lost connection), it is rolled back and each of its writes is run
 * again on its own, so a bad row fails only its own write, and each gets its own error.
 *
 * The flush runs in a fiber of its own, so a caller can still be interrupted while it waits (its
 * write may then land or not, as an interrupted statement's may), and the others' writes go on.
 * Batches run one at a time: on PostgreSQL, where a commit is a round trip, the next turns'
 * writes gather meanwhile into the next batch. A caller already inside a transaction of its own
 * writes in it, unbatched: its write must commit or roll back with the rest of that transaction.
 * The statements are run on the connection as compiled, with no per-statement span and no row
 * transform: they are the repositories' own, of this client, on its raw (`withoutTransforms`) side.
 */
export class GroupCommit extends Effect.Service<GroupCommit>()("vigil/GroupCommit", {
  scoped: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const autocommit = Option.getOrUndefined(yield* Effect.serviceOption(SqliteAutocommit))
    const scope = yield* Effect.scope
    const lock = yield* Effect.makeSemaphore(1)
    // The batch that the current turn's writes join; `undefined` when none is gathering.
    let open: Array<Write> | undefined
    // How many writes in a row ran alone (nobody joined them, or they did not wait for anybody).
    let aloneInARow = 0

    // `BEGIN`, `COMMIT` and `ROLLBACK`: on SQLite prepared once, from the client's statement cache
    // (better-sqlite3's own transactions do the same; preparing `BEGIN` costs more than running it,
    // and a burst runs thousands of batches); elsewhere sent unprepared, as the client sends its own.
    const control: (conn: Connection, statement: string) => Effect.Effect<unknown, SqlError> = sql.onDialectOrElse({
      sqlite: () => (conn, statement) => conn.execute(statement, [], undefined),
      orElse: () => (conn, statement) => conn.executeUnprepared(statement, [], undefined)
    })

    // Each statement on the connection itself: a batch is spanned once, not once a statement.
    const execute = (conn: Connection, write: Write) => {
      const [text, params] = write.statement.compile()
      return conn.execute(text, params, undefined)
    }

    /**
     * A write that shares its transaction with nobody, as the client runs any statement (in
     * autocommit, no reserved connection, no turn at the batches' lock); on vigil's own SQLite
     * client, run on the connection at once when no transaction is open on it (a statement
     * through the client pays about 90 Effect steps for a scope and the client's semaphore, most
     * of what a sequential tool call's two writes cost), else through the client, behind it.
     */
    const lone = <A>(statement: Statement<A>): Effect.Effect<ReadonlyArray<A>, SqlError> =>
      autocommit === undefined ? statement : Effect.suspend(() => {
        const [text, params] = statement.compile()
        return (autocommit.run(text, params) as Exit.Exit<ReadonlyArray<A>, SqlError> | undefined) ?? statement
      })

    /** One write in its own (implicit) transaction. */
    const alone = (write: Write) => Effect.scoped(Effect.flatMap(sql.reserve, (conn) => execute(conn, write)))

    /** The batch in one transaction; false (rolled back) when any part of it failed. */
    const together = (batch: ReadonlyArray<Write>) =>
      Effect.scoped(Effect.gen(function*() {
        const conn = yield* sql.reserve
        yield* control(conn, "BEGIN")
        const exits: Array<Exit.Exit<unknown, SqlError>> = []
        for (const write of batch) {
          const exit = yield* Effect.exit(execute(conn, write))
          if (Exit.isFailure(exit)) break
          exits.push(exit)
        }
        if (exits.length < batch.length || Exit.isFailure(yield* Effect.exit(control(conn, "COMMIT")))) {
          // Best effort: a failed COMMIT may have ended the transaction already.
          yield* Effect.ignore(control(conn, "ROLLBACK"))
          return false
        }
        for (let i = 0; i < batch.length; i++) batch[i]!.exit = exits[i]
        return true
      }))

    const flush = (batch: ReadonlyArray<Write>) =>
      Effect.gen(function*() {
        if (batch.length === 1) batch[0]!.exit = yield* Effect.exit(alone(batch[0]!))
        else if (!(yield* together(batch).pipe(Effect.catchAllCause(() => Effect.succeed(false))))) {
          yield* Effect.logWarning(`a batch of ${batch.length} writes failed: each is run again on its own`)
          for (const write of batch) write.exit = yield* Effect.exit(alone(write))
        }
      })

    // Whatever ends the flush (the store's scope closing, say), every caller hears of its write:
    // how it ended, or that it was cut off (a write with no exit yet was not committed by us).
    const settle = (batch: ReadonlyArray<Write>) =>
      Effect.sync(() => {
        for (const write of batch) settleWrite(write)
      })

    const flushInTurn = (batch: Array<Write>) =>
      lock.withPermits(1)(Effect.suspend(() => {
        if (open === batch) open = undefined
        return flush(batch)
      })).pipe(Effect.ensuring(settle(batch)), Effect.annotateLogs({ module: "GroupCommit" }))

    /**
     * The first write of a turn yields once, so that the fibers already scheduled in this turn
     * can add theirs. If none did, it runs here, as a lone statement; else the batch is flushed by
     * a fiber of its own. Uninterruptible until that is decided: the batch's writes wait on it.
     */
    const lead = (batch: Array<Write>, write: Write) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.zipRight(
          Effect.yieldNow(),
          Effect.suspend(() => {
            if (batch.length === 1 && open === batch) {
              open = undefined
              aloneInARow++
              // On SQLite the client's own lock (or, on the autocommit lane, the open
              // transaction) orders it behind a batch in flight. The sequential path pays for
              // the one yield, nothing more.
              return restore(lone(write.statement))
            }
            aloneInARow = 0
            return Effect.zipRight(Effect.forkIn(flushInTurn(batch), scope), restore(settledOf(write)))
          })
        )
      )

    /** Runs `statement` in this turn's shared transaction and returns its rows once it is committed. */
    const run = <A>(statement: Statement<A>): Effect.Effect<ReadonlyArray<A>, SqlError> =>
      Effect.withFiberRuntime<ReadonlyArray<A>, SqlError>((fiber) => {
        if (fiber.currentContext.unsafeMap.has(SqlClient.TransactionConnection.key)) return statement
        if (open !== undefined) {
          const write = newWrite(statement)
          open.push(write)
          if (open.length >= maxBatch) open = undefined
          return settledOf(write) as Effect.Effect<ReadonlyArray<A>, SqlError>
        }
        // Long alone: this one does not wait for company (a probe, one in `probeEvery`, still does).
        if (aloneInARow >= aloneBeforeSkipping && ++aloneInARow % probeEvery !== 0) return lone(statement)
        const write = newWrite(statement)
        const batch = [write]
        open = batch
        return lead(batch, write) as Effect.Effect<ReadonlyArray<A>, SqlError>
      })

    return { run } as const
  })
}) {}
