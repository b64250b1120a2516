import { assert, describe, it } from "@effect/vitest"
import { defaultShellEnv, PartId, SessionId } from "@vigil/domain"
import { Effect, Option } from "effect"
import { tmpdir } from "node:os"
import { afterEach, beforeEach } from "vitest"
import { makeBashTool } from "../src/Bash.js"
import { shellEnvironment } from "../src/internal/ShellEnvironment.js"
import type { ToolContext } from "../src/Tool.js"

const context: ToolContext = {
  partId: PartId.make("prt_env"),
  sessionId: SessionId.make("ses_env"),
  root: tmpdir(),
  output: () => Effect.void,
  recordProcess: () => Effect.void,
  event: () => Effect.void
}

/** The server's environment, as a deployment would have it. */
const serverEnv: Record<string, string> = {
  VIGIL_SERVER_PASSWORD: "hunter2-server-password",
  VIGIL_DATABASE_URL: "postgres://vigil:pw@db/vigil",
  OPENAI_API_KEY: "sk-openai-secret-value",
  GITHUB_TOKEN: "ghp_github_token_value",
  aws_secret_access_key: "aws-secret-lowercase-name",
  DB_Password: "mixed-case-password",
  PROVIDER_CREDENTIAL: "configured-provider-key-value",
  HARMLESS_SETTING: "plain-value"
}

beforeEach(() => Object.assign(process.env, serverEnv))
afterEach(() => {
  for (const name of Object.keys(serverEnv)) delete process.env[name]
})

/** `env` in a real shell, as the bash tool runs it. */
const envIn = (tool: ReturnType<typeof makeBashTool>) =>
  tool.run({ command: "env" }, context)

describe("a shell's environment", () => {
  it.live("by default, env shows no secret: vigil's, provider keys by value, secret-looking names in any case", () =>
    Effect.gen(function*() {
      const output = yield* envIn(makeBashTool({ environment: { policy: defaultShellEnv, secretValues: ["configured-provider-key-value"] } }))
      for (const [name, value] of Object.entries(serverEnv)) {
        if (name === "HARMLESS_SETTING") continue
        assert.notInclude(output, value, name)
      }
      assert.include(output, "HARMLESS_SETTING=plain-value")
      assert.include(output, "PATH=")
      // The part marker the hard stop finds processes by is still there.
      assert.include(output, "VIGIL_PART_ID=prt_env")
    }))

  it.live("the default bash tool scrubs too (no policy given)", () =>
    Effect.gen(function*() {
      const output = yield* envIn(makeBashTool())
      assert.notInclude(output, "hunter2-server-password")
      assert.notInclude(output, "sk-openai-secret-value")
      assert.include(output, "HARMLESS_SETTING=plain-value")
    }))

  it.live("include brings one back, exclude removes more, include_only keeps only what it names", () =>
    Effect.gen(function*() {
      const included = yield* envIn(makeBashTool({
        environment: { policy: { ...defaultShellEnv, include: ["github_*"], exclude: ["HARMLESS_*"] }, secretValues: [] }
      }))
      assert.include(included, "GITHUB_TOKEN=ghp_github_token_value")
      assert.notInclude(included, "sk-openai-secret-value")
      assert.notInclude(included, "HARMLESS_SETTING")
      const only = shellEnvironment({ ...serverEnv, PATH: "/bin", HOME: "/home/x" }, {
        policy: { include: [], exclude: [], includeOnly: Option.some(["PATH", "HOME", "OPENAI_*"]) },
        secretValues: []
      })
      assert.deepStrictEqual(only, { PATH: "/bin", HOME: "/home/x" })
    }))
})
