import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Option } from "effect"
import { execFileSync } from "node:child_process"
import { existsSync, writeFileSync } from "node:fs"
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, afterEach } from "vitest"
import { configNotes, providersOf, readConfigFile, settingsOf, stripJsonc } from "../src/ConfigFile.js"
import { configCandidates } from "../src/Defaults.js"
import { eventually, killChildren, removeDirs, request, serveProcess, tempDir, vigilRun } from "./support.js"

const dirs: Array<string> = []
afterEach(() => killChildren())
afterAll(() => removeDirs(dirs))

/** A named pipe: what it holds can be read once, as a `--config <(…)` a shell gives. */
const fifo = (dir: string): string => {
  const path = join(dir, "config.fifo")
  execFileSync("mkfifo", [path])
  return path
}

describe("the config file: one reader", () => {
  it.effect("a named file is read; a missing default file means the defaults; a missing named one, or one not JSON, fails naming it", () =>
    Effect.gen(function*() {
      const dir = tempDir(dirs)
      const path = join(dir, "vigil.json")
      writeFileSync(path, JSON.stringify({ experimental: { tool_timeout: "5m" }, model: "script" }))
      const file = yield* readConfigFile(Option.some(path))
      assert.deepStrictEqual(file, {
        path,
        named: true,
        found: true,
        json: { experimental: { tool_timeout: "5m" }, model: "script" },
        readAtNextStart: [path]
      })
      assert.deepStrictEqual((yield* settingsOf(file)).toolTimeout, Option.some(Duration.minutes(5)))
      assert.strictEqual((yield* providersOf(file)).defaultModel, "script")

      const cwd = process.cwd()
      const inFolder = (folder: string) =>
        Effect.acquireUseRelease(
          Effect.sync(() => process.chdir(folder)),
          () => readConfigFile(Option.none()),
          () => Effect.sync(() => process.chdir(cwd))
        )
      const none = yield* inFolder(tempDir(dirs))
      assert.deepStrictEqual(none, { path: "vigil.json", named: false, found: false, json: undefined, readAtNextStart: configCandidates })
      const opencode = tempDir(dirs)
      writeFileSync(join(opencode, "opencode.json"), "{}")
      assert.deepStrictEqual((yield* inFolder(opencode)).readAtNextStart, ["vigil.json", "opencode.json"])

      const missing = yield* Effect.flip(readConfigFile(Option.some(join(dir, "absent.json"))))
      assert.strictEqual(missing.key, "(config file)")
      assert.include(missing.message, "absent.json")
      writeFileSync(path, "{ nope")
      assert.include((yield* Effect.flip(readConfigFile(Option.some(path)))).message, "is not valid JSON")
    }))

  it("JSONC: comments and trailing commas are read as opencode reads them; strings are left alone", () => {
    const text = `{
  // a line comment, with "quotes" and a , before }
  "a": "http://x.test/v1", /* a block
  comment */ "b": [1, 2, 3,],
  "c": { "d": "/* not a comment */ // nor this", "e": "tab\\"quoted\\",", },
}`
    assert.deepStrictEqual(JSON.parse(stripJsonc(text)), {
      a: "http://x.test/v1",
      b: [1, 2, 3],
      c: { d: "/* not a comment */ // nor this", e: "tab\"quoted\"," }
    })
    // The lines stay where they were: a JSON error still points at the right one.
    assert.strictEqual(stripJsonc(text).split("\n").length, text.split("\n").length)
  })

  it("the file's shape: opencode's keys and unknown ones are noted, beside the settings' own notes", () => {
    const json = {
      $schema: "https://opencode.ai/config.json",
      theme: "opencode",
      agent: {},
      provider: {},
      model: "script",
      colour: "blue",
      experimental: { batch_tool: true }
    }
    const notes = configNotes(json)
    assert.strictEqual(notes.length, 3, notes.join("\n"))
    assert.include(notes[0], "experimental.batch_tool: not vigil's")
    assert.strictEqual(notes[1], "theme, agent: opencode settings vigil does not use; ignored")
    assert.strictEqual(notes[2], "colour: unknown keys; ignored")
    assert.deepStrictEqual(configNotes(undefined), [])
  })

  it.effect("the settings and the providers both come from one read (a pipe gives its text once)", () =>
    Effect.gen(function*() {
      const path = fifo(tempDir(dirs))
      const written = writeFile(path, JSON.stringify({ experimental: { idle_timeout: "7m" }, model: "script" }))
      const file = yield* readConfigFile(Option.some(path))
      yield* Effect.promise(() => written)
      assert.deepStrictEqual((yield* settingsOf(file)).idleTimeout, Option.some(Duration.minutes(7)))
      assert.strictEqual((yield* providersOf(file)).defaultModel, "script")
    }))
})

describe("vigil serve and its config file, as a process", () => {
  it("reads it once: a pipe named by --config (as `<(…)` gives) starts the server with its settings and its model", async () => {
    const dir = tempDir(dirs)
    const path = fifo(dir)
    // Read twice (once for the settings, once for the providers), the second read waited for a
    // writer that never came (with `<(…)`: found nothing, "is not valid JSON").
    const written = writeFile(
      path,
      JSON.stringify({
        experimental: { tool_timeout: "3 minutes" },
        provider: { local: { options: { baseURL: "http://127.0.0.1:9/v1", maxRetries: 0 } } },
        model: "local/coder"
      })
    )
    const server = await serveProcess(["--db", join(dir, "vigil.db"), "--config", path], { cwd: dir })
    await written
    assert.include(server.stderr(), `config: ${path} (named)`)
    const session = (await request(`${server.url}/session`, { body: {} })).body.id as string
    // The settings: the tool's deadline is `tool_timeout`.
    const tool = await request(`${server.url}/session/${session}/tool`, { body: { tool: "bash", input: { command: "true" } } })
    assert.strictEqual(tool.status, 202, JSON.stringify(tool.body))
    const part = await eventually(async () => {
      const body = (await request(`${server.url}/part/${tool.body.partId}`)).body
      return body.startedAt !== null && body.deadlineAt !== null ? body : undefined
    }, 30_000, "the part to start")
    assert.strictEqual(part.deadlineAt - part.startedAt, 180_000)
    // The providers: a prompt that names no model runs on the file's `model`.
    const other = (await request(`${server.url}/session`, { body: {} })).body.id as string
    assert.strictEqual((await request(`${server.url}/session/${other}/prompt`, { body: { text: "hello" } })).status, 202)
    const step = await eventually(async () => {
      const parts: Array<{ readonly kind: string; readonly tool: string }> = (await request(`${server.url}/session/${other}/part`)).body.items
      return parts.find((part) => part.kind === "model")
    }, 30_000, "the model step")
    assert.strictEqual(step.tool, "local/coder")
    server.child.kill("SIGTERM")
    assert.strictEqual((await server.exited).code, 0, server.stderr())
  })

  it("a start-up that cannot go on says so in its one line alone, also when the file has keys vigil notes", async () => {
    const dir = tempDir(dirs)
    const noted = { theme: "opencode", experimental: { batch_tool: true } }
    // A bad provider section after good settings: the settings' notes were logged before the error.
    writeFileSync(join(dir, "bad.json"), JSON.stringify({ ...noted, model: 42 }))
    const badModel = await vigilRun(["serve", "--port", "0", "--db", join(dir, "vigil.db"), "--config", join(dir, "bad.json")], { cwd: dir })
    assert.notStrictEqual(badModel.code, 0)
    assert.deepStrictEqual(badModel.stderr.trim().split("\n"), [`invalid config: model = 42: must be a string such as "openai/gpt-4o-mini"`])
    // A good file and a database path that cannot be used: the notes came before the database's line.
    writeFileSync(join(dir, "vigil.json"), JSON.stringify(noted))
    const badDb = await vigilRun(["serve", "--port", "0", "--db", "/proc/x/v.db"], { cwd: dir })
    assert.notStrictEqual(badDb.code, 0)
    assert.deepStrictEqual(badDb.stderr.trim().split("\n"), [
      "cannot use the database /proc/x/v.db: /proc is on proc, a kernel filesystem: no database can be made there"
    ])
  })

  it("a tool cannot write a config file the next start would read instead of the one in use", async () => {
    const dir = tempDir(dirs)
    writeFileSync(join(dir, "opencode.json"), JSON.stringify({ experimental: { tool_timeout: "5m" } }))
    const server = await serveProcess(["--db", join(dir, "vigil.db")], { cwd: dir })
    const runWrite = async (path: string) => {
      const session = (await request(`${server.url}/session`, { body: {} })).body.id as string
      const started = await request(`${server.url}/session/${session}/tool`, { body: { tool: "write", input: { path, content: "{}" } } })
      assert.strictEqual(started.status, 202, JSON.stringify(started.body))
      return eventually(async () => {
        const part = (await request(`${server.url}/part/${started.body.partId}`)).body
        return part.status === "completed" || part.status === "error" ? part : undefined
      }, 20_000, `the write of ${path} to end`)
    }
    // vigil.json comes first: written, it would be the next start's config (its providers, its keys).
    for (const path of ["vigil.json", "opencode.json"]) {
      const write = await runWrite(path)
      assert.strictEqual(write.status, "error", path)
      assert.include(write.error.message, "part of the server's own state", path)
    }
    assert.isFalse(existsSync(join(dir, "vigil.json")))
    // What comes after the one in use is never read while it is there: the agent may edit it.
    assert.strictEqual((await runWrite("opencode.jsonc")).status, "completed")
    server.child.kill("SIGTERM")
    assert.strictEqual((await server.exited).code, 0, server.stderr())
  })
})
