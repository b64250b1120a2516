import type { ErrorReason, PartId, Session, SessionBusy, SessionId, SessionNotFound, UnknownModel } from "@vigil/domain"
import { describeReason, SessionCancelled } from "@vigil/domain"
import { PartRepo, SessionRepo } from "@vigil/store"
import type { ToolDefinition } from "@vigil/tools"
import { ToolError } from "@vigil/tools"
import { Deferred, Effect, Option, Schema } from "effect"
import { Settings } from "../Settings.js"
import { Activity } from "../supervision/Activity.js"
import { PartEnded } from "../supervision/ToolRunner.js"
import type { TurnResult, TurnState } from "./TurnState.js"

const TaskInput = Schema.Struct({ prompt: Schema.String, description: Schema.optional(Schema.String) })
const AskInput = Schema.Struct({ question: Schema.String })

/**
 * What `task` needs of the session service: a sub-agent is a child session and a turn of it, so
 * the tool is made inside the service, from its own methods.
 */
export interface SubAgents {
  readonly create: (options: {
    readonly parentId: SessionId
    readonly parentPartId: PartId
    readonly title: string
  }) => Effect.Effect<Session, SessionNotFound>
  readonly runTurn: (
    id: SessionId,
    options: { readonly text: string; readonly model: string | undefined; readonly depth: number }
  ) => Effect.Effect<TurnResult, SessionNotFound | SessionBusy | UnknownModel>
  readonly abort: (id: SessionId, reason: ErrorReason) => Effect.Effect<Session, SessionNotFound>
}

/** The `task` tool: runs a sub-agent, a child session whose turn runs the prompt. */
export const taskTool = Effect.fnUntraced(function*(service: SubAgents, state: TurnState) {
  const sessions = yield* SessionRepo
  const parts = yield* PartRepo
  const settings = yield* Settings

  /**
   * How many `task` levels a session is below its root, counted up its parents; stops at `limit`
   * (only whether it reached the bound matters), so it is at most `limit` reads.
   */
  const depthOf = Effect.fnUntraced(function*(session: Session, limit: number) {
    let depth = 0
    let current = session
    while (current.parentId !== null && depth < limit) {
      const parent = yield* sessions.get(current.parentId)
      if (Option.isNone(parent)) break
      depth++
      current = parent.value
    }
    return depth
  })

  const task: ToolDefinition<typeof TaskInput.Type> = {
    name: "task",
    description: "Run a sub-agent: a child session whose turn runs the prompt; its final text is the result.",
    input: TaskInput,
    waitsOn: "child-session",
    run: (input, context) => {
      let childId: SessionId | undefined
      return Effect.gen(function*() {
        const parent = yield* sessions.get(context.sessionId).pipe(Effect.map(Option.getOrThrow))
        // Sub-agents nest at most `max_task_depth` deep: a model that always calls `task` must
        // hit a wall the model can read, not recurse until the machine gives out.
        // Known in memory for a sub-agent's turn (each level would otherwise walk up all of its
        // ancestors, quadratic in a deep tree); counted up the parents otherwise.
        const known = state.turnOf(parent.id)?.depth
        const depth = known !== undefined ? Math.min(known, settings.maxTaskDepth) : yield* depthOf(parent, settings.maxTaskDepth)
        if (depth >= settings.maxTaskDepth) {
          return yield* new ToolError({
            message: `task refused: this session is already ${depth} sub-agent levels deep, the most experimental.max_task_depth (${settings.maxTaskDepth}) allows; do the work here instead of starting another sub-agent`
          })
        }
        const child = yield* service.create({
          parentId: parent.id,
          parentPartId: context.partId,
          title: input.description ?? "sub-agent"
        })
        childId = child.id
        yield* parts.setChildSession(context.partId, child.id)
        // A sub-agent thinks with its parent's model (a `task` run alone, outside a turn: the default).
        const result = yield* service.runTurn(child.id, { text: input.prompt, model: state.turnOf(parent.id)?.model, depth: depth + 1 })
        if (result._tag !== "Completed") return yield* new PartEnded({ reason: result.reason })
        // What failed inside the sub-agent reaches the parent even when the child's own text
        // does not mention it: errors travel up the tree.
        const failed = (yield* parts.bySession(child.id)).filter((part) => part.kind === "tool" && part.error !== null)
        if (failed.length === 0) return result.text
        const lines = failed.map((part) => `- ${part.tool}: ${describeReason(part.error!)}`)
        return `${result.text}${result.text === "" ? "" : "\n"}[errors in sub-agent ${child.id}]\n${lines.join("\n")}`
      }).pipe(
        Effect.catchTags({
          SessionNotFound: (error) => Effect.fail(new ToolError({ message: error.message })),
          SessionBusy: (error) => Effect.fail(new ToolError({ message: error.message })),
          UnknownModel: (error) => Effect.fail(new ToolError({ message: error.message }))
        }),
        // The task ending early (its deadline, the watchdog, the parent's abort) ends the child.
        Effect.onInterrupt(() =>
          // A child whose turn a tree's end (or the shutdown) already holds needs no walk of its own.
          childId === undefined || state.turnOf(childId)?.treeEnded
            ? Effect.void
            : service.abort(childId, new SessionCancelled({ by: `parent task ${context.partId}` })).pipe(Effect.ignore)
        )
        // A child that did not complete ends the task with the child's own reason (`PartEnded`,
        // which the runner takes from any body); a tool's type names only `ToolError`, since
        // @vigil/tools does not know the runtime.
      ) as Effect.Effect<string, ToolError>
    }
  }
  return task
})

/**
 * The `ask` tool: the session waits (`waiting`) until `/reply` answers the request, whose id is
 * the ask part's id. `transition` is the service's fenced status change, on the turn's claim.
 */
export const askTool = Effect.fnUntraced(function*(
  state: TurnState,
  transition: (
    id: SessionId,
    from: ReadonlyArray<Session["status"]>,
    to: Session["status"],
    options: { readonly turnId: string | undefined }
  ) => Effect.Effect<boolean>
) {
  const activity = yield* Activity

  const ask: ToolDefinition<typeof AskInput.Type> = {
    name: "ask",
    description: "Ask the user a question and wait for the answer (a permission or a question).",
    input: AskInput,
    waitsOn: "reply",
    run: (_input, context) => {
      const sessionId = context.sessionId
      return Effect.gen(function*() {
        // The request id is the ask part's id: a client finds it among the session's parts.
        const answer = yield* state.openRequest(context.partId, sessionId)
        yield* transition(sessionId, ["busy"], "waiting", { turnId: state.claimOf(sessionId) })
        const reply = yield* Deferred.await(answer)
        yield* activity.touch(sessionId)
        return reply
      }).pipe(
        Effect.ensuring(
          Effect.suspend(() => {
            state.closeRequest(context.partId)
            return transition(sessionId, ["waiting"], "busy", { turnId: state.claimOf(sessionId) })
          })
        )
      )
    }
  }
  return ask
})
