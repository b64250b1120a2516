import { assert, describe, it } from "@effect/vitest"
import { fairScheduler, SessionService } from "@vigil/runtime"
import { Effect, FiberRef, Layer, Logger, LogLevel } from "effect"
import { instantProvider } from "./instantProvider.js"
import { providerConfig, providerRuntime } from "./support.js"

const steps = 1_000
const sessionsAtOnce = 8

/**
 * Model steps against a provider in another process that answers at once, `sessionsAtOnce` turns
 * at a time, on the scheduler the server runs on (the FairScheduler, which lets node's I/O run
 * between two fiber tasks). A response that reaches node before the client listens for it is
 * dropped by node, and the step waits until the inactivity timeout: a "stall".
 */
const run = Effect.gen(function*() {
  assert.strictEqual(yield* FiberRef.get(FiberRef.currentScheduler), fairScheduler)
  const baseURL = yield* instantProvider
  // Far above any real silence here (the provider answers at once): a step that reaches it lost its response.
  const config = providerConfig(baseURL, { inactivityTimeout: 5_000 })
  const context = yield* Layer.build(providerRuntime({ config }).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.None))))
  const sessions = yield* Effect.provide(SessionService, context)
  let started = 0
  const failures: Array<string> = []
  const times: Array<number> = []
  yield* Effect.forEach(
    Array.from({ length: sessionsAtOnce }),
    () =>
      Effect.gen(function*() {
        const session = yield* sessions.create({ title: "instant provider" })
        while (started < steps) {
          started++
          const at = performance.now()
          const result = yield* sessions.runTurn(session.id, { text: "hi", model: "openai/instant" })
          times.push(performance.now() - at)
          if (result._tag !== "Completed") failures.push(JSON.stringify(result))
          else if (result.text !== "ok") failures.push(`answer ${JSON.stringify(result.text)}`)
        }
      }),
    { concurrency: "unbounded", discard: true }
  )
  return { failures, times }
})

describe("no lost response", () => {
  it.scopedLive(`${steps} model steps against a provider that answers at once, ${sessionsAtOnce} at a time: none stalls`, () =>
    Effect.gen(function*() {
      const { failures, times } = yield* run
      const sorted = [...times].sort((a, b) => a - b)
      const at = (p: number) => Math.round(sorted[Math.ceil((p / 100) * sorted.length) - 1]!)
      console.log(`${times.length} steps, ${failures.length} failed; p50 ${at(50)} ms, p99 ${at(99)} ms, max ${at(100)} ms`)
      assert.strictEqual(times.length, steps)
      assert.deepStrictEqual(failures.slice(0, 3), [], `${failures.length} of ${steps} steps failed`)
    }).pipe(Effect.withScheduler(fairScheduler)), 120_000)
})
