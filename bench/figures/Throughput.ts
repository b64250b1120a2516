import { join } from "node:path"
import type { SessionId } from "../../packages/domain/src/index.js"
import { makePartId } from "../../packages/domain/src/index.js"
import { ToolRunner } from "../../packages/runtime/src/index.js"
import { openDatabase } from "../Database.js"
import { Effect } from "../effect.js"
import { barePartWrites, bareParts } from "../Floors.js"
import type { Row } from "../Report.js"
import { median, row } from "../Report.js"
import { migrate } from "../Seed.js"
import { SqlClient } from "../sql.js"
import { benchRuntime, benchTools, buildOpen, CountingScheduler, openSession } from "../Support.js"

const warmup = 1_000
const perRound = 4_000
const rounds = 5
const floorPerRound = 20_000

/**
 * Figure 3: a no-op tool's full lifecycle through `ToolRunner.runTool` (persist pending and
 * running, run the body in its supervised fiber, persist completed, all awaited), one at a time,
 * eight and thirty-two at a time (group commit shares a transaction among concurrent calls);
 * against the floor: the two writes a part cannot do without (insert it, update it to completed)
 * with better-sqlite3 prepared statements, on a file of the same schema; and beside it the same
 * two writes through the runtime's own client's statements (@effect/sql), the path every store
 * statement takes but a lone write. Each
 * rate is the median of five rounds; the rounds of the five kinds are interleaved.
 */
export const throughputFigures = (dir: string) => {
  // Every fiber of the figure (the runtime's own too) runs on it, so a count is all of a call's steps.
  const scheduler = new CountingScheduler()
  /** Runs `round` and returns what it returned with the Effect steps it took. */
  const counted = <A, E>(round: Effect.Effect<A, E>) =>
    Effect.suspend(() => {
      const before = scheduler.steps
      return Effect.map(round, (value) => [value, scheduler.steps - before] as const)
    })
  return Effect.gen(function*() {
    const floorFile = join(dir, "floor.db")
    yield* migrate(floorFile)
    const runtime = yield* buildOpen(benchRuntime({ file: join(dir, "throughput.db"), tools: [benchTools.noop] }))
    const rates = yield* Effect.acquireUseRelease(
      Effect.sync(() => bareWrites(floorFile)),
      (floorRound) =>
        Effect.gen(function*() {
          const runner = yield* ToolRunner
          const sessionId = yield* openSession("throughput")
          const clientRound = yield* clientWrites(sessionId)
          const lifecycle = runner.runTool({ sessionId, tool: benchTools.noop, input: {} }).pipe(
            Effect.flatMap((handle) => handle.await),
            Effect.flatMap((outcome) =>
              outcome._tag === "Completed" ? Effect.void : Effect.dieMessage(`a no-op tool did not complete: ${JSON.stringify(outcome)}`)
            )
          )
          const perSecond = (count: number, concurrency: number) =>
            Effect.gen(function*() {
              const started = performance.now()
              yield* Effect.forEach(Array.from({ length: count }), () => lifecycle, { concurrency, discard: true })
              return count / ((performance.now() - started) / 1000)
            })
          yield* perSecond(warmup, 8)
          floorRound.run(warmup)
          // Rounds interleaved, so a noisy neighbour on the machine weighs on both sides alike.
          const sequential: Array<number> = []
          const sequentialSteps: Array<number> = []
          const clientSteps: Array<number> = []
          const concurrent: Array<number> = []
          const concurrent32: Array<number> = []
          const floor: Array<number> = []
          const client: Array<number> = []
          yield* clientRound(warmup)
          for (let round = 0; round < rounds; round++) {
            floor.push(floorRound.run(floorPerRound))
            const [clientRate, clientCount] = yield* counted(clientRound(perRound))
            client.push(clientRate)
            clientSteps.push(clientCount / perRound)
            const [sequentialRate, sequentialCount] = yield* counted(perSecond(perRound, 1))
            sequential.push(sequentialRate)
            sequentialSteps.push(sequentialCount / perRound)
            concurrent.push(yield* perSecond(perRound, 8))
            concurrent32.push(yield* perSecond(perRound, 32))
          }
          return {
            sequential: median(sequential),
            concurrent: median(concurrent),
            concurrent32: median(concurrent32),
            floor: median(floor),
            client: median(client),
            sequentialSteps: median(sequentialSteps),
            clientSteps: median(clientSteps)
          }
        }).pipe(Effect.provide(runtime.context)),
      (floorRound) => Effect.sync(() => floorRound.close())
    ).pipe(Effect.onError(() => runtime.close))
    yield* runtime.close
    const { floor } = rates

    const targetRate = { kind: "min", limit: 5_000 } as const
    const bare = { value: floor, what: "bare insert + update pairs" }
    return [
      row({
        figure: 3,
        name: "the same two writes through @effect/sql's statements, sequential",
        value: rates.client,
        unit: "/s",
        floor: bare,
        note: "no supervision at all: the floor's two statements on the runtime's own SqlClient, each compiled, " +
          "spanned, scoped and queued at the client's semaphore, as every store statement is but a lone write (which " +
          "vigil's SQLite client runs on its connection at once when no transaction is open: the lifecycle's writes)"
      }),
      row({
        figure: 3,
        name: "no-op tool lifecycle via runTool, sequential",
        value: rates.sequential,
        unit: "/s",
        floor: bare,
        target: targetRate,
        ratioTarget: 3,
        note: "the floor: the two writes a part cannot do without, better-sqlite3 prepared statements, autocommit, WAL, " +
          "synchronous=NORMAL, foreign keys on (as the store), median of 5 rounds interleaved with the runtime's"
      }),
      row({
        figure: 3,
        name: "Effect run-loop steps of a sequential lifecycle",
        value: rates.sequentialSteps,
        unit: "steps",
        floor: { value: rates.clientSteps, what: "the same two writes through @effect/sql" },
        note: "exact, unlike the rates (steps of every fiber per call, the runtime's own included, median of 5 rounds): " +
          "what a change to the hot path saves, whatever the machine's noise. The bare pair takes none"
      }),
      row({
        figure: 3,
        name: "no-op tool lifecycle via runTool, concurrency 8",
        value: rates.concurrent,
        unit: "/s",
        floor: bare,
        target: targetRate,
        ratioTarget: 3
      }),
      row({
        figure: 3,
        name: "no-op tool lifecycle via runTool, concurrency 32",
        value: rates.concurrent32,
        unit: "/s",
        floor: bare,
        target: targetRate,
        ratioTarget: 3
      })
    ] satisfies ReadonlyArray<Row>
  }).pipe(Effect.withScheduler(scheduler))
}

/**
 * The floor's two writes (the very statements of `bareWrites`) through the runtime's own
 * SqlClient, on its connection: rounds of pairs, each returning pairs per second. What the
 * store's client costs before supervision adds anything.
 */
const clientWrites = (sessionId: SessionId) =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const writes = barePartWrites("noop")
    return (count: number) =>
      Effect.gen(function*() {
        const started = performance.now()
        for (let i = 0; i < count; i++) {
          const id = makePartId()
          const at = Date.now()
          yield* sql.unsafe(writes.insertRunning, [id, sessionId, at, at, at + 600_000])
          yield* sql.unsafe(writes.complete, [Date.now(), id])
        }
        return count / ((performance.now() - started) / 1000)
      }).pipe(Effect.orDie)
  })

/**
 * Rounds of pairs (insert a running part, every column as PartRepo writes it, then complete it),
 * each returning pairs per second, on a connection of their own.
 */
const bareWrites = (file: string) => {
  const db = openDatabase(file)
  const parts = bareParts(db, "noop")
  return {
    run: (count: number): number => {
      const started = performance.now()
      for (let i = 0; i < count; i++) parts.complete(parts.insertRunning())
      return count / ((performance.now() - started) / 1000)
    },
    close: () => db.close()
  }
}
