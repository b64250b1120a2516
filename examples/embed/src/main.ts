/**
 * A small agent server of its own that embeds vigil's supervision layer: its own HTTP routes, its
 * own SqlClient and `sessions` table, a tool of its own that needs the app's HttpClient, and a
 * model of its own. Usage (after `npm run build`):
 *
 *   node dist/main.js serve <db> [port]     the server (GET /hello, POST /sessions, GET /sessions, GET /sessions/:id/parts)
 *   node dist/main.js check <db>            self-check: a tool past its deadline ends ToolTimeout, the model and tool work
 *   node dist/main.js run-tool <db>         starts `sleep 300` in a supervised part, prints one JSON line, runs until killed
 *   node dist/main.js parts <db> <session>  a restart: startup recovery runs, then the session's parts are printed as JSON
 */
import {
  FetchHttpClient,
  HttpClient,
  HttpClientRequest,
  HttpRouter,
  HttpServer,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { SessionId } from "@vigil/domain"
import type { LanguageModelShape } from "@vigil/runtime"
import { LanguageModels, RecoveryComplete, SessionService, Tools, Vigil } from "@vigil/runtime"
import { SqlitePragmas } from "@vigil/store"
import type { ToolDefinition } from "@vigil/tools"
import { ToolError } from "@vigil/tools"
import { Duration, Effect, Layer, Option, Schema } from "effect"
import { mkdirSync } from "node:fs"
import { createServer } from "node:http"
import { dirname, join, resolve } from "node:path"

/** The app's own table of sessions, beside vigil's `vigil_sessions` (vigil's tables carry its prefix). */
const appTable = "sessions"

// --- A tool with a requirement: it reads a page through the app's HttpClient. -------------------
const FetchInput = Schema.Struct({ url: Schema.String })
const fetchPage: ToolDefinition<typeof FetchInput.Type, HttpClient.HttpClient> = {
  name: "fetch_page",
  description: "GET a URL and return its body",
  input: FetchInput,
  run: (input) =>
    HttpClient.get(input.url).pipe(
      Effect.flatMap((response) => response.text),
      Effect.mapError((error) => new ToolError({ message: `fetch_page: ${error.message}` }))
    )
}

/** A tool that never finishes: only its deadline (`tool_timeout`) ends it. */
const stall: ToolDefinition<unknown> = {
  name: "stall",
  description: "waits forever",
  input: Schema.Unknown,
  run: () => Effect.never
}

// --- A model of its own: the prompt is a URL; it fetches it, then says what the page said. -----
const relay: LanguageModelShape = {
  name: "relay",
  generate: (request) =>
    Effect.sync(() => {
      const last = request.messages[request.messages.length - 1]
      if (last?.role === "tool") return { text: `the page says: ${last.output}`, toolCalls: [] }
      if (last?.role === "user") {
        return { text: "", toolCalls: [{ id: "call-1", name: "fetch_page", input: { url: last.text } }] }
      }
      return { text: "nothing to do", toolCalls: [] }
    })
}
const Models = Layer.succeed(LanguageModels, { defaultModel: relay.name, models: new Map([[relay.name, relay]]) })

// --- The app's database: its own client (plain: no name transforms), its own table. -------------
// vigil's pragmas (WAL, busy_timeout, foreign keys) applied to the app's connection: a crash loses
// nothing acknowledged and two writers wait on each other instead of failing at once.
const AppSql = (file: string) =>
  SqlitePragmas.layer.pipe(
    Layer.provideMerge(SqliteClient.layer({ filename: file })),
    Layer.provide(Layer.effectDiscard(Effect.sync(() => mkdirSync(dirname(file), { recursive: true }))))
  )

const AppTables = Layer.effectDiscard(
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE IF NOT EXISTS ${sql(appTable)} (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      title TEXT NOT NULL,
      vigil_session_id TEXT NOT NULL
    )`
  }).pipe(Effect.orDie)
)

// --- The HTTP routes. --------------------------------------------------------------------------
const NewSession = Schema.Struct({ title: Schema.String, url: Schema.String })

const routes = HttpRouter.empty.pipe(
  HttpRouter.get("/hello", HttpServerResponse.text("hello from the app")),
  HttpRouter.post(
    "/sessions",
    Effect.gen(function*() {
      const body = yield* HttpServerRequest.schemaBodyJson(NewSession)
      const sessions = yield* SessionService
      const sql = yield* SqlClient.SqlClient
      const session = yield* sessions.create({ title: body.title })
      yield* sql`INSERT INTO ${sql(appTable)} ${sql.insert({ title: body.title, vigil_session_id: session.id })}`
      // The turn runs under vigil (deadlines, recovery); the route answers at once.
      yield* sessions.prompt(session.id, { text: body.url })
      return yield* HttpServerResponse.json({ vigilSessionId: session.id }, { status: 202 })
    })
  ),
  HttpRouter.get(
    "/sessions",
    Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT * FROM ${sql(appTable)} ORDER BY id`).pipe(
      Effect.flatMap((rows) => HttpServerResponse.json(rows))
    )
  ),
  HttpRouter.get(
    "/sessions/:id/parts",
    Effect.gen(function*() {
      const { id } = yield* HttpRouter.schemaPathParams(Schema.Struct({ id: Schema.String }))
      const sessions = yield* SessionService
      const parts = yield* sessions.parts(SessionId.make(id))
      return yield* HttpServerResponse.json(parts.map(summary))
    })
  ),
  // Bad bodies, unknown sessions: the app answers them its own way.
  Effect.catchAll((error) => HttpServerResponse.json({ error: error._tag }, { status: 400 }))
)

const summary = (part: { readonly id: string; readonly tool: string; readonly status: string; readonly error: { readonly _tag: string } | null }) => ({
  id: part.id,
  tool: part.tool,
  status: part.status,
  error: part.error?._tag ?? null
})

// --- The composition. --------------------------------------------------------------------------
const App = (options: { readonly db: string; readonly port: number; readonly toolTimeout: Duration.Duration }) => {
  const root = resolve(dirname(options.db), "work")
  mkdirSync(root, { recursive: true })
  const Supervision = Vigil.layer({
    settings: { toolTimeout: Option.some(options.toolTimeout), watchdogInterval: Option.some(Duration.seconds(5)) },
    // The builtins the app picks, and its own tools; `fetch_page` takes the app's HttpClient.
    tools: Layer.mergeAll(Tools.bash(), Tools.read(), Tools.add(fetchPage), Tools.add(stall)),
    models: Models,
    root,
    outputDir: join(dirname(options.db), "output")
  })
  return HttpServer.serve(routes).pipe(
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: options.port, host: "127.0.0.1" })),
    Layer.provideMerge(Supervision),
    Layer.provideMerge(FetchHttpClient.layer),
    // The app's own table first: vigil's migrations then run beside it, on the same client.
    Layer.provideMerge(AppTables),
    Layer.provideMerge(AppSql(options.db))
  )
}

const baseUrl = Effect.map(HttpServer.HttpServer, (server) =>
  server.address._tag === "TcpAddress" ? `http://127.0.0.1:${server.address.port}` : "")

const print = (value: unknown) => Effect.sync(() => process.stdout.write(`${JSON.stringify(value)}\n`))

/** Proves the deadline, the model and the tool with a requirement, through the app's own routes. */
const check = Effect.gen(function*() {
  const sessions = yield* SessionService
  const client = yield* HttpClient.HttpClient
  const url = yield* baseUrl
  const failures: Array<string> = []

  const timed = yield* sessions.create({ title: "deadline" })
  const run = yield* sessions.runTool(timed.id, { tool: "stall", input: {} })
  yield* run.done
  const stalled = (yield* sessions.parts(timed.id)).find((part) => part.id === run.partId)
  if (stalled?.error?._tag !== "ToolTimeout") failures.push(`stall ended ${stalled?.error?._tag ?? stalled?.status}, not ToolTimeout`)

  const created = yield* HttpClientRequest.post(`${url}/sessions`).pipe(
    HttpClientRequest.bodyUnsafeJson({ title: "relay", url: `${url}/hello` }),
    client.execute,
    Effect.flatMap((response) => response.json),
    Effect.map((body) => SessionId.make((body as { readonly vigilSessionId: string }).vigilSessionId))
  )
  let parts: ReadonlyArray<ReturnType<typeof summary>> = []
  for (let i = 0; i < 200; i++) {
    parts = (yield* client.get(`${url}/sessions/${created}/parts`).pipe(Effect.flatMap((r) => r.json))) as typeof parts
    if ((yield* sessions.get(created)).status === "idle") break
    yield* Effect.sleep(Duration.millis(50))
  }
  const fetched = parts.find((part) => part.tool === "fetch_page")
  if (fetched?.status !== "completed") failures.push(`fetch_page ended ${fetched?.status}`)
  const text = (yield* sessions.parts(created)).map((part) => part.output ?? "").join("\n")
  if (!text.includes("the page says: hello from the app")) failures.push("the relay model did not answer with the page")
  const rows = (yield* client.get(`${url}/sessions`).pipe(Effect.flatMap((r) => r.json))) as ReadonlyArray<unknown>
  if (rows.length < 1) failures.push(`the app's ${appTable} table has no row`)

  yield* print({ ok: failures.length === 0, failures, deadline: stalled?.error?._tag ?? null, appRows: rows.length })
  if (failures.length > 0) process.exitCode = 1
})

/** Starts a shell that outlives nothing: a SIGKILL of this process leaves its part `running` in the file. */
const runTool = Effect.gen(function*() {
  const sessions = yield* SessionService
  const session = yield* sessions.create({ title: "running at the crash" })
  const run = yield* sessions.runTool(session.id, { tool: "bash", input: { command: "sleep 300" } })
  let pid: number | null = null
  while (pid === null) {
    yield* Effect.sleep(Duration.millis(20))
    pid = (yield* sessions.parts(session.id)).find((part) => part.id === run.partId)?.pid ?? null
  }
  yield* print({ pid: process.pid, sessionId: session.id, partId: run.partId, shellPid: pid })
  return yield* Effect.never
})

/** After a restart: what startup recovery did, and the session's parts. */
const partsOf = (sessionId: string) =>
  Effect.gen(function*() {
    const { report } = yield* RecoveryComplete
    const sessions = yield* SessionService
    const parts = yield* sessions.parts(SessionId.make(sessionId))
    yield* print({ orphanedParts: report.orphanedParts, parts: parts.map(summary) })
  })

const [command, db, arg] = process.argv.slice(2)
if (db === undefined) {
  process.stderr.write("usage: main.js <serve|check|run-tool|parts> <db> [port|session]\n")
  process.exit(2)
}
const long = Duration.minutes(10)
const program = command === "serve"
  ? Layer.launch(App({ db, port: Number(arg ?? 8080), toolTimeout: long }))
  : command === "check"
  ? check.pipe(Effect.provide(App({ db, port: 0, toolTimeout: Duration.seconds(1) })))
  : command === "run-tool"
  ? runTool.pipe(Effect.provide(App({ db, port: 0, toolTimeout: long })))
  : command === "parts" && arg !== undefined
  ? partsOf(arg).pipe(Effect.provide(App({ db, port: 0, toolTimeout: long })))
  : Effect.dieMessage(`unknown command ${command}`)

Effect.runPromise(Effect.scoped(program)).catch((error) => {
  console.error(error)
  process.exit(1)
})
