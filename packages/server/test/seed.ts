import { SqlClient } from "@effect/sql"
import { Instance, newPart, Session } from "@vigil/domain"
import type { InstanceId, Part } from "@vigil/domain"
import { InstanceRepo, PartRepo, SessionRepo } from "@vigil/store"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Effect } from "effect"
import { hostname } from "node:os"

/**
 * Rows written straight into a server's database file, as a long-lived server holds them: what a
 * test of pages or of the dashboard needs in thousands, faster than through the API.
 */

/** This test process as a live instance with a day's lease: neither recovery nor the watchdog ends what it owns. */
export const liveInstance = (id: InstanceId, now: number) =>
  new Instance({ id, pid: process.pid, host: hostname(), procStart: null, startedAt: now, heartbeatAt: now, leaseMillis: 86_400_000, stoppedAt: null })

/** A session row with the defaults of a new top-level session. */
export const sessionRow = (fields: Pick<Session, "id" | "ownerId" | "createdAt"> & Partial<Session>) =>
  new Session({ parentId: null, parentPartId: null, title: fields.id, status: "idle", cancelReason: null, lastActivityAt: fields.createdAt, ...fields })

/**
 * A `bash` part row in the given state, its times consistent with it: started unless pending,
 * ended when completed, an hour's deadline while running.
 */
export const bashPartRow = (fields: Pick<Part, "id" | "sessionId" | "ownerId" | "createdAt" | "status"> & Partial<Part>) =>
  newPart({
    kind: "tool",
    tool: "bash",
    input: { command: "true" },
    startedAt: fields.status === "pending" ? null : fields.createdAt,
    endedAt: fields.status === "completed" ? fields.createdAt : null,
    deadlineAt: fields.status === "running" ? fields.createdAt + 3_600_000 : null,
    ...fields
  })

/**
 * Registers `owner` as live and runs `write` in one transaction on the file's store (thousands of
 * rows in one commit, not one each).
 */
export const seedDatabase = (
  db: string,
  owner: InstanceId,
  write: (store: { readonly now: number; readonly sessions: SessionRepo; readonly parts: PartRepo }) => Effect.Effect<void>
): Promise<void> =>
  Effect.runPromise(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const now = Date.now()
      yield* (yield* InstanceRepo).register(liveInstance(owner, now))
      const sessions = yield* SessionRepo
      const parts = yield* PartRepo
      yield* sql.withTransaction(write({ now, sessions, parts }))
    }).pipe(Effect.provide(SqliteStoreLive(db)))
  )
