import { assert, describe, it } from "@effect/vitest"
import { PartId } from "@vigil/domain"
import { PartRepo } from "@vigil/store"
import type { AnyTool } from "@vigil/tools"
import { SqliteStoreLive } from "@vigil/store/sqlite"
import { Effect, Layer, Option, Schema } from "effect"
import { SessionService } from "../src/agent/SessionService.js"
import { ToolRunner } from "../src/supervision/ToolRunner.js"
import { tempDb, testRuntime } from "./support.js"

describe("group commit under the runner (SQLite file, a second connection)", () => {
  it.live("concurrent calls: each body starts only once its `running` row is committed, and each end is committed once reported", () => {
    const file = tempDb()
    const seen = new Map<PartId, string>()
    // Another connection on the file, as another process would read it: it sees committed rows only.
    let reader: PartRepo | undefined
    const peek: AnyTool = {
      name: "peek",
      description: "reads its own part from another connection",
      input: Schema.Struct({}),
      run: (_input, context) =>
        Effect.suspend(() => reader!.get(PartId.make(context.partId))).pipe(
          Effect.tap((part) => Effect.sync(() => seen.set(PartId.make(context.partId), Option.match(part, { onNone: () => "absent", onSome: (p) => p.status })))),
          Effect.as("peeked")
        )
    }
    return Effect.gen(function*() {
      reader = yield* Effect.map(Layer.build(SqliteStoreLive(file)), (context) => context.unsafeMap.get(PartRepo.key) as PartRepo)
      const runner = yield* ToolRunner
      const session = yield* (yield* SessionService).create()
      const handles = yield* Effect.forEach(
        Array.from({ length: 16 }),
        () => runner.runTool({ sessionId: session.id, tool: peek, input: {} }),
        { concurrency: "unbounded" }
      )
      const ended = yield* Effect.forEach(
        handles,
        (handle) =>
          handle.await.pipe(
            Effect.zipRight(reader!.get(handle.partId)),
            Effect.map((part) => Option.getOrThrow(part).status)
          ),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual([...seen.values()], handles.map(() => "running"), "what each body saw of its row")
      assert.deepStrictEqual(ended, handles.map(() => "completed"), "what another connection sees once the end is reported")
    }).pipe(Effect.scoped, Effect.provide(testRuntime({ file, tools: [peek] })))
  }, 60_000)
})
