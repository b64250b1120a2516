import { HttpClient, HttpClientResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { PartRepo } from "@vigil/store"
import { SqliteLive } from "@vigil/store/sqlite"
import type { ToolDefinition } from "@vigil/tools"
import { ToolError } from "@vigil/tools"
import { Cause, Effect, Exit, Layer, Option, Schema } from "effect"
import { mkdirSync, mkdtempSync, readFileSync, realpathSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { SessionService } from "../src/agent/SessionService.js"
import { RecoveryComplete } from "../src/recovery/StartupRecovery.js"
import { Tools } from "../src/agent/Tools.js"
import * as Vigil from "../src/Vigil.js"
import { tempDb } from "./support.js"

/** A tool with a requirement: it asks the app's HttpClient, which the test fakes. */
const fetchTool: ToolDefinition<{ readonly url: string }, HttpClient.HttpClient> = {
  name: "fetch",
  description: "GETs a URL",
  input: Schema.Struct({ url: Schema.String }),
  run: (input) =>
    HttpClient.get(input.url).pipe(
      Effect.flatMap((response) => response.text),
      Effect.mapError((error) => new ToolError({ message: error.message }))
    )
}

/** The app's HttpClient: answers every request with its URL, without a network. */
const FakeHttp = Layer.succeed(
  HttpClient.HttpClient,
  HttpClient.make((request) => Effect.succeed(HttpClientResponse.fromWeb(request, new Response(`fetched ${request.url}`))))
)

const cwdTool: ToolDefinition<unknown> = {
  name: "cwd",
  description: "names its root",
  input: Schema.Unknown,
  run: (_input, context) => Effect.succeed(context.root)
}

/** Runs one tool call to its end and gives the part's status and output. */
const runOne = (tool: string, input: unknown) =>
  Effect.gen(function*() {
    const sessions = yield* SessionService
    const session = yield* sessions.create({ title: tool })
    const run = yield* sessions.runTool(session.id, { tool, input })
    yield* run.done
    const part = Option.getOrThrow(yield* Effect.flatMap(PartRepo, (parts) => parts.get(run.partId)))
    return { status: part.status, output: part.output }
  })

describe("Vigil composition", () => {
  it.scoped("a tool with a requirement runs in the context the app provided when it was contributed", () =>
    Effect.gen(function*() {
      const result = yield* runOne("fetch", { url: "http://example.test/x" })
      assert.deepStrictEqual(result, { status: "completed", output: "fetched http://example.test/x" })
    }).pipe(
      Effect.provide(Vigil.layerTest({ tools: Layer.mergeAll(Tools.builtin(), Tools.add(fetchTool)) }).pipe(Layer.provide(FakeHttp)))
    ))

  it.scoped("tools contributed from several layers are all offered, with task and ask", () =>
    Effect.gen(function*() {
      const known = yield* Effect.flip(Effect.flatMap(SessionService, (sessions) =>
        Effect.flatMap(sessions.create({ title: "x" }), (session) => sessions.runTool(session.id, { tool: "nope", input: {} }))))
      assert.strictEqual(known._tag, "UnknownTool")
      if (known._tag !== "UnknownTool") return
      assert.deepStrictEqual([...known.known].sort(), ["ask", "bash", "cwd", "fetch", "read", "task"])
    }).pipe(
      Effect.provide(
        Vigil.layerTest({
          // `write` left out: an app picks the builtins it offers.
          tools: Layer.mergeAll(Layer.mergeAll(Tools.bash(), Tools.read()), Tools.add(fetchTool), Tools.add(cwdTool))
        }).pipe(Layer.provide(FakeHttp))
      )
    ))

  it.effect("the same tool name contributed twice stops the build", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(Vigil.layerTest({ tools: Layer.merge(Tools.bash(), Tools.bash()) }))))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.include(Cause.pretty(exit.cause), `the tool "bash" is contributed twice`)
    }))

  it.scoped("the root option is where tools work; a tool's own root wins over it", () => {
    const root = realpathSync(mkdtempSync(join(tmpdir(), "vigil-root-")))
    const own = join(root, "own")
    mkdirSync(own)
    return Effect.gen(function*() {
      assert.strictEqual((yield* runOne("cwd", {})).output, root)
      assert.strictEqual((yield* runOne("bash", { command: "pwd" })).output?.trim(), root)
      assert.strictEqual((yield* runOne("write", { path: "note.txt", content: "hi" })).status, "completed")
      assert.strictEqual(readFileSync(join(root, "note.txt"), "utf8"), "hi")
      assert.strictEqual((yield* runOne("read", { path: "../etc/passwd" })).status, "error")
      assert.strictEqual((yield* runOne("own", {})).output, own)
    }).pipe(
      Effect.provide(Vigil.layerTest({
        root,
        tools: Layer.mergeAll(Tools.builtin(), Tools.add(cwdTool), Tools.add({ ...cwdTool, name: "own" }, { root: own }))
      }))
    )
  })

  it.scoped("Vigil.layer runs on the app's own SqlClient, and startup recovery has run once it is built", () =>
    Effect.gen(function*() {
      const { report } = yield* RecoveryComplete
      assert.strictEqual(report.orphanedParts, 0)
      assert.strictEqual((yield* runOne("bash", { command: "echo hi" })).output?.trim(), "hi")
      const sql = yield* SqlClient.SqlClient
      const tables = yield* sql<{ readonly name: string }>`SELECT name FROM sqlite_master WHERE type = 'table'`
      assert.isTrue(tables.some((table) => table.name.endsWith("parts")))
    }).pipe(
      Effect.provide(
        Vigil.layer({ settings: { watchdogInterval: Option.none() } }).pipe(
          // An SqlClient built outside the composition (examples/embed builds its own with SqliteClient.layer).
          Layer.provideMerge(SqliteLive(tempDb()))
        )
      )
    ))
})
