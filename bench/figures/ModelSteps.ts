import { join } from "node:path"
import { parseProviders, ProvidersLive } from "../../packages/provider/src/index.js"
import { instantProvider } from "../../packages/provider/test/instantProvider.js"
import { LanguageModels, SessionService, Vigil } from "../../packages/runtime/src/index.js"
import { Context, Effect, Either, Layer } from "../effect.js"
import type { Row } from "../Report.js"
import { percentile, row, show } from "../Report.js"
import { benchSettings, buildOpen } from "../Support.js"

const steps = 1_000
const sessionsAtOnce = 8
const warmup = 100
/** Far above any step here: a step that reaches it got no answer (the provider's came at once). */
const inactivityMs = 3_000

/** `count` runs of `step`, `sessionsAtOnce` at a time: each run's time, and how many failed (and the first failure). */
const timed = <E>(count: number, step: (worker: number) => Effect.Effect<boolean, E>) =>
  Effect.gen(function*() {
    let next = 0
    let failed = 0
    const times: Array<number> = []
    yield* Effect.forEach(
      Array.from({ length: sessionsAtOnce }, (_, worker) => worker),
      (worker) =>
        Effect.gen(function*() {
          while (next < count) {
            next++
            const started = performance.now()
            const ok = yield* step(worker)
            times.push(performance.now() - started)
            if (!ok) failed++
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
    return { times, failed }
  })

/**
 * Figure 7: model steps against an OpenAI-compatible provider that answers at once (a whole
 * streamed answer, in a process of its own), eight sessions at a time: each a turn of one model
 * step through `SessionService.runTurn` (the part written running, the call under its deadline and
 * inactivity timeout, the answer streamed into the part, the part and session ended). Its floor:
 * the same provider call made bare (`generate` of the same model, on the same HTTP client, eight at
 * a time, nothing written). A stall is a step that got no answer: the provider's response lost on
 * the way (as node:http's client lost about 1 in 50 under the FairScheduler), so the step ends by
 * the inactivity timeout.
 */
export const modelStepFigures = (dir: string) =>
  Effect.gen(function*() {
    const baseURL = yield* instantProvider
    const config = Either.getOrThrow(
      parseProviders({ provider: { instant: { options: { baseURL, inactivityTimeout: inactivityMs } } }, model: "instant/ok" }, {})
    )
    const runtime = yield* buildOpen(
      Vigil.layerTest({ file: join(dir, "model-steps.db"), settings: benchSettings(), models: ProvidersLive(config) })
    )
    const supervised = yield* Effect.gen(function*() {
      const service = yield* SessionService
      const sessions = yield* Effect.forEach(Array.from({ length: sessionsAtOnce }), () => service.create({ title: "model steps" }))
      const step = (worker: number) =>
        Effect.map(service.runTurn(sessions[worker]!.id, { text: "hi" }), (result) => result._tag === "Completed" && result.text === "ok")
      yield* timed(warmup, step)
      return yield* timed(steps, step)
    }).pipe(Effect.provide(runtime.context), Effect.onError(() => runtime.close))
    yield* runtime.close

    const model = Context.get(yield* Layer.build(ProvidersLive(config)), LanguageModels).models.get("instant/ok")!
    const call = model.generate({ messages: [{ role: "user", text: "hi" }], tools: [], onText: () => Effect.void }).pipe(
      Effect.map((response) => response.text === "ok"),
      Effect.orElseSucceed(() => false)
    )
    yield* timed(warmup, () => call)
    const bare = yield* timed(steps, () => call)

    const p = (times: ReadonlyArray<number>, at: number) => percentile(times, at)
    const note = `${show(steps)} steps after ${warmup} of warm-up, ${sessionsAtOnce} sessions at a time; inactivity timeout ${
      show(inactivityMs)
    } ms; the floor: the same call bare (${bare.failed} of ${show(steps)} failed)`
    return [
      row({
        figure: 7,
        name: "model steps against an instant provider that got no answer (stalls)",
        value: supervised.failed,
        unit: `of ${show(steps)}`,
        floor: { value: bare.failed, what: "of the same calls made bare" },
        target: { kind: "max", limit: 0, text: "0" },
        note
      }),
      row({
        figure: 7,
        name: "model step against an instant provider, p50",
        value: p(supervised.times, 50),
        unit: "ms",
        floor: { value: p(bare.times, 50), what: "the same call bare" }
      }),
      row({
        figure: 7,
        name: "model step against an instant provider, p99",
        value: p(supervised.times, 99),
        unit: "ms",
        floor: { value: p(bare.times, 99), what: "the same call bare" }
      })
    ] satisfies ReadonlyArray<Row>
  }).pipe(Effect.scoped)
