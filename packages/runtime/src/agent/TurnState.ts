import type { ErrorReason, SessionId } from "@vigil/domain"
import { SessionCancelled, ToolFailed } from "@vigil/domain"
import type { Scope } from "effect"
import { Cause, Deferred, Effect, Exit, Fiber, FiberMap, Option } from "effect"
import type { PartEnded } from "../supervision/ToolRunner.js"

export type TurnResult =
  | { readonly _tag: "Completed"; readonly text: string }
  | { readonly _tag: "Failed"; readonly reason: ErrorReason }
  | { readonly _tag: "Cancelled"; readonly reason: ErrorReason }

/** A turn this instance runs. */
export interface Turn {
  /** The turn's claim on its session in the database: every write of the turn is fenced on it. */
  readonly id: string
  readonly done: Deferred.Deferred<TurnResult>
  /** Set by whoever ends the turn from outside, before interrupting it, so the end has its reason. */
  cancelReason: ErrorReason | undefined
  /** The model of an agent-loop turn: the model its `task` sub-agents run on too. */
  readonly model: string | undefined
  /** How many `task` levels below its root the session is, when known (a sub-agent's turn). */
  readonly depth: number | undefined
  /** Set when a tree's end (`endSessionTree`) ends this turn: its children are ended by that walk. */
  treeEnded: boolean
}

/**
 * What this instance holds in memory about the turns it runs: which turn runs for which session
 * (and its fiber), which sessions it has claimed, and which `ask` calls wait on a reply. The
 * database says who holds a session; this says what only the holder's process can know. Kept
 * behind these operations so the maps change in one place, whatever ends a turn.
 */
export interface TurnState {
  readonly turnOf: (id: SessionId) => Turn | undefined
  readonly isRunning: (id: SessionId) => boolean
  /** The turns running here now (a snapshot: ending them changes the map). */
  readonly running: () => ReadonlyArray<Turn>
  /** Runs `work` as the session's turn fiber (its claim in the database makes it the session's one turn). */
  readonly start: (id: SessionId, turn: Turn, work: Effect.Effect<unknown, unknown>) => Effect.Effect<void>
  /** Forgets the session's turn if it is still `turn`; false when a new turn already holds the session. */
  readonly finish: (id: SessionId, turn: Turn) => boolean
  /** Interrupts the session's turn fiber and waits for its end (its `onExit` included). */
  readonly interrupt: (id: SessionId) => Effect.Effect<void>
  /**
   * Marks a turn as ended by its tree's end with `reason` (a reason set first wins): however the
   * turn then sees its end, it ends as that cancel, and leaves its children to the walk.
   */
  readonly endWithTree: (turn: Turn, reason: ErrorReason) => void
  /** Interrupts every turn fiber at once. */
  readonly interruptAll: Effect.Effect<void>

  /** The turn id of the session's claim, from the claim until its turn ends. */
  readonly claimOf: (id: SessionId) => string | undefined
  readonly claim: (id: SessionId, turnId: string) => void
  /** Drops the session's claim if it is still `turnId`'s (a newer turn's claim stays). */
  readonly unclaim: (id: SessionId, turnId: string) => void

  /** Opens a request an `ask` waits on; the answer completes the returned deferred. */
  readonly openRequest: (requestId: string, sessionId: SessionId) => Effect.Effect<Deferred.Deferred<string>>
  readonly closeRequest: (requestId: string) => void
  /** Answers a request of that session; false when no such request waits here. */
  readonly answer: (requestId: string, sessionId: SessionId, answer: string) => Effect.Effect<boolean>
}

export const makeTurnState: Effect.Effect<TurnState, never, Scope.Scope> = Effect.gen(function*() {
  const fibers = yield* FiberMap.make<SessionId>()
  const turns = new Map<SessionId, Turn>()
  const claims = new Map<SessionId, string>()
  const requests = new Map<string, { readonly sessionId: SessionId; readonly answer: Deferred.Deferred<string> }>()
  return {
    turnOf: (id) => turns.get(id),
    isRunning: (id) => turns.has(id),
    running: () => [...turns.values()],
    start: (id, turn, work) =>
      Effect.suspend(() => {
        turns.set(id, turn)
        return FiberMap.run(fibers, id, work)
      }).pipe(Effect.asVoid),
    finish: (id, turn) => {
      if (turns.get(id) !== turn) return false
      turns.delete(id)
      return true
    },
    interrupt: (id) => FiberMap.remove(fibers, id),
    endWithTree: (turn, reason) => {
      turn.cancelReason ??= reason
      turn.treeEnded = true
    },
    interruptAll: Effect.suspend(() => Fiber.interruptAll(Array.from(fibers, ([, fiber]) => fiber))),
    claimOf: (id) => claims.get(id),
    claim: (id, turnId) => {
      claims.set(id, turnId)
    },
    unclaim: (id, turnId) => {
      if (claims.get(id) === turnId) claims.delete(id)
    },
    openRequest: (requestId, sessionId) =>
      Effect.tap(Deferred.make<string>(), (answer) => Effect.sync(() => requests.set(requestId, { sessionId, answer }))),
    closeRequest: (requestId) => {
      requests.delete(requestId)
    },
    answer: (requestId, sessionId, answer) =>
      Effect.suspend(() => {
        const request = requests.get(requestId)
        if (request === undefined || request.sessionId !== sessionId) return Effect.succeed(false)
        return Deferred.succeed(request.answer, answer).pipe(Effect.as(true))
      })
  }
})

/** How a turn ended, from its exit: decided before anything is written. */
export const resultOf = (turn: Turn, exit: Exit.Exit<string, PartEnded>): TurnResult => {
  if (Exit.isSuccess(exit)) return { _tag: "Completed", text: exit.value }
  // Ended as part of a tree: it may see that as an interruption, or as a `task` that failed
  // because its child was ended; either way it is this cancel.
  if (turn.treeEnded) return { _tag: "Cancelled", reason: turn.cancelReason ?? new SessionCancelled({ by: "interrupt" }) }
  if (Exit.isInterrupted(exit)) return { _tag: "Cancelled", reason: turn.cancelReason ?? new SessionCancelled({ by: "shutdown" }) }
  return {
    _tag: "Failed",
    reason: Option.match(Cause.failureOption(exit.cause), {
      onNone: () => new ToolFailed({ message: `the turn crashed: ${Cause.pretty(exit.cause)}` }) as ErrorReason,
      onSome: (error) => error.reason
    })
  }
}
