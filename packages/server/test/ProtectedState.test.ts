import { assert, describe, it } from "@effect/vitest"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, afterEach } from "vitest"
import { protectedStateOf } from "../src/ProtectedState.js"
import { eventually, killChildren, removeDirs, request, serveProcess, tempDir, vigilRun } from "./support.js"

const dirs: Array<string> = []
afterEach(killChildren)
afterAll(() => removeDirs(dirs))

const password = "correct-horse-battery-staple"
const auth = { authorization: `Basic ${Buffer.from(`vigil:${password}`).toString("base64")}` }
const openAiKey = "sk-test-openai-0123456789abcdef"
const otherKey = "local-llm-credential-fedcba9876543210"

/** Runs one tool call in a fresh session and waits for its part to end. */
const runTool = async (url: string, tool: string, input: unknown) => {
  const session = (await request(`${url}/session`, { body: {}, headers: auth })).body
  const started = await request(`${url}/session/${session.id}/tool`, { body: { tool, input }, headers: auth })
  assert.strictEqual(started.status, 202, JSON.stringify(started.body))
  return eventually(async () => {
    const part = (await request(`${url}/part/${started.body.partId}`, { headers: auth })).body
    return part.status === "completed" || part.status === "error" ? part : undefined
  }, 20_000, `the ${tool} part to end`)
}

describe("protectedStateOf", () => {
  it("protects the data folder whole, or only the database files and output/ when the working dir is in it", () => {
    const root = tempDir(dirs)
    const nested = protectedStateOf({ db: join(root, ".vigil", "vigil.db"), configFile: join(root, "vigil.json"), root })
    assert.deepStrictEqual(nested.folders, [join(root, ".vigil", "output"), join(root, ".vigil")])
    assert.includeMembers([...nested.files], [join(root, ".vigil", "vigil.db"), join(root, ".vigil", "vigil.db-wal"), join(root, ".vigil", "vigil.db-shm"), join(root, "vigil.json")])
    // `--db vigil.db`: the database is in the working directory itself, which stays usable.
    const flat = protectedStateOf({ db: join(root, "vigil.db"), root })
    assert.deepStrictEqual(flat.folders, [join(root, "output")])
    assert.includeMembers([...flat.files], [join(root, "vigil.db"), join(root, "vigil.db-wal"), join(root, "vigil.db-shm")])
  })
})

describe("vigil serve with the default --db .vigil/vigil.db", () => {
  it("keeps its database, config and data folder out of the tools' reach, and its secrets out of shells", async () => {
    const dir = tempDir(dirs)
    mkdirSync(join(dir, ".vigil", "output"), { recursive: true })
    writeFileSync(join(dir, ".vigil", "output", "prt_old.log"), "old output")
    const config = JSON.stringify({
      provider: {
        openai: { options: { baseURL: "http://127.0.0.1:9/v1", apiKey: "{env:OPENAI_API_KEY}" } },
        local: { options: { baseURL: "http://127.0.0.1:9/v1", apiKey: "{env:LLM_CREDENTIAL_FOR_LOCAL}" } }
      },
      experimental: { shell_env: { include: ["GITHUB_TOKEN"], exclude: ["NOT_WANTED_*"] } }
    })
    writeFileSync(join(dir, "vigil.json"), config)
    const server = await serveProcess([], {
      cwd: dir,
      env: {
        VIGIL_SERVER_PASSWORD: password,
        OPENAI_API_KEY: openAiKey,
        // A provider key under a name no pattern matches: removed by its value.
        LLM_CREDENTIAL_FOR_LOCAL: otherKey,
        GITHUB_TOKEN: "ghp_included_on_purpose",
        SOME_OTHER_TOKEN: "tok_removed_by_default",
        NOT_WANTED_VAR: "removed_by_exclude",
        HARMLESS_VAR: "kept"
      }
    })

    for (const path of [".vigil/vigil.db", ".vigil/vigil.db-wal", ".vigil/vigil.db-shm", "vigil.json", ".vigil/output/prt_old.log", ".vigil/new.txt"]) {
      const write = await runTool(server.url, "write", { path, content: "wiped" })
      assert.strictEqual(write.status, "error", path)
      assert.include(write.error.message, "part of the server's own state", path)
      const read = await runTool(server.url, "read", { path })
      assert.strictEqual(read.status, "error", path)
      assert.include(read.error.message, "part of the server's own state", path)
    }
    const cwd = await runTool(server.url, "bash", { command: "pwd", cwd: ".vigil" })
    assert.strictEqual(cwd.status, "error")
    assert.include(cwd.error.message, `cwd ".vigil" is part of the server's own state`)

    const env = await runTool(server.url, "bash", { command: "env" })
    assert.strictEqual(env.status, "completed", JSON.stringify(env.error))
    const output = env.output as string
    for (const secret of [password, openAiKey, otherKey, "tok_removed_by_default", "removed_by_exclude"]) {
      assert.notInclude(output, secret)
    }
    assert.notInclude(output, "VIGIL_SERVER_PASSWORD")
    assert.include(output, "GITHUB_TOKEN=ghp_included_on_purpose")
    assert.include(output, "HARMLESS_VAR=kept")

    // The config file is as it was, and the database works: the server still answers, and the
    // CLI reads what it stored.
    assert.strictEqual(readFileSync(join(dir, "vigil.json"), "utf8"), config)
    const ok = await runTool(server.url, "write", { path: "notes.txt", content: "fine" })
    assert.strictEqual(ok.status, "completed")
    server.child.kill("SIGTERM")
    await server.exited
    const status = await vigilRun(["status"], { cwd: dir })
    assert.strictEqual(status.code, 0, status.stderr)
    assert.include(status.stdout, "ses_")
  }, 120_000)
})
