import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import type { InstanceId, PartId, SessionId } from "@vigil/domain"
import { makeInstanceId, makeSessionId, Session } from "@vigil/domain"
import { SessionRepo } from "@vigil/store"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Effect, Option } from "effect"
import { Recovery } from "../src/recovery/Recovery.js"
import * as Vigil from "../src/Vigil.js"
import { getPart, runningPart, tempDb, testSettings } from "./support.js"

/** A dead owner (no instance row) with a busy session and `count` running parts. */
const deadOwnerWith = (count: number) =>
  Effect.gen(function*() {
    const owner = makeInstanceId()
    const sessionId = makeSessionId()
    yield* (yield* SessionRepo).insert(
      new Session({
        id: sessionId,
        parentId: null,
        parentPartId: null,
        title: "a dead owner's",
        status: "busy",
        cancelReason: null,
        lastActivityAt: 0,
        ownerId: owner,
        createdAt: 0
      })
    )
    const parts: Array<PartId> = []
    for (let i = 0; i < count; i++) parts.push(yield* runningPart({ sessionId, tool: "read", ownerId: owner, deadlineIn: 600_000 }))
    return { owner, sessionId, parts }
  })

const statusOf = (sessionId: SessionId) => Effect.map(SessionRepo, (repo) => repo.get(sessionId)).pipe(Effect.flatten, Effect.map(Option.map((s) => s.status)))

/** Makes the store refuse to end this owner's sessions (as a damaged row or a failing disk would). */
const refuseOwner = (owner: InstanceId) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe(
      `CREATE TRIGGER refuse_owner BEFORE UPDATE OF status ON vigil_sessions WHEN OLD.owner_id = '${owner}'
       BEGIN SELECT RAISE(ABORT, 'refused for the test'); END`
    ))

describe("recovery of several dead owners", () => {
  it.effect("ends them all in one pass; one owner the store refuses keeps nobody else's orphans running", () =>
    Effect.gen(function*() {
      const recovery = yield* Recovery
      const owners = [yield* deadOwnerWith(3), yield* deadOwnerWith(2), yield* deadOwnerWith(4)]
      const refused = owners[1]!
      yield* refuseOwner(refused.owner)
      // The one transaction fails on the refused owner's session; each owner is then ended on its own.
      const first = yield* recovery.recoverDeadOwners({ trigger: "watchdog" })
      assert.strictEqual(first.orphanedParts, 7)
      assert.strictEqual(first.sessionsFreed, 2)
      for (const { parts, sessionId } of [owners[0]!, owners[2]!]) {
        for (const part of parts) assert.strictEqual((yield* getPart(part)).error?._tag, "OrphanedByCrash")
        assert.deepStrictEqual(yield* statusOf(sessionId), Option.some("error"))
      }
      // The refused owner's end was rolled back whole: its parts are still running, its session busy.
      for (const part of refused.parts) assert.strictEqual((yield* getPart(part)).status, "running")
      assert.deepStrictEqual(yield* statusOf(refused.sessionId), Option.some("busy"))
      // Once the store takes its rows again, the next recovery ends it, and nothing twice.
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe("DROP TRIGGER refuse_owner"))
      const second = yield* recovery.recoverDeadOwners({ trigger: "watchdog" })
      assert.strictEqual(second.orphanedParts, 2)
      assert.strictEqual(second.sessionsFreed, 1)
      for (const part of refused.parts) assert.strictEqual((yield* getPart(part)).error?._tag, "OrphanedByCrash")
    }).pipe(Effect.provide(Vigil.layerRecovery(SqliteStoreLive(tempDb()), { settings: testSettings() }))))
})
