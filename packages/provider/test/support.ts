import type { Settings as SettingsShape } from "@vigil/domain"
import type { LanguageModels } from "@vigil/runtime"
import { SessionService, Tools, Vigil } from "@vigil/runtime"
import type { AnyTool } from "@vigil/tools"
import { Duration, Effect, Either, Layer, Option, Schema } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import type { ProviderConfig } from "../src/ProviderConfig.js"
import { parseProviders } from "../src/ProviderConfig.js"
import { ProvidersLive } from "../src/Providers.js"

const dirs: Array<string> = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

const tempDb = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "vigil-provider-"))
  dirs.push(dir)
  return join(dir, "vigil.db")
}

export const testKey = "sk-test-5ecret-do-not-leak-0123456789"

/** A provider `openai` at `baseURL`, read from a config file as a user would write it. */
export const providerConfig = (baseURL: string, options: Record<string, unknown> = {}): ProviderConfig =>
  Either.getOrThrowWith(
    parseProviders(
      {
        provider: { openai: { options: { baseURL, apiKey: "{env:OPENAI_API_KEY}", ...options } } },
        model: "openai/fake"
      },
      { OPENAI_API_KEY: testKey }
    ),
    (error) => new Error(error.message)
  )

/** A tool with a visible result, so the test can follow it into the next request. */
export const echoTool: AnyTool = {
  name: "echo",
  description: "Echoes its text back.",
  input: Schema.Struct({ text: Schema.String }),
  run: (input: { readonly text: string }) => Effect.succeed(`echo: ${input.text}`)
} as AnyTool

/** The whole supervision layer on a real SQLite file, its models from the providers (or `models`). */
export const providerRuntime = (options: {
  readonly config: ProviderConfig
  readonly settings?: Partial<SettingsShape>
  readonly models?: Layer.Layer<LanguageModels>
}) =>
  Vigil.layerTest({
    file: tempDb(),
    tools: Layer.merge(Tools.builtin(), Tools.add(echoTool)),
    models: options.models ?? ProvidersLive(options.config),
    settings: {
      toolTimeout: Option.some(Duration.seconds(10)),
      taskTimeout: Option.some(Duration.seconds(60)),
      idleTimeout: Option.some(Duration.seconds(30)),
      watchdogInterval: Option.none(),
      instanceLease: Duration.seconds(30),
      abortGrace: Duration.seconds(1),
      killGrace: Duration.millis(300),
      ...options.settings
    }
  })

/** Runs one turn on a new session; gives the result, the session after it and its parts. */
export const runOneTurn = (text: string, model = "openai/fake") =>
  Effect.gen(function*() {
    const sessions = yield* SessionService
    const session = yield* sessions.create({ title: "provider test" })
    const result = yield* sessions.runTurn(session.id, { text, model })
    return { result, session: yield* sessions.get(session.id), parts: yield* sessions.parts(session.id) }
  })
