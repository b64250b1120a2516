import type { ErrorReason, InstanceId, PartId, SessionId } from "@vigil/domain"
import {
  InvalidToolInput,
  isSessionActive,
  makeSessionId,
  RequestNotFound,
  Session,
  SessionBusy,
  SessionCancelled,
  SessionNotFound,
  UnknownModel,
  UnknownTool
} from "@vigil/domain"
import { PartRepo, SessionRepo } from "@vigil/store"
import type { AnyTool } from "@vigil/tools"
import { Clock, Deferred, Duration, Effect, Either, Exit, FiberMap, Option, ParseResult, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { Events } from "../events/Events.js"
import { InstanceLease } from "../recovery/InstanceLease.js"
import { Liveness } from "../recovery/Liveness.js"
import { Recovery } from "../recovery/Recovery.js"
import { RecoveryComplete } from "../recovery/StartupRecovery.js"
import { Settings } from "../Settings.js"
import { Activity } from "../supervision/Activity.js"
import { PendingWrites } from "../supervision/PendingWrites.js"
import type { PartEnded } from "../supervision/ToolRunner.js"
import { ToolRunner } from "../supervision/ToolRunner.js"
import { makeAgentLoop } from "./AgentLoop.js"
import { LanguageModels } from "./LanguageModel.js"
import { askTool, taskTool } from "./SessionTools.js"
import { Tools } from "./Tools.js"
import type { Turn, TurnResult } from "./TurnState.js"
import { makeTurnState, resultOf } from "./TurnState.js"

/** How often an instance reads the aborts other instances asked of it (acted on well within a second). */
const cancelRequestPoll = Duration.millis(200)
/** How often an instance that asked another for an abort looks whether the turn ended. */
const cancelWaitPoll = Duration.millis(50)
/** How often, while it waits, it checks that the owner still lives (a dead one is rescued instead). */
const ownerCheckEvery = Duration.seconds(1)

/**
 * Cross-instance delivery runs on the wall clock even under a TestClock: it is how two processes
 * hear each other through the database, not a time rule of the supervision layer, and a peer's
 * answer does not wait for a test to move a virtual clock.
 */
const wallClock = Clock.make()
const wallSleep = (duration: Duration.Duration) => Effect.sleep(duration).pipe(Effect.withClock(wallClock))

/**
 * Sessions and their turns. A turn is a fiber this instance runs for a session it has claimed in
 * the database (`TurnState` holds what only this process knows of it); its end (normal, failed,
 * or interrupted by an abort, the idle monitor or shutdown) is recorded in its `onExit`: children
 * are ended first, then the session's own running parts, then its status. What a prompt's turn
 * runs is the agent loop (`AgentLoop`); `task` and `ask` (`SessionTools`) are made here, from the
 * service's own methods.
 */
export class SessionService extends Effect.Service<SessionService>()("vigil/SessionService", {
  scoped: Effect.gen(function*() {
    // Requiring the proof makes "recovery before sessions" a fact of the layer graph.
    yield* RecoveryComplete
    const sessions = yield* SessionRepo
    const parts = yield* PartRepo
    const runner = yield* ToolRunner
    const events = yield* Events
    const activity = yield* Activity
    const lease = yield* InstanceLease
    const liveness = yield* Liveness
    const recovery = yield* Recovery
    const settings = yield* Settings
    const pending = yield* PendingWrites
    const { defaultModel, models } = yield* LanguageModels
    const state = yield* makeTurnState
    const cancelFibers = yield* FiberMap.make<SessionId>()
    // Runs before the turns' fiber map closes and interrupts every turn (finalizers run in
    // reverse): all of them end at once, so each ends only its own parts and status. Left to walk
    // its subtree, each would read the whole active tree: quadratic in a deep one (66 s for 1,500 levels).
    const endAllAsShutdown = () => {
      const reason = new SessionCancelled({ by: "shutdown" })
      for (const turn of state.running()) state.endWithTree(turn, reason)
    }
    yield* Effect.addFinalizer(() => Effect.sync(endAllAsShutdown))

    const publishSession = (id: SessionId) =>
      sessions.get(id).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.void,
          onSome: (session) => events.publish({ type: "session.updated", session })
        }))
      )

    const transition = Effect.fnUntraced(function*(
      id: SessionId,
      from: ReadonlyArray<Session["status"]>,
      to: Session["status"],
      options: { readonly cancelReason?: ErrorReason | null; readonly turnId?: string | null | undefined } = {}
    ) {
      const at = yield* Clock.currentTimeMillis
      const changed = yield* sessions.transition(id, from, to, {
        at,
        ...(options.cancelReason !== undefined ? { cancelReason: options.cancelReason } : {}),
        ...(typeof options.turnId === "string" ? { turnId: options.turnId } : {})
      })
      if (changed) yield* publishSession(id)
      return changed
    })

    const get = Effect.fn("SessionService.get")(function*(id: SessionId) {
      return yield* sessions.get(id).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new SessionNotFound({ sessionId: id, message: `no session ${id}` })),
          onSome: Effect.succeed
        }))
      )
    })

    const create = Effect.fn("SessionService.create")(function*(
      options: { readonly parentId?: SessionId | undefined; readonly parentPartId?: PartId; readonly title?: string | undefined } = {}
    ) {
      // A parent must exist, and the new session's id is fresh: a parentId can only point at an
      // older session, so the parent links can never make a cycle (the walks still guard against one).
      if (options.parentId !== undefined) yield* get(options.parentId)
      const now = yield* Clock.currentTimeMillis
      const session = new Session({
        id: makeSessionId(),
        parentId: options.parentId ?? null,
        parentPartId: options.parentPartId ?? null,
        title: options.title ?? "",
        status: "idle",
        cancelReason: null,
        lastActivityAt: now,
        ownerId: lease.id,
        createdAt: now
      })
      yield* sessions.insert(session)
      yield* events.publish({ type: "session.updated", session })
      return session
    })


    /**
     * The busy and waiting sessions under `id`, `id` first, breadth first (so every session comes
     * after its parent). One read of the active set, walked in memory with a queue and a seen-set:
     * a chain 100,000 deep costs one linear pass, and a cycle (which creation cannot make, see
     * `create`) still ends.
     */
    const activeTree = Effect.fnUntraced(function*(id: SessionId) {
      const byParent = new Map<string, Array<Session>>()
      const rows = new Map<SessionId, Session>()
      for (const session of yield* sessions.active()) {
        rows.set(session.id, session)
        if (session.parentId === null) continue
        const siblings = byParent.get(session.parentId)
        if (siblings === undefined) byParent.set(session.parentId, [session])
        else siblings.push(session)
      }
      const order: Array<SessionId> = [id]
      const seen = new Set<string>(order)
      for (let i = 0; i < order.length; i++) {
        for (const child of byParent.get(order[i]!) ?? []) {
          if (seen.has(child.id)) continue
          seen.add(child.id)
          order.push(child.id)
        }
      }
      // The rows as read, so the end can publish each session's new state without reading it again.
      return { order, rows }
    })

    /**
     * Ends sessions that no turn fiber of ours holds, in bulk: their running parts (ours through
     * the runner, the rest by a guarded write), then their status. Statements over many ids at a
     * time, so ending a tree of 100,000 is a few hundred statements, not a few hundred thousand.
     * Both writes are fenced on this instance: what another owner holds, that owner ends (an abort
     * reaches it through the database), or the rescue of a dead one does.
     */
    const endSessions = Effect.fnUntraced(function*(
      ids: ReadonlyArray<SessionId>,
      reason: ErrorReason,
      known: ReadonlyMap<SessionId, Session> = new Map()
    ) {
      if (ids.length === 0) return
      const notOurs: Array<PartId> = []
      const ours: Array<PartId> = []
      for (const partId of yield* parts.activeIdsOfSessions(ids)) {
        if (yield* runner.isRunningHere(partId)) ours.push(partId)
        else notOurs.push(partId)
      }
      yield* Effect.forEach(ours, (partId) => runner.cancel(partId, reason), { concurrency: "unbounded", discard: true })
      const at = yield* Clock.currentTimeMillis
      yield* parts.failMany(notOurs, { reason, at, ownerId: lease.id })
      for (const ended of yield* sessions.transitionMany(ids, ["busy", "waiting"], "cancelled", { at, cancelReason: reason, ownerId: lease.id })) {
        const before = known.get(ended)
        yield* before === undefined
          ? publishSession(ended)
          : events.publish({
            type: "session.updated",
            session: new Session({ ...before, status: "cancelled", cancelReason: reason, lastActivityAt: at }, true)
          })
      }
    })

    /** How many sessions one bulk step of a tree's end takes at most. */
    const endBatch = 500

    /**
     * Ends a session and every busy/waiting session under it with `reason`, deepest first, so no
     * session ends before its children; iterative, never recursive. A turn of ours in the tree is
     * told first (its reason, and that the tree's end ends its children), so that however it sees
     * its end (interrupted, or a `task` under it failing because its child was ended) it ends as
     * this cancel; then each is interrupted, in order. Sessions without a turn here end in bulk.
     */
    const endSessionTree = Effect.fnUntraced(function*(id: SessionId, reason: ErrorReason, options: { readonly fromItsTurn?: boolean } = {}) {
      const { order: tree, rows } = yield* activeTree(id)
      const held = new Map<SessionId, Turn>()
      for (const sessionId of tree) {
        const turn = state.turnOf(sessionId)
        // Called from the root's own turn's end: that fiber cannot wait for itself; it ends in bulk.
        if (turn === undefined || (options.fromItsTurn && sessionId === id)) continue
        state.endWithTree(turn, reason)
        held.set(sessionId, turn)
      }
      let batch: Array<SessionId> = []
      for (let i = tree.length - 1; i >= 0; i--) {
        const sessionId = tree[i]!
        const turn = held.get(sessionId)
        if (turn === undefined) {
          batch.push(sessionId)
          if (batch.length >= endBatch) {
            yield* endSessions(batch, reason, rows)
            batch = []
          }
          continue
        }
        yield* endSessions(batch, reason, rows)
        batch = []
        // The turn's onExit ends its own parts and status; removing awaits it.
        yield* state.interrupt(sessionId)
        yield* Deferred.await(turn.done)
      }
      yield* endSessions(batch, reason, rows)
    })

    /**
     * Ends a session's turn and everything under it, children first, with `reason`
     * (`SessionCancelled`, `IdleCancelled`, `WatchdogStuck`, …). A session at rest is left as it is.
     * Returns once the session and its parts are terminal.
     */
    const abort: (id: SessionId, reason: ErrorReason) => Effect.Effect<Session, SessionNotFound> = Effect.fn(
      "SessionService.abort"
    )(function*(id: SessionId, reason: ErrorReason) {
      yield* get(id)
      if (state.isRunning(id)) {
        yield* endSessionTree(id, reason)
        return yield* get(id)
      }
      const holder = yield* sessions.holder(id)
      if (Option.isSome(holder) && isSessionActive(holder.value.status)) {
        if (holder.value.ownerId === lease.id) yield* endSessionTree(id, reason)
        else yield* abortElsewhere(id, holder.value, reason)
      }
      return yield* get(id)
    })

    /**
     * An abort of a turn another instance runs: only its owner can stop its fibers and its
     * processes, so the abort is asked of it through the database (a cancel request on the session
     * row, which the owner polls), and this waits until that turn is over: the owner ended it, or
     * it died and its work was rescued here. Bounded: past the owner's own abort bound (twice the
     * abort grace, the kill grace and a margin) the session is returned as it then is.
     */
    const abortElsewhere = Effect.fnUntraced(function*(
      id: SessionId,
      holder: { readonly ownerId: InstanceId; readonly turnId: string | null },
      reason: ErrorReason
    ) {
      const over = (now: Option.Option<{ readonly status: Session["status"]; readonly turnId: string | null }>) =>
        Option.isNone(now) || !isSessionActive(now.value.status) || now.value.turnId !== holder.turnId
      if (yield* sessions.requestCancel(id, { turnId: holder.turnId, reason })) {
        yield* events.record({
          type: "session.cancel_requested",
          instanceId: lease.id,
          sessionId: id,
          reason,
          data: { ownerId: holder.ownerId, turnId: holder.turnId }
        })
      }
      const waitMillis = 2 * Duration.toMillis(settings.abortGrace) + Duration.toMillis(settings.killGrace) + 5_000
      const started = Date.now()
      let ownerCheckedAt = Number.NEGATIVE_INFINITY
      for (;;) {
        if (over(yield* sessions.holder(id))) return
        if (Date.now() - ownerCheckedAt >= Duration.toMillis(ownerCheckEvery)) {
          ownerCheckedAt = Date.now()
          const dead = yield* liveness.deadAmong([holder.ownerId])
          if (dead.size > 0) {
            yield* Effect.logInfo("the owner of an aborted session is dead: rescuing its work", {
              session: id,
              owner: holder.ownerId,
              cause: dead.get(holder.ownerId)?.cause
            })
            yield* recovery.recoverDeadOwners({ trigger: "watchdog" })
            continue
          }
        }
        if (Date.now() - started > waitMillis) {
          return yield* Effect.logWarning("the owner did not end the aborted turn in time; the session is returned as it is", {
            session: id,
            owner: holder.ownerId,
            waitedMs: Date.now() - started
          })
        }
        yield* wallSleep(cancelWaitPoll)
      }
    })

    /**
     * The owner's side: every abort another instance asked of this one is run here, as if it had
     * come in locally, one at a time per session. A failing read is logged; the next poll retries.
     */
    const serveCancelRequests = Effect.gen(function*() {
      for (const request of yield* sessions.cancelRequests(lease.id)) {
        yield* FiberMap.run(
          cancelFibers,
          request.id,
          Effect.logInfo("ending a turn another instance asked to abort", { reason: request.reason._tag }).pipe(
            Effect.zipRight(abort(request.id, request.reason)),
            Effect.catchAllCause((cause) => Effect.logWarning("could not serve a cancel request", cause)),
            Effect.annotateLogs({ session: request.id })
          ),
          { onlyIfMissing: true }
        )
      }
    }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("cannot read cancel requests; the next poll retries", cause)))
    yield* serveCancelRequests.pipe(
      Effect.zipRight(wallSleep(cancelRequestPoll)),
      Effect.forever,
      Effect.annotateLogs({ module: "SessionService" }),
      Effect.forkScoped
    )

    /** What a turn's end writes: its parts ended (children first for a cancel), then its status. */
    const recordTurnEnd = Effect.fnUntraced(function*(id: SessionId, turn: Turn, result: TurnResult) {
      switch (result._tag) {
        case "Completed":
          yield* transition(id, ["busy", "waiting"], "idle", { cancelReason: null, turnId: turn.id })
          return
        case "Cancelled":
          // A tree's walk already ended its children; otherwise (a shutdown) the walk is ours.
          if (turn.treeEnded) yield* endSessions([id], result.reason)
          else yield* endSessionTree(id, result.reason, { fromItsTurn: true })
          return
        case "Failed": {
          // A turn that failed still leaves nothing running under it.
          const active = yield* parts.activeOfSessions([id])
          yield* Effect.forEach(active, (part) => runner.cancel(part.id, result.reason), { discard: true })
          yield* transition(id, ["busy", "waiting"], "error", { cancelReason: result.reason, turnId: turn.id })
        }
      }
    })

    /**
     * Ends a turn: records it, then frees the session in memory and wakes whoever awaits it. The
     * second happens whatever the first does: when the store refuses the session's status (a full
     * disk), the write is held and retried (`PendingWrites`) and the row keeps saying `busy` until
     * the store takes it (or, if this process dies first, until recovery frees it); a new prompt to
     * the session first tries the held write, and is refused only while the store still refuses it.
     */
    const endTurn = Effect.fnUntraced(function*(id: SessionId, turn: Turn, exit: Exit.Exit<string, PartEnded>) {
      const result = resultOf(turn, exit)
      yield* pending.attempt(`the end of the turn of session ${id}`, recordTurnEnd(id, turn, result)).pipe(
        Effect.catchTag("StoreWriteFailed", (error) => {
          const to = result._tag === "Completed" ? "idle" as const : result._tag === "Cancelled" ? "cancelled" as const : "error" as const
          const cancelReason = result._tag === "Completed" ? null : result.reason
          return pending.hold({
            key: `session:${id}`,
            what: `the end of the turn of session ${id} (${to})`,
            sessionId: id,
            write: pending.attempt(
              `the end of the turn of session ${id}`,
              transition(id, ["busy", "waiting"], to, { cancelReason, turnId: turn.id }).pipe(Effect.asVoid)
            ),
            error
          })
        }),
        Effect.ensuring(Effect.suspend(() => {
          state.unclaim(id, turn.id)
          // Once the session is at rest a new turn may already hold it (here, too): only this turn's own entries go.
          if (!state.finish(id, turn)) return Deferred.succeed(turn.done, result)
          return activity.forget(id).pipe(Effect.zipRight(Deferred.succeed(turn.done, result)))
        }))
      )
    })

    const beginTurn = Effect.fnUntraced(function*(
      id: SessionId,
      turnId: string,
      work: Effect.Effect<string, PartEnded>,
      model?: string,
      depth?: number
    ) {
      const turn: Turn = { id: turnId, done: yield* Deferred.make<TurnResult>(), cancelReason: undefined, model, depth, treeEnded: false }
      yield* state.start(
        id,
        turn,
        work.pipe(
          Effect.onExit((exit) =>
            endTurn(id, turn, exit).pipe(Effect.catchAllCause((cause) => Effect.logError("could not end a turn", cause)))
          ),
          Effect.annotateLogs({ session: id })
        )
      )
      return turn
    })

    /** A session another turn holds, naming the instance that runs that turn. */
    const busy = (session: Session) =>
      new SessionBusy({
        sessionId: session.id,
        status: session.status,
        ownerId: session.ownerId,
        message: session.ownerId === lease.id
          ? `session ${session.id} is ${session.status} with a turn of this instance (${session.ownerId}): wait for it to end or abort it`
          : `session ${session.id} is ${session.status} with a turn of instance ${session.ownerId}: wait for it to end or abort it (at any instance)`
      })

    /**
     * Claims a session at rest for a new turn, in the database (status, owner and turn id in one
     * compare-and-set), so it runs one turn at a time whichever instance is asked; a busy or
     * waiting one answers `SessionBusy` naming the owner. Returns the turn id.
     */
    const claim = Effect.fnUntraced(function*(id: SessionId) {
      // A turn whose end the store refused: its resting status is held; write it first if the
      // store takes writes again, and never start a turn over it while it is still held.
      if (yield* pending.isHeld(`session:${id}`)) yield* pending.flushNow
      const first = yield* get(id)
      if (yield* pending.isHeld(`session:${id}`)) {
        return yield* new SessionBusy({
          sessionId: id,
          status: first.status,
          ownerId: first.ownerId,
          message: `session ${id}: the end of its last turn is not written yet (the store refuses writes); try again later`
        })
      }
      const turnId = `turn_${randomUUID()}`
      const tryClaim = Effect.flatMap(Clock.currentTimeMillis, (at) => sessions.claim(id, { ownerId: lease.id, turnId, at }))
      if (!(yield* tryClaim)) {
        const session = yield* get(id)
        // Held by a turn of a dead instance: its work is rescued now rather than at the next scan,
        // so the session takes this prompt at once (guarantee 9). Only on this refused path.
        const heldByDead = isSessionActive(session.status) && session.ownerId !== lease.id &&
          (yield* liveness.deadAmong([session.ownerId])).size > 0
        if (!heldByDead) return yield* busy(session)
        yield* Effect.logInfo("a prompt for a session of a dead instance: rescuing its work first", {
          session: id,
          owner: session.ownerId
        })
        yield* recovery.recoverDeadOwners({ trigger: "watchdog" })
        if (!(yield* tryClaim)) return yield* busy(yield* get(id))
      }
      state.claim(id, turnId)
      yield* publishSession(id)
      return turnId
    })

    /** Whether `turnId` still holds its session: a turn that lost it (rescued as dead, say) must not go on. */
    const holdsClaim = (id: SessionId, turnId: string) =>
      Effect.map(sessions.holder(id), Option.exists((holder) => isSessionActive(holder.status) && holder.turnId === turnId))

    /** Frees a session claimed by a turn that could not begin. */
    const releaseClaim = (id: SessionId, turnId: string) =>
      transition(id, ["busy"], "idle", { turnId }).pipe(
        Effect.zipRight(Effect.sync(() => state.unclaim(id, turnId))),
        Effect.ignore
      )

    const modelOf = (name: string | undefined) =>
      Option.fromNullable(models.get(name ?? defaultModel)).pipe(
        Option.match({
          onNone: () =>
            Effect.fail(
              new UnknownModel({ model: name ?? defaultModel, known: [...models.keys()], message: `unknown model "${name}"` })
            ),
          onSome: Effect.succeed
        })
      )

    // The tools sessions offer: the app's, then `task` and `ask`, made from this service's own
    // methods (below). The loop reads the registry when a turn runs, by then complete.
    const tools = new Map<string, AnyTool>()
    for (const tool of yield* Tools) tools.set(tool.name, tool)
    const loop = yield* makeAgentLoop({ tools, holdsClaim })

    /** Starts a turn of the agent loop on a session at rest. */
    const prompt = Effect.fn("SessionService.prompt")(function*(
      id: SessionId,
      options: { readonly text: string; readonly model?: string | undefined; readonly depth?: number }
    ) {
      const model = yield* modelOf(options.model)
      const turnId = yield* claim(id)
      return yield* loop.writePrompt(id, options.text).pipe(
        Effect.zipRight(beginTurn(id, turnId, loop.run(id, turnId, model), model.name, options.depth)),
        Effect.onError(() => releaseClaim(id, turnId))
      )
    })

    /** Runs a turn and waits for its end (used by `task`, and by tests driving the service). */
    const runTurn = Effect.fn("SessionService.runTurn")(function*(
      id: SessionId,
      options: { readonly text: string; readonly model?: string | undefined; readonly depth?: number }
    ) {
      const turn = yield* prompt(id, options)
      return yield* Deferred.await(turn.done)
    })

    /** Runs one tool call in a session at rest (like opencode's shell route); the session is busy meanwhile. */
    const runTool = Effect.fn("SessionService.runTool")(function*(
      id: SessionId,
      options: { readonly tool: string; readonly input: unknown; readonly timeout?: Duration.Duration | undefined }
    ) {
      const tool = tools.get(options.tool)
      if (tool === undefined) {
        return yield* new UnknownTool({ tool: options.tool, known: [...tools.keys()], message: `unknown tool "${options.tool}" (known: ${[...tools.keys()].join(", ")})` })
      }
      const decoded = Schema.decodeUnknownEither(tool.input)(options.input)
      if (decoded._tag === "Left") {
        return yield* new InvalidToolInput({
          tool: tool.name,
          message: `invalid input for ${tool.name}: ${ParseResult.TreeFormatter.formatErrorSync(decoded.left)}`
        })
      }
      // The input is stored as JSON: one that cannot be (nested thousands deep, say) is refused
      // here, before the session is claimed, rather than failing half-way through.
      const storable = Either.try(() => JSON.stringify(options.input))
      if (Either.isLeft(storable)) {
        return yield* new InvalidToolInput({ tool: tool.name, message: `invalid input for ${tool.name}: it cannot be stored as JSON (${String(storable.left)})` })
      }
      const turnId = yield* claim(id)
      const start = Effect.gen(function*() {
        const handle = yield* runner.runTool({
          sessionId: id,
          tool,
          input: options.input,
          ...(options.timeout !== undefined ? { timeout: options.timeout } : {})
        })
        const turn = yield* beginTurn(id, turnId, handle.await.pipe(Effect.map((outcome) => (outcome._tag === "Completed" ? outcome.output : ""))))
        return { partId: handle.partId, done: Deferred.await(turn.done) }
      })
      // Whatever goes wrong between the claim and the turn, the session is not left busy.
      return yield* start.pipe(Effect.onError(() => releaseClaim(id, turnId)))
    })

    const reply = Effect.fn("SessionService.reply")(function*(id: SessionId, requestId: string, answer: string) {
      const session = yield* get(id)
      if (!(yield* state.answer(requestId, id, answer))) {
        // The question waits in the memory of the instance that runs the turn: the reply goes there.
        if (isSessionActive(session.status) && session.ownerId !== lease.id) return yield* busy(session)
        return yield* new RequestNotFound({ requestId, message: `session ${id} is not waiting on request ${requestId}` })
      }
    })

    const task = yield* taskTool({ create, runTurn, abort }, state)
    const ask = yield* askTool(state, transition)
    tools.set(task.name, task).set(ask.name, ask)

    return {
      create,
      get,
      list: (options: { readonly limit?: number } = {}) => sessions.list(options),
      parts: Effect.fn("SessionService.parts")(function*(id: SessionId) {
        yield* get(id)
        return yield* parts.bySession(id)
      }),
      prompt: (id: SessionId, options: { readonly text: string; readonly model?: string | undefined }) =>
        prompt(id, options).pipe(Effect.asVoid),
      runTurn,
      runTool,
      abort,
      reply,
      /** Every tool sessions offer, `task` and `ask` with the contributed ones: what the watchdog reads their kinds from. */
      tools: (): ReadonlyArray<AnyTool> => [...tools.values()],
      isTurnRunningHere: (id: SessionId) => Effect.sync(() => state.isRunning(id)),
      /**
       * Ends every turn this instance runs, as the close of its scope would (`SessionCancelled` by
       * `shutdown`, each ending its own parts): a server runs it first when it stops, so the final
       * states are published while its event streams are still open.
       */
      shutdown: Effect.suspend(() => {
        endAllAsShutdown()
        return state.interruptAll
      })
    } as const
  })
}) {}
