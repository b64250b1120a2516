import type { InstanceId, SessionId } from "@vigil/domain"
import { makeInstanceId, makePartId, makeSessionId, Part, Session } from "@vigil/domain"
import { SqliteStoreLive } from "@vigil/store"
import { Effect, Layer } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** A fresh directory under the OS temp dir, removed (with the database and its WAL files) on scope close. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "vigil-store-test-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

export const tempDbFile = Effect.map(tempDir, (dir) => join(dir, "vigil.db"))

/**
 * Runs `body` against the real store on a new SQLite file. The store's scope closes (the database
 * is closed) before the directory is removed.
 */
export const withStore = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.scoped(
    Effect.flatMap(tempDbFile, (file) => Effect.provide(body, Layer.orDie(SqliteStoreLive(file))))
  )

export const ownerA: InstanceId = makeInstanceId()
export const ownerB: InstanceId = makeInstanceId()

export const makeSession = (fields: Partial<ConstructorParameters<typeof Session>[0]> = {}): Session =>
  new Session({
    id: makeSessionId(),
    parentId: null,
    parentPartId: null,
    title: "a session",
    status: "busy",
    cancelReason: null,
    lastActivityAt: 1_000,
    ownerId: ownerA,
    createdAt: 1_000,
    ...fields
  })

export const makePart = (sessionId: SessionId, fields: Partial<ConstructorParameters<typeof Part>[0]> = {}): Part =>
  new Part({
    id: makePartId(),
    sessionId,
    kind: "tool",
    tool: "bash",
    input: { command: "echo hi" },
    callId: null,
    status: "pending",
    output: null,
    error: null,
    createdAt: 1_000,
    startedAt: null,
    endedAt: null,
    deadlineAt: null,
    ownerId: ownerA,
    childSessionId: null,
    pid: null,
    pgid: null,
    procStart: null,
    ...fields
  })

