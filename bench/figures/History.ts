import { join } from "node:path"
import { makeSessionId } from "../../packages/domain/src/index.js"
import type { SessionId } from "../../packages/domain/src/index.js"
import { SessionService } from "../../packages/runtime/src/index.js"
import { openDatabase } from "../Database.js"
import { Effect, Schema } from "../effect.js"
import type { Row } from "../Report.js"
import { median, row, show } from "../Report.js"
import { migrate } from "../Seed.js"
import { benchRuntime, buildOpen } from "../Support.js"

const steps = 200
const short = 400
const long = 6_000
const rounds = 3

const echo = {
  name: "echo",
  description: "answers at once",
  input: Schema.Struct({}),
  run: () => Effect.succeed("ok")
}

/** A 200-step turn: 199 tool calls, then the final text (the turn's step bound is 200). */
const turnScript = JSON.stringify([...Array.from({ length: steps - 1 }, () => ({ tool: "echo", input: {} })), { text: "done" }])

/**
 * A session at rest with `count` parts of history (prompt, text and tool parts, as turns leave
 * them), inserted in one transaction.
 */
const seedSession = (file: string, count: number): SessionId => {
  const db = openDatabase(file)
  const id = makeSessionId()
  const now = Date.now() - 3_600_000
  try {
    db.transaction(() => {
      db.prepare(
        `INSERT INTO vigil_sessions (id, parent_id, parent_part_id, title, status, cancel_reason, last_activity_at, owner_id, created_at)
         VALUES (?, NULL, NULL, 'history', 'idle', NULL, ${now}, 'ins_bench_old', ${now})`
      ).run(id)
      const part = db.prepare(
        `INSERT INTO vigil_parts (id, session_id, kind, tool, input, call_id, status, output, error, created_at, started_at,
           ended_at, deadline_at, owner_id, child_session_id, pid, pgid, proc_start)
         VALUES (?, ?, ?, ?, ?, ?, 'completed', ?, NULL, ${now}, ${now}, ${now}, NULL, 'ins_bench_old', NULL, NULL, NULL, NULL)`
      )
      for (let n = 0; n < count; n++) {
        const kind = n % 10 === 0 ? "prompt" : n % 10 === 9 ? "text" : "tool"
        const partId = `prt_${id.slice(4)}${String(n).padStart(8, "0")}`
        part.run(partId, id, kind, kind === "tool" ? "bash" : "", kind === "tool" ? `{"command":"echo ${n}"}` : "null", kind === "tool" ? `call_${n}` : null, kind === "prompt" ? "[]" : `line ${n} of the history\n`)
      }
    })()
  } finally {
    db.close()
  }
  return id
}

/**
 * Figure 8: a 200-step turn (199 instant tool calls and the final text, through the script model)
 * on a session with 400 parts of history and on one with 6,000; rounds interleaved, median of
 * three each. A step reads no history (the turn reads it once), so the two should cost the same.
 */
export const historyFigures = (dir: string) =>
  Effect.gen(function*() {
    const file = join(dir, "history-turns.db")
    yield* migrate(file)
    const sessions = { short: [] as Array<SessionId>, long: [] as Array<SessionId> }
    for (let round = 0; round <= rounds; round++) {
      sessions.short.push(seedSession(file, short))
      sessions.long.push(seedSession(file, long))
    }
    const runtime = yield* buildOpen(benchRuntime({ file, tools: [echo] }))
    const times = yield* Effect.gen(function*() {
      const service = yield* SessionService
      const turn = (id: SessionId) =>
        Effect.gen(function*() {
          const started = performance.now()
          const result = yield* service.runTurn(id, { text: turnScript })
          if (result._tag !== "Completed") return yield* Effect.dieMessage(`a bench turn did not complete: ${JSON.stringify(result)}`)
          return performance.now() - started
        })
      // The first round warms up.
      yield* turn(sessions.short[0]!)
      yield* turn(sessions.long[0]!)
      const shortMs: Array<number> = []
      const longMs: Array<number> = []
      for (let round = 1; round <= rounds; round++) {
        shortMs.push(yield* turn(sessions.short[round]!))
        longMs.push(yield* turn(sessions.long[round]!))
      }
      return { short: median(shortMs), long: median(longMs) }
    }).pipe(Effect.provide(runtime.context), Effect.onError(() => runtime.close))
    yield* runtime.close
    return [
      row({
        figure: 8,
        name: `200-step turn on a session of ${show(short)} parts`,
        value: times.short,
        unit: "ms",
        floor: { none: `the ${show(short)}-part turn is the floor of the ${show(long)}-part one` }
      }),
      row({
        figure: 8,
        name: `200-step turn on a session of ${show(long)} parts`,
        value: times.long,
        unit: "ms",
        floor: { value: times.short, what: `the same turn at ${show(short)} parts` },
        ratioTarget: 1.5
      })
    ] satisfies ReadonlyArray<Row>
  })
