import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import type { Part } from "@vigil/domain"
import { ToolFailed } from "@vigil/domain"
import type { Store } from "@vigil/store"
import { PartRepo, SessionRepo, SqlitePragmas, SqlStoreLive } from "@vigil/store"
import { SqliteLive } from "@vigil/store/sqlite"
import { freshPgSchema, pgSkipped } from "@vigil/store/test-database"
import type { Scope } from "effect"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, Option, Redacted } from "effect"
import { spawn } from "node:child_process"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { aloneBeforeSkipping, probeEvery } from "../src/GroupCommit.js"
import { makePart, makeSession, ownerA, ownerB, tempDbFile } from "./fixtures.js"

/**
 * The client in context, wrapped so that every statement sent on a reserved connection (where a
 * batch runs: `BEGIN`, its writes, `COMMIT`) is logged, by its first word.
 */
const logReserved = (log: Array<string>) =>
  Layer.effect(
    SqlClient.SqlClient,
    Effect.map(SqlClient.SqlClient, (sql) => {
      const word = (text: string) => text.trim().split(/\s+/)[0]!.toUpperCase()
      const logged = (conn: Connection): Connection => {
        const overrides: Partial<Record<keyof Connection, unknown>> = {}
        overrides.execute = (...args: Parameters<Connection["execute"]>) => (log.push(word(args[0])), conn.execute(...args))
        overrides.executeUnprepared = (...args: Parameters<Connection["executeUnprepared"]>) => (log.push(word(args[0])), conn.executeUnprepared(...args))
        // A proxy, not a spread: a driver's connection may keep its methods on a prototype.
        return new Proxy(conn, {
          get: (target, key) => {
            if (key in overrides) return overrides[key as keyof Connection]
            const value: unknown = Reflect.get(target, key)
            return typeof value === "function" ? value.bind(target) : value
          }
        })
      }
      const wrapped = Object.assign((...args: Parameters<typeof sql>) => sql(...args), sql, {
        reserve: Effect.map(sql.reserve, logged)
      })
      return wrapped as unknown as SqlClient.SqlClient
    })
  )

interface Backend {
  readonly name: string
  readonly skip: boolean
  readonly store: (log: Array<string>) => Effect.Effect<Layer.Layer<Store>, never, Scope.Scope>
}

const backends: ReadonlyArray<Backend> = [
  {
    name: "sqlite",
    skip: false,
    store: (log) =>
      Effect.map(tempDbFile, (filename) =>
        Layer.orDie(
          SqlStoreLive().pipe(
            Layer.provideMerge(logReserved(log)),
            Layer.provideMerge(SqlitePragmas.layer),
            Layer.provideMerge(SqliteClient.layer({ filename }))
          )
        ))
  },
  {
    // vigil's own client: a lone write goes on its autocommit lane, not through the client.
    name: "sqlite, vigil's client",
    skip: false,
    store: (log) =>
      Effect.map(tempDbFile, (filename) =>
        Layer.orDie(SqlStoreLive().pipe(Layer.provideMerge(logReserved(log)), Layer.provideMerge(SqliteLive(filename)))))
  },
  {
    name: "postgres",
    skip: pgSkipped,
    store: (log) =>
      Effect.map(freshPgSchema, (url) =>
        Layer.orDie(SqlStoreLive().pipe(Layer.provideMerge(logReserved(log)), Layer.provideMerge(PgClient.layer({ url: Redacted.make(url) })))))
  }
]

const withStore = <A, E>(backend: Backend, body: (log: Array<string>) => Effect.Effect<A, E, Store>) =>
  Effect.scoped(Effect.gen(function*() {
    const log: Array<string> = []
    const store = yield* backend.store(log)
    return yield* Effect.provide(body(log), store)
  }))

const running = { status: "running", startedAt: 2_000, deadlineAt: 5_000 } as const

/** A stored session, and the client and the parts to write in it. */
const aSession = Effect.gen(function*() {
  const session = makeSession()
  yield* (yield* SessionRepo).insert(session)
  return { sql: yield* SqlClient.SqlClient, parts: yield* PartRepo, session }
})

for (const backend of backends) {
  describe.skipIf(backend.skip)(`GroupCommit (${backend.name})`, () => {
    it.effect("the inserts of concurrent calls share one transaction, and so do their completions", () =>
      withStore(backend, (log) =>
        Effect.gen(function*() {
          const parts = yield* PartRepo
          const session = makeSession()
          yield* (yield* SessionRepo).insert(session)
          const batch = Array.from({ length: 8 }, () => makePart(session.id, running))
          log.length = 0
          yield* Effect.forEach(batch, (part) => parts.insert(part), { concurrency: "unbounded", discard: true })
          assert.deepStrictEqual(log, ["BEGIN", ...batch.map(() => "INSERT"), "COMMIT"])
          log.length = 0
          const won = yield* Effect.forEach(batch, (part) => parts.complete(part.id, { ownerId: ownerA, output: "ok", at: 3_000 }), {
            concurrency: "unbounded"
          })
          assert.deepStrictEqual(won, batch.map(() => true))
          assert.deepStrictEqual(log, ["BEGIN", ...batch.map(() => "UPDATE"), "COMMIT"])
          for (const part of batch) assert.strictEqual(Option.getOrThrow(yield* parts.get(part.id)).status, "completed")
        })))

    it.effect("a session's activity touch shares the transaction of the part writes made in its turn (one GroupCommit per store)", () =>
      withStore(backend, (log) =>
        Effect.gen(function*() {
          const parts = yield* PartRepo
          const sessions = yield* SessionRepo
          const session = makeSession()
          yield* sessions.insert(session)
          const batch = Array.from({ length: 4 }, () => makePart(session.id, running))
          log.length = 0
          yield* Effect.all([
            ...batch.map((part) => parts.insert(part)),
            sessions.touch([session.id], 9_000)
          ], { concurrency: "unbounded", discard: true })
          assert.deepStrictEqual(log, ["BEGIN", ...batch.map(() => "INSERT"), "UPDATE", "COMMIT"])
          assert.strictEqual(Option.getOrThrow(yield* sessions.get(session.id)).lastActivityAt, 9_000)
        })))

    it.effect("a lone write runs as the client runs any statement: no transaction, no reserved connection", () =>
      withStore(backend, (log) =>
        Effect.gen(function*() {
          const parts = yield* PartRepo
          const session = makeSession()
          yield* (yield* SessionRepo).insert(session)
          const part = makePart(session.id, running)
          log.length = 0
          yield* parts.insert(part)
          assert.isTrue(yield* parts.complete(part.id, { ownerId: ownerA, output: "ok", at: 3_000 }))
          assert.deepStrictEqual(log, [])
          assert.strictEqual(Option.getOrThrow(yield* parts.get(part.id)).status, "completed")
        })))

    it.effect("after a long run of lone writes, a burst is noticed within the probe interval and shares transactions again", () =>
      withStore(backend, (log) =>
        Effect.gen(function*() {
          const parts = yield* PartRepo
          const session = makeSession()
          yield* (yield* SessionRepo).insert(session)
          for (let i = 0; i < aloneBeforeSkipping + probeEvery; i++) yield* parts.insert(makePart(session.id, running))
          // Bursts of 4: the writes that skip the gathering run alone until a probe leads; it
          // finds the rest of its burst, and from then on every burst is one transaction.
          const burst = () => {
            const batch = Array.from({ length: 4 }, () => makePart(session.id, running))
            log.length = 0
            return Effect.as(Effect.forEach(batch, (part) => parts.insert(part), { concurrency: "unbounded", discard: true }), [...log])
          }
          let bursts = 0
          while (!log.includes("BEGIN")) {
            yield* burst()
            bursts++
            assert.isAtMost(bursts, probeEvery / 4 + 1, "no probe found the burst")
          }
          yield* burst()
          assert.deepStrictEqual(log, ["BEGIN", "INSERT", "INSERT", "INSERT", "INSERT", "COMMIT"])
        })))

    it.effect("a write that has long been alone does not wait for company: it runs before any other fiber does", () =>
      withStore(backend, () =>
        Effect.gen(function*() {
          const parts = yield* PartRepo
          const session = makeSession()
          yield* (yield* SessionRepo).insert(session)
          // The first write of a store gathers: a fiber forked just before it runs during its yield.
          const ranDuring = (part: Part) =>
            Effect.gen(function*() {
              let ran = false
              yield* Effect.forkDaemon(Effect.sync(() => (ran = true)))
              yield* parts.insert(part)
              return ran
            })
          assert.isTrue(yield* ranDuring(makePart(session.id, running)))
          for (let i = 0; i < aloneBeforeSkipping; i++) yield* parts.insert(makePart(session.id, running))
          // On SQLite a statement never waits, so a skipped gather leaves the forked fiber unrun
          // (on PostgreSQL the statement's own round trip lets it run).
          const ranAfterwards = yield* ranDuring(makePart(session.id, running))
          if (backend.name === "sqlite") assert.isFalse(ranAfterwards)
          assert.strictEqual((yield* parts.bySession(session.id)).length, aloneBeforeSkipping + 2)
        })))

    it.effect("the guarded writes of one batch each answer for themselves: exactly the running, owned rows are won", () =>
      withStore(backend, (log) =>
        Effect.gen(function*() {
          const parts = yield* PartRepo
          const session = makeSession()
          yield* (yield* SessionRepo).insert(session)
          const mine = makePart(session.id, running)
          const theirs = makePart(session.id, { ...running, ownerId: ownerB })
          const raced = makePart(session.id, running)
          const ended = makePart(session.id, { status: "completed", startedAt: 2_000, endedAt: 2_500, output: "earlier" })
          for (const part of [mine, theirs, raced, ended]) yield* parts.insert(part)
          log.length = 0
          const answers = yield* Effect.all([
            parts.complete(mine.id, { ownerId: ownerA, output: "ok", at: 3_000 }),
            parts.complete(theirs.id, { ownerId: ownerA, output: "not mine", at: 3_000 }),
            parts.fail(raced.id, { reason: new ToolFailed({ message: "first" }), at: 3_000 }),
            parts.complete(raced.id, { ownerId: ownerA, output: "second", at: 3_000 }),
            parts.fail(ended.id, { reason: new ToolFailed({ message: "too late" }), at: 3_000 })
          ], { concurrency: "unbounded" })
          assert.deepStrictEqual(answers, [true, false, true, false, false])
          assert.deepStrictEqual(log, ["BEGIN", "UPDATE", "UPDATE", "UPDATE", "UPDATE", "UPDATE", "COMMIT"])
          assert.strictEqual(Option.getOrThrow(yield* parts.get(theirs.id)).status, "running")
          assert.strictEqual(Option.getOrThrow(yield* parts.get(raced.id)).status, "error")
          assert.strictEqual(Option.getOrThrow(yield* parts.get(ended.id)).output, "earlier")
        })))

    it.effect("a bad row fails only its own write: the batch is rolled back and its writes run again one by one", () =>
      withStore(backend, (log) =>
        Effect.gen(function*() {
          const parts = yield* PartRepo
          const session = makeSession()
          yield* (yield* SessionRepo).insert(session)
          const taken = makePart(session.id, running)
          yield* parts.insert(taken)
          const good = Array.from({ length: 4 }, () => makePart(session.id, running))
          // The third write of the batch reuses an id: its INSERT fails inside the transaction.
          const writes = [good[0]!, good[1]!, taken, good[2]!, good[3]!]
          log.length = 0
          const exits = yield* Effect.forEach(writes, (part) => Effect.exit(parts.insert(part)), { concurrency: "unbounded" })
          assert.deepStrictEqual(exits.map(Exit.isSuccess), [true, true, false, true, true])
          const failure = exits[2]!
          assert.isTrue(Exit.isFailure(failure) && Cause.isDie(failure.cause), "the repositories turn an SQL error into a defect")
          assert.strictEqual(log.slice(0, 4).join(" "), "BEGIN INSERT INSERT INSERT")
          assert.strictEqual(log[4], "ROLLBACK")
          assert.deepStrictEqual(log.slice(5), writes.map(() => "INSERT"))
          for (const part of good) assert.strictEqual(Option.getOrThrow(yield* parts.get(part.id)).status, "running")
        })))

    it.live("a caller interrupted while its batch waits stops waiting at once; the batch's other writes land", () =>
      withStore(backend, () =>
        Effect.gen(function*() {
          const { parts, session, sql } = yield* aSession
          // Holds the batch back: on SQLite a transaction holds the one connection; on PostgreSQL
          // the session's row locked FOR UPDATE stops the parts' foreign key checks.
          const locked = yield* Deferred.make<void>()
          const release = yield* Deferred.make<void>()
          const hold = sql.onDialectOrElse({
            pg: () => sql`SELECT id FROM vigil_sessions WHERE id = ${session.id} FOR UPDATE`,
            orElse: () => sql`SELECT 1`
          })
          const holder = yield* Effect.fork(sql.withTransaction(hold.pipe(Effect.zipRight(Deferred.succeed(locked, undefined)), Effect.zipRight(Deferred.await(release)))))
          yield* Deferred.await(locked)
          const batch = Array.from({ length: 3 }, () => makePart(session.id, running))
          const callers = yield* Effect.forEach(batch, (part) => Effect.fork(parts.insert(part)))
          yield* Effect.sleep("100 millis")
          const interrupted = yield* Fiber.interrupt(callers[1]!).pipe(Effect.timeout("5 seconds"))
          assert.isTrue(Exit.isInterrupted(interrupted))
          for (const caller of [callers[0]!, callers[2]!]) assert.isTrue(Option.isNone(yield* Fiber.poll(caller)), "still held back")
          yield* Deferred.succeed(release, undefined)
          yield* Fiber.join(holder)
          yield* Fiber.join(callers[0]!)
          yield* Fiber.join(callers[2]!)
          for (const part of [batch[0]!, batch[2]!]) assert.strictEqual(Option.getOrThrow(yield* parts.get(part.id)).status, "running")
          const after = makePart(session.id, running)
          yield* parts.insert(after)
          assert.isTrue(Option.isSome(yield* parts.get(after.id)))
        }).pipe(Effect.timeout("20 seconds"))))

    it.effect("a write inside the caller's own transaction stays in it: rolled back with it", () =>
      withStore(backend, () =>
        Effect.gen(function*() {
          const { parts, session, sql } = yield* aSession
          const part = makePart(session.id, running)
          const exit = yield* Effect.exit(sql.withTransaction(Effect.zipRight(parts.insert(part), Effect.fail("changed my mind"))))
          assert.deepStrictEqual(exit, Exit.fail("changed my mind"))
          assert.isTrue(Option.isNone(yield* parts.get(part.id)))
        }).pipe(Effect.timeout("10 seconds"))))
  })
}

const here = dirname(fileURLToPath(import.meta.url))

describe("GroupCommit and a crash (sqlite, a real process)", () => {
  // 32 at a time: the writes share transactions; one at a time: each runs alone, on the
  // autocommit lane of vigil's client.
  for (const concurrency of [32, 1]) {
  it.live(`every completion a SIGKILLed writer acknowledged is in the file (${concurrency} at a time)`, () =>
    Effect.gen(function*() {
      const file = yield* tempDbFile
      const acknowledged = yield* Effect.async<ReadonlyArray<string>, Error>((resume) => {
        const child = spawn(process.execPath, ["--conditions=@vigil/source", "--import", "tsx", join(here, "fixtures/writer.ts"), file, String(concurrency)], {
          stdio: ["ignore", "pipe", "pipe"]
        })
        let out = ""
        let err = ""
        let killed = false
        // Whole lines only: a line the kill cut short acknowledged nothing.
        const acks = () => out.slice(0, out.lastIndexOf("\n") + 1).split("\n").filter((line) => /^prt_\w+$/.test(line))
        child.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString()
          // Killed in the middle of its stream of batches, right after some acknowledgement.
          if (!killed && acks().length >= 500) {
            killed = true
            child.kill("SIGKILL")
          }
        })
        child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()))
        child.on("exit", (_code, signal) =>
          signal === "SIGKILL"
            ? resume(Effect.succeed(acks()))
            : resume(Effect.fail(new Error(`the writer exited by itself:\n${out.slice(-2000)}\n${err}`))))
        return Effect.sync(() => child.kill("SIGKILL"))
      })
      assert.isAtLeast(acknowledged.length, 500)
      const rows = yield* Effect.gen(function*() {
        const sql = (yield* SqlClient.SqlClient).withoutTransforms()
        return yield* sql<{ id: string; status: string }>`SELECT id, status FROM vigil_parts`
      }).pipe(
        Effect.provide(SqliteClient.layer({ filename: file })),
        Effect.orDie
      )
      const status = new Map(rows.map((row) => [row.id, row.status]))
      const lost = acknowledged.filter((id) => status.get(id) !== "completed")
      assert.deepStrictEqual(lost, [], "acknowledged completions missing from the file")
    }).pipe(Effect.scoped), 60_000)
  }
})
