import type { SqlError } from "@effect/sql/SqlError"
import type { Exit } from "effect"
import { Context } from "effect"

/**
 * A write run on the SQLite connection at once, in autocommit, in the step that checks that no
 * transaction is open on it (better-sqlite3 is synchronous, so nothing runs between the check
 * and the write). Only vigil's own SQLite client (`SqliteLive`) provides it; on any other client
 * the store's writes go through the client as every statement does.
 */
export class SqliteAutocommit extends Context.Tag("vigil/SqliteAutocommit")<SqliteAutocommit, {
  /**
   * Runs a compiled statement (text and parameters, rows untransformed) and returns how it
   * ended, committed; or `undefined`, having run nothing, when a transaction is open on the
   * connection (the write would join it, and be undone by its rollback): then the caller
   * goes through the client, whose semaphore queues it behind that transaction.
   */
  readonly run: (sql: string, params: ReadonlyArray<unknown>) => Exit.Exit<ReadonlyArray<unknown>, SqlError> | undefined
}>() {}
