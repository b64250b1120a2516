import { assert, describe, it } from "@effect/vitest"
import {
  canTransitionPart,
  canTransitionSession,
  isPartTerminal,
  isSessionActive,
  PartStatus,
  SessionStatus
} from "@vigil/domain"
import type { PartStatus as PartStatusType, SessionStatus as SessionStatusType } from "@vigil/domain"

const partStatuses = PartStatus.literals
const sessionStatuses = SessionStatus.literals

// Written out here rather than read from the source, so a change to the rules fails a test.
const allowedPart: ReadonlyArray<readonly [PartStatusType, PartStatusType]> = [
  ["pending", "running"],
  ["pending", "error"],
  ["running", "completed"],
  ["running", "error"]
]

const allowedSession: ReadonlyArray<readonly [SessionStatusType, SessionStatusType]> = [
  ["idle", "busy"],
  ["cancelled", "busy"],
  ["error", "busy"],
  ["busy", "waiting"],
  ["busy", "idle"],
  ["busy", "cancelled"],
  ["busy", "error"],
  ["waiting", "busy"],
  ["waiting", "idle"],
  ["waiting", "cancelled"],
  ["waiting", "error"]
]

const isListed = <S>(pairs: ReadonlyArray<readonly [S, S]>, from: S, to: S) =>
  pairs.some(([f, t]) => f === from && t === to)

describe("part status", () => {
  it("knows exactly the four statuses", () => {
    assert.deepStrictEqual([...partStatuses], ["pending", "running", "completed", "error"])
  })

  it("allows pending → running | error and running → completed | error", () => {
    for (const [from, to] of allowedPart) {
      assert.isTrue(canTransitionPart(from, to), `${from} → ${to} should be allowed`)
    }
  })

  it("refuses every other transition, including any from a terminal status", () => {
    let refused = 0
    for (const from of partStatuses) {
      for (const to of partStatuses) {
        if (isListed(allowedPart, from, to)) continue
        assert.isFalse(canTransitionPart(from, to), `${from} → ${to} should be refused`)
        refused++
      }
    }
    assert.strictEqual(refused, 16 - allowedPart.length)
    assert.isFalse(canTransitionPart("completed", "error"))
    assert.isFalse(canTransitionPart("error", "completed"))
    assert.isFalse(canTransitionPart("running", "pending"))
    assert.isFalse(canTransitionPart("running", "running"))
  })

  it("completed and error are terminal, pending and running are not", () => {
    assert.deepStrictEqual(partStatuses.filter(isPartTerminal), ["completed", "error"])
  })
})

describe("session status", () => {
  it("knows exactly the five statuses", () => {
    assert.deepStrictEqual([...sessionStatuses], ["busy", "waiting", "idle", "cancelled", "error"])
  })

  it("a session at rest takes a new prompt whatever ended its last turn", () => {
    for (const [from, to] of allowedSession) {
      assert.isTrue(canTransitionSession(from, to), `${from} → ${to} should be allowed`)
    }
  })

  it("refuses every other transition", () => {
    let refused = 0
    for (const from of sessionStatuses) {
      for (const to of sessionStatuses) {
        if (isListed(allowedSession, from, to)) continue
        assert.isFalse(canTransitionSession(from, to), `${from} → ${to} should be refused`)
        refused++
      }
    }
    assert.strictEqual(refused, 25 - allowedSession.length)
    assert.isFalse(canTransitionSession("idle", "waiting"))
    assert.isFalse(canTransitionSession("cancelled", "idle"))
    assert.isFalse(canTransitionSession("busy", "busy"))
  })

  it("busy and waiting are active, the rest are at rest", () => {
    assert.deepStrictEqual(sessionStatuses.filter(isSessionActive), ["busy", "waiting"])
  })
})
