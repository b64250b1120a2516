import { assert, describe, it } from "@effect/vitest"
import type { Part } from "@vigil/domain"
import { OrphanedByCrash, SessionCancelled, ToolFailed, ToolTimeout, WatchdogStuck } from "@vigil/domain"
import { SqlClient } from "@effect/sql"
import { outputCapBytes, PartRepo, reservedRoom, SessionRepo } from "@vigil/store"
import { Effect, Option } from "effect"
import { describeBackends, makePart, makeSession, ownerA, ownerB } from "./fixtures.js"

/** Inserts a session and the given parts of it (built from `fields`), returning the parts. */
const seed = (...fieldsList: ReadonlyArray<Partial<ConstructorParameters<typeof Part>[0]>>) =>
  Effect.gen(function*() {
    const session = makeSession()
    yield* (yield* SessionRepo).insert(session)
    const repo = yield* PartRepo
    const parts: Array<Part> = []
    for (const fields of fieldsList) {
      const part = makePart(session.id, fields)
      yield* repo.insert(part)
      parts.push(part)
    }
    return parts
  })

const seedOne = (fields: Partial<ConstructorParameters<typeof Part>[0]> = {}) =>
  Effect.map(seed(fields), (parts) => parts[0]!)

const read = (part: Pick<Part, "id">) =>
  Effect.flatMap(PartRepo, (repo) => repo.get(part.id)).pipe(Effect.map(Option.getOrThrow))

const timeout = new ToolTimeout({ timeout: 600_000 })
const stuck = new WatchdogStuck({ runningFor: 120_000, threshold: 60_000 })

const runningFields = { status: "running", startedAt: 2_000, deadlineAt: 5_000 } as const
const completedFields = { status: "completed", startedAt: 2_000, endedAt: 3_000, output: "done" } as const
const errorFields = { status: "error", startedAt: 2_000, endedAt: 3_000, error: timeout } as const

describeBackends("PartRepo", ({ name, withStore }) => {
  it.effect("insert and get round-trip every field", () =>
    withStore(Effect.gen(function*() {
      const part = yield* seedOne({
        input: { command: "ls", nested: [1, { a: null }] },
        callId: "call_1",
        pid: 42,
        pgid: 42,
        procStart: "12345",
        deadlineAt: 9_000
      })
      const back = yield* read(part)
      assert.deepStrictEqual(back, part)
      assert.deepStrictEqual(yield* (yield* PartRepo).get(makePart(part.sessionId).id), Option.none())
    })))

  it.effect("a prompt or an assistant's text over the output cap is stored whole: what was accepted is never cut", () =>
    withStore(Effect.gen(function*() {
      const text = "p".repeat(outputCapBytes * 2) + "END"
      const [prompt, said] = yield* seed(
        { ...completedFields, kind: "prompt", tool: "", output: text },
        { ...completedFields, kind: "text", tool: "", output: text }
      )
      assert.strictEqual((yield* read(prompt!)).output, text)
      assert.strictEqual((yield* read(said!)).output, text)
    })))

  describe("complete", () => {
    it.effect("completes a running part with its output and end time", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const part = yield* seedOne(runningFields)
        assert.isTrue(yield* repo.complete(part.id, { ownerId: ownerA, output: "hello\n", at: 3_000 }))
        const row = yield* read(part)
        assert.deepStrictEqual(
          [row.status, row.output, row.endedAt, row.error, row.startedAt],
          ["completed", "hello\n", 3_000, null, 2_000]
        )
      })))

    it.effect("never completes a pending part (pending → completed is not a transition)", () =>
      withStore(Effect.gen(function*() {
        const part = yield* seedOne()
        assert.isFalse(yield* (yield* PartRepo).complete(part.id, { ownerId: ownerA, output: "", at: 3_000 }))
        assert.deepStrictEqual(yield* read(part), part)
      })))

    it.effect("only by the owner", () =>
      withStore(Effect.gen(function*() {
        const part = yield* seedOne(runningFields)
        assert.isFalse(yield* (yield* PartRepo).complete(part.id, { ownerId: ownerB, output: "x", at: 3_000 }))
        assert.deepStrictEqual(yield* read(part), part)
      })))

    it.effect("a completed part is never rewritten by a second completion", () =>
      withStore(Effect.gen(function*() {
        const part = yield* seedOne(completedFields)
        assert.isFalse(yield* (yield* PartRepo).complete(part.id, { ownerId: ownerA, output: "other", at: 9_000 }))
        assert.deepStrictEqual(yield* read(part), part)
      })))

    it.effect("an errored part is never completed: the error is kept", () =>
      withStore(Effect.gen(function*() {
        const part = yield* seedOne({ ...errorFields, output: "partial" })
        assert.isFalse(yield* (yield* PartRepo).complete(part.id, { ownerId: ownerA, output: "late", at: 9_000 }))
        const row = yield* read(part)
        assert.deepStrictEqual(row, part)
        assert.instanceOf(row.error, ToolTimeout)
      })))

    it.effect("caps output over 64 KiB with a marker, keeping the head and the tail", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const [big, exact] = yield* seed(runningFields, runningFields)
        const output = "a".repeat(outputCapBytes) + "b".repeat(40_000) + "\n[exit code 3]"
        assert.strictEqual(outputCapBytes, 65_536)
        assert.isTrue(yield* repo.complete(big!.id, { ownerId: ownerA, output, at: 3_000 }))
        const stored = (yield* read(big!)).output!
        assert.isAtMost(Buffer.byteLength(stored), outputCapBytes)
        assert.match(stored, /^a+\n… \[output truncated: \d+ bytes omitted\] …\nb+\n\[exit code 3\]$/)

        const fits = "c".repeat(outputCapBytes)
        assert.isTrue(yield* repo.complete(exact!.id, { ownerId: ownerA, output: fits, at: 3_000 }))
        assert.strictEqual((yield* read(exact!)).output, fits)
      })))

    it.effect("caps by bytes, not characters", () =>
      withStore(Effect.gen(function*() {
        const part = yield* seedOne(runningFields)
        // 3 bytes each: 30,000 of them are 90,000 bytes, over the cap though only 30,000 characters
        const output = "€".repeat(30_000)
        assert.isTrue(yield* (yield* PartRepo).complete(part.id, { ownerId: ownerA, output, at: 3_000 }))
        const stored = (yield* read(part)).output!
        assert.match(stored, /^€+\n… \[output truncated: \d+ bytes omitted\] …\n€+$/)
        assert.isAtMost(Buffer.byteLength(stored), outputCapBytes)
        assert.isBelow(stored.length, output.length)
      })))
  })

  describe("fail", () => {
    it.effect("ends a pending part with its reason", () =>
      withStore(Effect.gen(function*() {
        const part = yield* seedOne()
        assert.isTrue(yield* (yield* PartRepo).fail(part.id, { reason: new SessionCancelled({ by: "user" }), at: 4_000 }))
        const row = yield* read(part)
        assert.deepStrictEqual(
          [row.status, row.error, row.endedAt, row.output],
          ["error", new SessionCancelled({ by: "user" }), 4_000, null]
        )
      })))

    it.effect("ends a running part, keeping its output unless given a new one", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const [kept, replaced] = yield* seed({ ...runningFields, output: "so far" }, { ...runningFields, output: "so far" })
        assert.isTrue(yield* repo.fail(kept!.id, { reason: timeout, at: 4_000, ownerId: ownerA }))
        assert.isTrue(yield* repo.fail(replaced!.id, { reason: timeout, at: 4_000, output: "more" }))
        const keptRow = yield* read(kept!)
        assert.deepStrictEqual([keptRow.status, keptRow.error, keptRow.output], ["error", timeout, "so far"])
        assert.instanceOf(keptRow.error, ToolTimeout)
        assert.strictEqual((yield* read(replaced!)).output, "more")
      })))

    it.effect("a completed part is never rewritten: fail returns false, the row is unchanged", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const part = yield* seedOne(completedFields)
        assert.isFalse(yield* repo.fail(part.id, { reason: stuck, at: 9_000 }))
        assert.isFalse(yield* repo.fail(part.id, { reason: stuck, at: 9_000, ownerId: ownerA, output: "overwrite" }))
        assert.deepStrictEqual(yield* read(part), part)
      })))

    it.effect("an errored part keeps its first reason", () =>
      withStore(Effect.gen(function*() {
        const part = yield* seedOne(errorFields)
        assert.isFalse(yield* (yield* PartRepo).fail(part.id, { reason: stuck, at: 9_000 }))
        assert.deepStrictEqual(yield* read(part), part)
      })))

    it.effect("fenced on the owner: another ownerId does not end it", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const part = yield* seedOne(runningFields)
        assert.isFalse(yield* repo.fail(part.id, { reason: new OrphanedByCrash({ ownerId: ownerB }), at: 4_000, ownerId: ownerB }))
        assert.deepStrictEqual(yield* read(part), part)
        assert.isTrue(yield* repo.fail(part.id, { reason: new OrphanedByCrash({ ownerId: ownerA }), at: 4_000, ownerId: ownerA }))
        assert.deepStrictEqual((yield* read(part)).error, new OrphanedByCrash({ ownerId: ownerA }))
      })))

    it.effect("caps the output it records", () =>
      withStore(Effect.gen(function*() {
        const part = yield* seedOne(runningFields)
        yield* (yield* PartRepo).fail(part.id, { reason: timeout, at: 4_000, output: "z".repeat(70_000) + "END" })
        const stored = (yield* read(part)).output!
        assert.isAtMost(Buffer.byteLength(stored), outputCapBytes)
        assert.match(stored, /^z+\n… \[output truncated: \d+ bytes omitted\] …\nz+END$/)
      })))
  })

  describe("completion vs force-error", () => {
    it.effect("complete, then the watchdog's fail: stays completed", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const part = yield* seedOne(runningFields)
        assert.isTrue(yield* repo.complete(part.id, { ownerId: ownerA, output: "result", at: 3_000 }))
        assert.isFalse(yield* repo.fail(part.id, { reason: stuck, at: 3_001 }))
        const row = yield* read(part)
        assert.deepStrictEqual([row.status, row.output, row.error, row.endedAt], ["completed", "result", null, 3_000])
      })))

    it.effect("the watchdog's fail, then complete: stays error with the watchdog's reason", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const part = yield* seedOne(runningFields)
        assert.isTrue(yield* repo.fail(part.id, { reason: stuck, at: 3_000 }))
        assert.isFalse(yield* repo.complete(part.id, { ownerId: ownerA, output: "late result", at: 3_001 }))
        const row = yield* read(part)
        assert.deepStrictEqual([row.status, row.output, row.error, row.endedAt], ["error", null, stuck, 3_000])
        assert.instanceOf(row.error, WatchdogStuck)
      })))

    for (const order of ["complete first", "fail first"] as const) {
      it.effect(`concurrently (${order}): exactly one wins and the row is the winner's`, () =>
        withStore(Effect.gen(function*() {
          const repo = yield* PartRepo
          const parts = yield* seed(...Array.from({ length: 20 }, () => runningFields))
          for (const part of parts) {
            const complete = repo.complete(part.id, { ownerId: ownerA, output: "result", at: 3_000 })
            const fail = repo.fail(part.id, { reason: stuck, at: 3_001 })
            const [completed, failed] = order === "complete first"
              ? yield* Effect.all([complete, fail], { concurrency: "unbounded" })
              : yield* Effect.all([fail, complete], { concurrency: "unbounded" }).pipe(
                Effect.map(([f, c]) => [c, f] as const)
              )
            assert.strictEqual(Number(completed) + Number(failed), 1, `one winner for ${part.id}`)
            const row = yield* read(part)
            if (completed) {
              assert.deepStrictEqual([row.status, row.output, row.error, row.endedAt], ["completed", "result", null, 3_000])
            } else {
              assert.deepStrictEqual([row.status, row.output, row.error, row.endedAt], ["error", null, stuck, 3_001])
            }
          }
        })))
    }
  })

  describe("endActiveOfOwner", () => {
    it.effect("ends only that owner's pending and running parts and returns them with their processes", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const [pending, running, completed, errored, otherOwner] = yield* seed(
          {},
          { ...runningFields, tool: "task", output: "partial" },
          completedFields,
          errorFields,
          { ...runningFields, ownerId: ownerB, pid: 77, pgid: 77, procStart: "999" }
        )
        yield* repo.recordProcess(running!.id, { pid: 4242, pgid: 4240, startTime: "123456" })
        const reason = new OrphanedByCrash({ ownerId: ownerA })

        const ended = yield* repo.endActiveOfOwner(ownerA, reason, 7_000)

        // what process ending and the event log need of each ended part, exactly
        assert.deepStrictEqual(
          [...ended].sort((a, b) => a.id.localeCompare(b.id)),
          [
            { id: pending!.id, sessionId: pending!.sessionId, tool: "bash", pid: null, pgid: null, procStart: null },
            { id: running!.id, sessionId: running!.sessionId, tool: "task", pid: 4242, pgid: 4240, procStart: "123456" }
          ]
        )
        // what it stored: the reason and the end, the output kept
        const stored = [yield* read(pending!), yield* read(running!)]
        assert.deepStrictEqual(
          stored.map((p) => ({ id: p.id, status: p.status, error: p.error, endedAt: p.endedAt, output: p.output })),
          [
            { id: pending!.id, status: "error", error: reason, endedAt: 7_000, output: null },
            { id: running!.id, status: "error", error: reason, endedAt: 7_000, output: "partial" }
          ]
        )
        for (const part of stored) assert.instanceOf(part.error, OrphanedByCrash)
        assert.deepStrictEqual(yield* read(completed!), completed)
        assert.deepStrictEqual(yield* read(errored!), errored)
        assert.deepStrictEqual(yield* read(otherOwner!), otherOwner)

        assert.deepStrictEqual(yield* repo.endActiveOfOwner(ownerA, reason, 8_000), [])
      })))

    it.effect("concurrent rescues of one owner end each part once: disjoint sets whose union is every active part", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const active = yield* seed(...Array.from({ length: 150 }, (_, i) => (i % 3 === 0 ? {} : runningFields)))
        const [done] = yield* seed(completedFields)
        const [other] = yield* seed({ ...runningFields, ownerId: ownerB })
        const reason = new OrphanedByCrash({ ownerId: ownerA })
        const rescuers = [0, 1, 2, 3]
        const results = yield* Effect.all(
          rescuers.map((i) => repo.endActiveOfOwner(ownerA, reason, 7_000 + i)),
          { concurrency: "unbounded" }
        )
        const returned = results.flatMap((ended) => ended.map((part) => part.id))
        assert.strictEqual(new Set(returned).size, returned.length, "no part is returned by two rescues")
        assert.deepStrictEqual([...returned].sort(), active.map((part) => part.id).sort())
        for (const [i, ended] of results.entries()) {
          for (const part of ended) {
            // each row holds the rescue that returned it
            const row = yield* read(part)
            assert.deepStrictEqual([row.status, row.error, row.endedAt], ["error", reason, 7_000 + i])
          }
        }
        assert.deepStrictEqual(yield* read(done!), done)
        assert.deepStrictEqual(yield* read(other!), other)
        assert.deepStrictEqual(yield* repo.endActiveOfOwner(ownerA, reason, 9_000), [])
      })))
  })

  describe("the room a live row reserves for its end", () => {
    const reserveOf = (part: Pick<Part, "id">) =>
      Effect.gen(function*() {
        const sql = (yield* SqlClient.SqlClient).withoutTransforms()
        const rows = yield* sql<{ reserve: string | null }>`SELECT reserve FROM vigil_parts WHERE id = ${part.id}`
        return rows[0]!.reserve
      }).pipe(Effect.orDie)

    it.effect("is written with a pending or running row and given back by every write that ends it", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const [pending, completes, fails, failsMany, rescued, bornEnded] = yield* seed(
          {},
          runningFields,
          runningFields,
          runningFields,
          runningFields,
          completedFields
        )
        for (const part of [pending!, completes!, fails!, failsMany!, rescued!]) {
          assert.strictEqual(yield* reserveOf(part), reservedRoom, part.id)
        }
        assert.isNull(yield* reserveOf(bornEnded!), "a row born terminal reserves nothing")

        assert.isTrue(yield* repo.complete(completes!.id, { ownerId: ownerA, output: "ok", at: 3_000 }))
        assert.isTrue(yield* repo.fail(fails!.id, { reason: timeout, at: 3_000, ownerId: ownerA }))
        assert.deepStrictEqual(yield* repo.failMany([failsMany!.id], { reason: stuck, at: 3_000 }), [failsMany!.id])
        const ended = yield* repo.endActiveOfOwner(ownerA, new OrphanedByCrash({ ownerId: ownerA }), 3_000)
        assert.deepStrictEqual(ended.map((part) => part.id).sort(), [pending!.id, rescued!.id].sort())
        for (const part of [pending!, completes!, fails!, failsMany!, rescued!]) {
          assert.isNull(yield* reserveOf(part), part.id)
        }
      })))

    it.effect.skipIf(name !== "sqlite")("so a rescue of orphans scattered through full pages splits none: the file keeps its page count", () =>
      withStore(Effect.gen(function*() {
        const sql = (yield* SqlClient.SqlClient).withoutTransforms()
        const repo = yield* PartRepo
        const session = makeSession()
        yield* (yield* SessionRepo).insert(session)
        // Appended in id order, as tool calls are, so each page is full before the next is begun;
        // every sixth part was left running by a crash: a few on every page.
        yield* sql.withTransaction(Effect.forEach(
          Array.from({ length: 1_200 }, (_, i) => makePart(session.id, i % 6 === 0 ? runningFields : completedFields)),
          (part) => repo.insert(part),
          { discard: true }
        ))
        const pageCount = sql<{ page_count: number }>`PRAGMA page_count`.pipe(Effect.map((rows) => Number(rows[0]!.page_count)))
        const before = yield* pageCount
        const ended = yield* repo.endActiveOfOwner(ownerA, new OrphanedByCrash({ ownerId: ownerA }), 9_000)
        assert.strictEqual(ended.length, 200)
        assert.strictEqual(yield* pageCount, before)
      })))
  })

  describe("reads", () => {
    it.effect("bySession lists a session's parts in creation order", () =>
      withStore(Effect.gen(function*() {
        const parts = yield* seed({}, runningFields, completedFields, errorFields)
        yield* seed({}) // another session's part
        assert.deepStrictEqual(yield* (yield* PartRepo).bySession(parts[0]!.sessionId), parts)
      })))

    it.effect("active, activeOfOwner, activeOfSessions and activeOwners see only pending and running parts", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const [pending, running] = yield* seed({}, runningFields, completedFields, errorFields)
        const [otherRunning] = yield* seed({ ...runningFields, ownerId: ownerB }, completedFields)
        const ids = (parts: ReadonlyArray<Part>) => parts.map((p) => p.id).sort()

        assert.deepStrictEqual(ids(yield* repo.active()), [pending!.id, running!.id, otherRunning!.id].sort())
        assert.deepStrictEqual(ids(yield* repo.activeOfOwner(ownerA)), [pending!.id, running!.id].sort())
        assert.deepStrictEqual(ids(yield* repo.activeOfOwner(ownerB)), [otherRunning!.id])
        assert.deepStrictEqual(ids(yield* repo.activeOfSessions([pending!.sessionId])), [pending!.id, running!.id].sort())
        assert.deepStrictEqual(yield* repo.activeOfSessions([]), [])
        assert.deepStrictEqual([...(yield* repo.activeOwners())].sort(), [ownerA, ownerB].sort())
      })))

    it.effect("stuckCandidates: that owner's running tasks and its leaves due by the bound, nothing else", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const [late, due, healthy, noDeadline, task, pending, completed, model, step, otherOwner] = yield* seed(
          { ...runningFields, deadlineAt: 4_000 },
          { ...runningFields, deadlineAt: 5_000 },
          { ...runningFields, deadlineAt: 5_001 },
          { ...runningFields, deadlineAt: null },
          { ...runningFields, tool: "task", deadlineAt: 900_000 },
          { deadlineAt: 1_000 },
          { ...completedFields, deadlineAt: 1_000 },
          { ...runningFields, kind: "model", tool: "model", deadlineAt: 1_000 },
          { ...runningFields, kind: "text", tool: "model", deadlineAt: 1_000 },
          { ...runningFields, ownerId: ownerB, deadlineAt: 1_000 }
        )
        const ids = (parts: ReadonlyArray<Part>) => parts.map((p) => p.id).sort()
        const candidates = yield* repo.stuckCandidates(ownerA, { deadlineBefore: 5_000, waitingTools: ["task"] })
        assert.deepStrictEqual(ids(candidates), [late!.id, due!.id, task!.id, model!.id].sort())
        // whole rows, decoded as any read decodes them
        assert.deepStrictEqual(candidates.find((p) => p.id === late!.id), late)
        for (const part of [healthy, noDeadline, pending, completed, step, otherOwner]) {
          assert.isFalse(candidates.some((p) => p.id === part!.id))
        }
        assert.deepStrictEqual(ids(yield* repo.stuckCandidates(ownerB, { deadlineBefore: 0, waitingTools: ["task"] })), [])
      })))

    it.effect("stuckCandidates with taskStartedBefore: only the tasks started by then, or whose child has ended", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const sessions = yield* SessionRepo
        const [fresh, old, endedChild, freshNoChild] = yield* seed(
          { ...runningFields, tool: "task", startedAt: 50_000, deadlineAt: 900_000 },
          { ...runningFields, tool: "task", startedAt: 1_000, deadlineAt: 900_000 },
          { ...runningFields, tool: "task", startedAt: 50_000, deadlineAt: 900_000 },
          { ...runningFields, tool: "task", startedAt: 50_000, deadlineAt: 900_000 }
        )
        const activeChild = makeSession({ status: "busy", parentId: fresh!.sessionId })
        const doneChild = makeSession({ status: "idle", parentId: endedChild!.sessionId })
        yield* sessions.insert(activeChild)
        yield* sessions.insert(doneChild)
        yield* repo.setChildSession(fresh!.id, activeChild.id)
        yield* repo.setChildSession(old!.id, activeChild.id)
        yield* repo.setChildSession(endedChild!.id, doneChild.id)
        const candidates = yield* repo.stuckCandidates(ownerA, { deadlineBefore: 0, taskStartedBefore: 10_000, waitingTools: ["task"] })
        assert.deepStrictEqual(candidates.map((p) => p.id).sort(), [old!.id, endedChild!.id].sort())
        assert.isFalse(candidates.some((p) => p.id === freshNoChild!.id || p.id === fresh!.id))
        // The same tasks, narrow; and the leaves alone never include a task, even one past its deadline.
        const narrow = yield* repo.taskCandidates(ownerA, { taskStartedBefore: 10_000, waitingTools: ["task"] })
        assert.deepStrictEqual(
          narrow.map((t) => [t.id, t.sessionId, t.startedAt, t.childSessionId]).sort(),
          [[old!.id, old!.sessionId, 1_000, activeChild.id], [endedChild!.id, endedChild!.sessionId, 50_000, doneChild.id]].sort()
        )
        assert.deepStrictEqual(yield* repo.stuckCandidates(ownerA, { deadlineBefore: 1_000_000, leavesOnly: true, waitingTools: ["task"] }), [])
      })))

    it.effect("which tools wait on a child session is the caller's list, not a name in the query", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const [task, delegate, leaf] = yield* seed(
          { ...runningFields, tool: "task", startedAt: 1_000, deadlineAt: 2_000 },
          { ...runningFields, tool: "delegate", startedAt: 1_000, deadlineAt: 2_000 },
          { ...runningFields, tool: "bash", startedAt: 1_000, deadlineAt: 2_000 }
        )
        const ids = (parts: ReadonlyArray<{ readonly id: string }>) => parts.map((p) => p.id).sort()
        const waitingTools = ["task", "delegate"]
        // Past their deadline: as leaves, only the one that waits on nothing; as tasks, the two that wait.
        assert.deepStrictEqual(ids(yield* repo.stuckCandidates(ownerA, { deadlineBefore: 5_000, leavesOnly: true, waitingTools })), [leaf!.id])
        assert.deepStrictEqual(ids(yield* repo.taskCandidates(ownerA, { taskStartedBefore: 5_000, waitingTools })), [task!.id, delegate!.id].sort())
        // With no waiting tools, every part is a leaf and none is a task.
        assert.deepStrictEqual(
          ids(yield* repo.stuckCandidates(ownerA, { deadlineBefore: 5_000, leavesOnly: true, waitingTools: [] })),
          [task!.id, delegate!.id, leaf!.id].sort()
        )
        assert.deepStrictEqual(yield* repo.taskCandidates(ownerA, { taskStartedBefore: 5_000, waitingTools: [] }), [])
      })))

    it.effect("failMany, activeIdsOfSessions and activeActivity: the bulk and narrow reads of a tree's end and the watchdog", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const many = yield* seed(...Array.from({ length: 700 }, (_, i) => ({ ...runningFields, startedAt: 2_000 + i })))
        const [done] = yield* seed(completedFields)
        const sessionId = many[0]!.sessionId
        assert.strictEqual((yield* repo.activeIdsOfSessions([sessionId, done!.sessionId])).length, 700)
        assert.deepStrictEqual([...(yield* repo.activeActivity())], [[sessionId, 2_699]])
        const reason = new SessionCancelled({ by: "tree" })
        const ended = yield* repo.failMany([...many.map((p) => p.id), done!.id], { reason, at: 9_000 })
        assert.deepStrictEqual([...ended].sort(), many.map((p) => p.id).sort())
        const row = yield* read(many[0]!)
        assert.deepStrictEqual([row.status, row.error, row.endedAt], ["error", reason, 9_000])
        assert.deepStrictEqual(yield* read(done!), done)
        assert.deepStrictEqual(yield* repo.activeIdsOfSessions([sessionId]), [])
      })))

    it.effect("setChildSession and recordProcess update the row", () =>
      withStore(Effect.gen(function*() {
        const repo = yield* PartRepo
        const part = yield* seedOne({ ...runningFields, tool: "task" })
        const child = makeSession({ parentId: part.sessionId, parentPartId: part.id })
        yield* (yield* SessionRepo).insert(child)
        yield* repo.setChildSession(part.id, child.id)
        yield* repo.recordProcess(part.id, { pid: 10, pgid: 11, startTime: "12" })
        const row = yield* read(part)
        assert.deepStrictEqual([row.childSessionId, row.pid, row.pgid, row.procStart], [child.id, 10, 11, "12"])
      })))

    it.effect("the error reason a part was inserted with round-trips", () =>
      withStore(Effect.gen(function*() {
        const part = yield* seedOne({ status: "error", error: new ToolFailed({ message: "exit 1" }), endedAt: 2 })
        const row = yield* read(part)
        assert.instanceOf(row.error, ToolFailed)
        assert.deepStrictEqual(row.error, new ToolFailed({ message: "exit 1" }))
      })))
  })
})
