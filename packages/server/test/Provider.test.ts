import { HttpServer } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { parseProviders } from "@vigil/provider"
import { Context, Effect, Either, Layer, Logger, LogLevel, Option } from "effect"
import { existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, afterEach } from "vitest"
import type { Recorded } from "../../provider/test/fakeOpenAi.js"
import { chunk, failing, fakeServer, streamed, textDelta, toolDelta } from "../../provider/test/fakeOpenAi.js"
import { urlOf } from "../src/Announce.js"
import { ServerLive } from "../src/Server.js"
import { eventually, killChildren, removeDirs, request, serveProcess, tempDir, testSettings, vigilRun } from "./support.js"

const dirs: Array<string> = []
afterEach(() => killChildren())
afterAll(() => removeDirs(dirs))

const testKey = "sk-server-test-5ecret-0123456789abcdef"

/** The config file an opencode user writes for an OpenAI-compatible server at `baseURL`. */
const configFile = (baseURL: string, options: Record<string, unknown> = {}) => ({
  provider: { openai: { options: { baseURL, apiKey: "{env:OPENAI_API_KEY}", ...options } } },
  model: "openai/fake"
})

/** The real server layer, in-process on a loopback port, its providers read from `configFile`. */
const inProcessServer = (baseURL: string, options: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const providers = Either.getOrThrowWith(
      parseProviders(configFile(baseURL, options), { OPENAI_API_KEY: testKey }),
      (error) => new Error(error.message)
    )
    const context = yield* Layer.build(
      ServerLive({
        port: 0,
        host: "127.0.0.1",
        db: join(tempDir(dirs), "vigil.db"),
        settings: Effect.succeed(testSettings),
        providers: Effect.succeed(providers),
        password: Option.none(),
        announce: false
      }).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Error)))
    )
    return urlOf(Context.get(context, HttpServer.HttpServer).address)
  })

const call = (url: string, options: Parameters<typeof request>[1] = {}) => Effect.promise(() => request(url, options))

const newSession = (url: string) =>
  Effect.map(call(`${url}/session`, { body: {} }), (response) => {
    assert.strictEqual(response.status, 201, JSON.stringify(response.body))
    return response.body.id as string
  })

const atRest = (url: string, id: string) =>
  Effect.promise(() =>
    eventually(async () => {
      const session = (await request(`${url}/session/${id}`)).body
      return session.status === "busy" || session.status === "waiting" ? undefined : session
    }, 10_000, `session ${id} to be at rest`)
  )

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const partsOf = (url: string, id: string): Effect.Effect<Array<any>> =>
  Effect.map(call(`${url}/session/${id}/part?limit=1000`), (response) => response.body.items)

/** A streamed answer calling `bash` with `command`, then a final text. */
const bashThenText = (command: string, text: string) => [
  streamed(
    textDelta("Running it."),
    toolDelta(0, { id: "call_sh1", name: "bash", arguments: JSON.stringify({ command }).slice(0, 10) }),
    toolDelta(0, { arguments: JSON.stringify({ command }).slice(10) }),
    chunk({}, "tool_calls")
  ),
  streamed(textDelta(text), chunk({}, "stop"))
]

const toolNames = (recorded: Recorded) => (recorded.body.tools ?? []).map((tool) => tool.function.name).sort()

describe("the server on an OpenAI-compatible provider", () => {
  it.scopedLive("POST /session/:id/prompt with model openai/<name> runs the streamed tool call, and the loop goes on", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer(bashThenText("echo provider-ok", "It printed provider-ok."))
      const url = yield* inProcessServer(fake.baseURL)
      const id = yield* newSession(url)
      const accepted = yield* call(`${url}/session/${id}/prompt`, { body: { text: "run echo", model: "openai/fake" } })
      assert.strictEqual(accepted.status, 202, JSON.stringify(accepted.body))
      const session = yield* atRest(url, id)
      assert.strictEqual(session.status, "idle", JSON.stringify(session))

      const parts = yield* partsOf(url, id)
      assert.deepStrictEqual(
        parts.map((part) => [part.kind, part.tool, part.status]),
        [
          ["prompt", "", "completed"],
          ["model", "openai/fake", "completed"],
          ["text", "", "completed"],
          ["tool", "bash", "completed"],
          ["model", "openai/fake", "completed"],
          ["text", "", "completed"]
        ]
      )
      const bash = parts.find((part) => part.kind === "tool")
      assert.strictEqual(bash.callId, "call_sh1")
      assert.deepStrictEqual(bash.input, { command: "echo provider-ok" })
      assert.include(bash.output, "provider-ok")
      assert.strictEqual(parts[parts.length - 1].output, "It printed provider-ok.")

      // The model was offered the registry's tools, and saw the real shell's output on the next step.
      assert.strictEqual(fake.requests.length, 2)
      assert.deepStrictEqual(toolNames(fake.requests[0]!), ["ask", "bash", "read", "task", "write"])
      assert.strictEqual(fake.requests[0]!.headers.authorization, `Bearer ${testKey}`)
      const toolMessage = fake.requests[1]!.body.messages?.find((message) => message["role"] === "tool")
      assert.strictEqual(toolMessage?.["tool_call_id"], "call_sh1")
      assert.include(String(toolMessage?.["content"]), "provider-ok")
    }))

  it.scopedLive("a prompt without a model runs on the config's model; an unknown model is a 400 naming the known ones", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([streamed(textDelta("hello from fake"), chunk({}, "stop"))])
      const url = yield* inProcessServer(fake.baseURL)
      const id = yield* newSession(url)

      const unknown = yield* call(`${url}/session/${id}/prompt`, { body: { text: "hi", model: "anthropic/claude" } })
      assert.strictEqual(unknown.status, 400, JSON.stringify(unknown.body))
      assert.strictEqual(unknown.body._tag, "UnknownModel")
      assert.strictEqual(unknown.body.model, "anthropic/claude")
      assert.deepStrictEqual(unknown.body.known, ["script", "openai/*"])
      // Refused before the session was touched: nothing was sent, no part written, still idle.
      assert.strictEqual(fake.requests.length, 0)
      assert.deepStrictEqual(yield* partsOf(url, id), [])
      assert.strictEqual((yield* call(`${url}/session/${id}`)).body.status, "idle")

      const accepted = yield* call(`${url}/session/${id}/prompt`, { body: { text: "hi" } })
      assert.strictEqual(accepted.status, 202, JSON.stringify(accepted.body))
      assert.strictEqual((yield* atRest(url, id)).status, "idle")
      assert.strictEqual(fake.requests.length, 1)
      assert.strictEqual(fake.requests[0]!.body.model, "fake")
      const parts = yield* partsOf(url, id)
      assert.strictEqual(parts.find((part) => part.kind === "model").tool, "openai/fake")

      // The offline model stays there beside the provider.
      const script = yield* call(`${url}/session/${id}/prompt`, { body: { text: JSON.stringify([{ text: "scripted" }]), model: "script" } })
      assert.strictEqual(script.status, 202, JSON.stringify(script.body))
      assert.strictEqual((yield* atRest(url, id)).status, "idle")
      assert.strictEqual(fake.requests.length, 1)
      assert.strictEqual((yield* partsOf(url, id)).at(-1).output, "scripted")
    }))

  it.scopedLive("a provider error ends the turn with the provider's words on the part, the key redacted", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer([
        failing(429, JSON.stringify({ error: { message: "Rate limit reached", code: "rate_limit_exceeded" } })),
        failing(401, JSON.stringify({ error: { message: `Incorrect API key provided: ${testKey}` } }))
      ])
      // Not retried here: the retries have tests of their own (provider/test/Retries.test.ts).
      const url = yield* inProcessServer(fake.baseURL, { maxRetries: 0 })
      const id = yield* newSession(url)
      for (const [status, words] of [[429, "Rate limit reached"], [401, "Incorrect API key provided: <redacted>"]] as const) {
        assert.strictEqual((yield* call(`${url}/session/${id}/prompt`, { body: { text: "hi" } })).status, 202)
        const session = yield* atRest(url, id)
        assert.strictEqual(session.status, "error")
        const expected = `model openai/fake: provider openai: HTTP ${status}: ${words}`
        assert.deepStrictEqual(session.cancelReason, { _tag: "ToolFailed", message: expected })
        const model = (yield* partsOf(url, id)).filter((part) => part.kind === "model").at(-1)
        assert.strictEqual(model.status, "error")
        assert.deepStrictEqual(model.error, { _tag: "ToolFailed", message: expected })
      }
      assert.notInclude(JSON.stringify(yield* partsOf(url, id)), testKey)
    }))
})

describe("vigil serve with a provider in vigil.json, as a process", () => {
  it("reads provider and model from the config file and {env:OPENAI_API_KEY}; the key is never printed", async () => {
    const dir = tempDir(dirs)
    const db = join(dir, "vigil.db")
    await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const fake = yield* fakeServer([
        failing(401, JSON.stringify({ error: { message: `Incorrect API key provided: ${testKey}` } })),
        ...bashThenText("echo from-the-process", "done")
      ])
      writeFileSync(join(dir, "vigil.json"), JSON.stringify(configFile(fake.baseURL)))
      const server = yield* Effect.promise(() => serveProcess(["--db", db], { cwd: dir, env: { OPENAI_API_KEY: testKey } }))
      const id = yield* newSession(server.url)

      assert.strictEqual((yield* call(`${server.url}/session/${id}/prompt`, { body: { text: "first" } })).status, 202)
      assert.strictEqual((yield* atRest(server.url, id)).status, "error")
      assert.strictEqual((yield* call(`${server.url}/session/${id}/prompt`, { body: { text: "second" } })).status, 202)
      assert.strictEqual((yield* atRest(server.url, id)).status, "idle")

      const parts = yield* partsOf(server.url, id)
      assert.include(parts.find((part) => part.tool === "bash").output, "from-the-process")
      assert.strictEqual(fake.requests.length, 3)
      for (const recorded of fake.requests) assert.strictEqual(recorded.headers.authorization, `Bearer ${testKey}`)
      // The failed first turn's prompt is in the history the model sees next; the key is nowhere in it.
      const history = JSON.stringify(fake.requests[1]!.body.messages)
      assert.include(history, "first")
      assert.notInclude(history, testKey)

      server.child.kill("SIGTERM")
      const exit = yield* Effect.promise(() => server.exited)
      assert.strictEqual(exit.code, 0, server.stderr())
      assert.notInclude(server.stdout(), testKey)
      assert.notInclude(server.stderr(), testKey)
      assert.notInclude(JSON.stringify(parts), testKey)
    })))
  })

  it("a bad provider config stops start-up with one line naming the key, never the API key, and writes nothing", async () => {
    const dir = tempDir(dirs)
    const db = join(dir, "data", "vigil.db")
    const config = join(dir, "vigil.json")
    const startWith = async (file: unknown, env: Record<string, string | undefined> = {}) => {
      writeFileSync(config, JSON.stringify(file))
      const result = await vigilRun(["serve", "--port", "0", "--db", db, "--config", config], { cwd: dir, env })
      assert.notStrictEqual(result.code, 0)
      const lines = result.stderr.split("\n").filter((line) => line.trim() !== "")
      assert.strictEqual(lines.length, 1, result.stderr)
      assert.notInclude(result.stdout, "listening")
      assert.notInclude(result.stdout + result.stderr, testKey)
      assert.isFalse(existsSync(join(dir, "data")), "no database, not even its folder")
      return lines[0]!
    }

    const notUrl = await startWith({ provider: { openai: { options: { baseURL: "ftp://127.0.0.1/v1", apiKey: testKey } } } })
    assert.strictEqual(notUrl, `invalid config: provider.openai.options.baseURL = "ftp://127.0.0.1/v1": must be an http:// or https:// URL`)

    // An unset {env:NAME} is "" with a warning, as opencode reads it (the opencode.json test below);
    // a {file:path} that cannot be read is an error.
    const unreadable = await startWith({ provider: { openai: { options: { baseURL: "http://127.0.0.1:1/v1", apiKey: "{file:no-such-key}" } } } })
    assert.strictEqual(unreadable, `invalid config: provider.openai.options.apiKey = "<redacted>": {file:no-such-key} cannot be read: ENOENT`)

    const keyAsNumber = await startWith({ provider: { openai: { options: { baseURL: "http://127.0.0.1:1/v1", apiKey: 123456789 } } } })
    assert.include(keyAsNumber, "provider.openai.options.apiKey")
    assert.notInclude(keyAsNumber, "123456789")

    const unknownProvider = await startWith({
      provider: { openai: { options: { baseURL: "http://127.0.0.1:1/v1" } } },
      model: "groq/llama"
    })
    assert.include(unknownProvider, `invalid config: model = "groq/llama"`)
    assert.include(unknownProvider, "configured: openai")
  })
})

describe("vigil serve on an opencode.json as users write it, as a process", () => {
  it("JSONC, a model map, headers, timeouts, experimental and other opencode keys: it starts, says which file it read, and runs a tool-calling turn", async () => {
    const dir = tempDir(dirs)
    await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const fake = yield* fakeServer(bashThenText("echo from-opencode-json", "all done"))
      const config = `{
  "$schema": "https://opencode.ai/config.json",
  // opencode's own settings: accepted, noted, not used
  "theme": "opencode",
  "agent": { "build": { "model": "local/coder" } },
  "mcp": { "files": { "type": "local", "command": ["mcp-files"] } },
  "permission": { "bash": "ask", "edit": "allow" },
  "provider": {
    "local": {
      "npm": "@ai-sdk/openai-compatible",
      "name": "llama.cpp",
      "options": {
        "baseURL": "${fake.baseURL}",
        "apiKey": "{env:LOCAL_API_KEY}",
        "headers": { "X-Title": "vigil", "X-Team": "{env:TEAM_NOT_SET}" },
        "timeout": 120000,
        "chunkTimeout": 30000, /* the stream inactivity timeout */
      },
      "models": {
        "coder": { "id": "qwen2.5-coder-7b-instruct-q4_k_m", "name": "Qwen coder" },
      },
    },
  },
  "model": "local/coder",
  "experimental": {
    "batch_tool": true,
    "tool_timeout": "2 minutes",
    "idle_timeout": "10m",
  },
}
`
      writeFileSync(join(dir, "opencode.json"), config)
      const server = yield* Effect.promise(() =>
        serveProcess(["--db", join(dir, "vigil.db")], { cwd: dir, env: { LOCAL_API_KEY: testKey, TEAM_NOT_SET: undefined } })
      )
      const id = yield* newSession(server.url)
      assert.strictEqual((yield* call(`${server.url}/session/${id}/prompt`, { body: { text: "run it" } })).status, 202)
      assert.strictEqual((yield* atRest(server.url, id)).status, "idle")
      const parts = yield* partsOf(server.url, id)
      assert.include(parts.find((part) => part.tool === "bash").output, "from-opencode-json")
      assert.strictEqual(parts.filter((part) => part.kind === "model")[0].tool, "local/coder")
      assert.strictEqual(parts.at(-1).output, "all done")

      assert.strictEqual(fake.requests.length, 2)
      for (const recorded of fake.requests) {
        assert.strictEqual(recorded.body.model, "qwen2.5-coder-7b-instruct-q4_k_m")
        assert.strictEqual(recorded.headers.authorization, `Bearer ${testKey}`)
        assert.strictEqual(recorded.headers["x-title"], "vigil")
        assert.strictEqual(recorded.headers["x-team"], "")
      }
      // Logs go to stderr (stdout carries only what a command prints).
      const out = server.stderr()
      assert.include(out, "config: opencode.json")
      assert.include(out, "experimental.batch_tool")
      assert.include(out, "theme, agent, mcp, permission: opencode settings vigil does not use; ignored")
      assert.include(out, "the environment variable TEAM_NOT_SET is not set")
      server.child.kill("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => server.exited)).code, 0, server.stderr())
      assert.notInclude(server.stdout() + server.stderr(), testKey)
    })))
  }, 60_000)
})
