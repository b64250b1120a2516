import { HttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import type { SettingsError } from "@vigil/domain"
import { Duration, Effect, Either, Option, Redacted } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { ProviderConfig } from "../src/ProviderConfig.js"
import { parseProviders } from "../src/ProviderConfig.js"
import { makeLanguageModels } from "../src/Providers.js"

const secret = "sk-live-TOPSECRET-4242"

const good = (file: unknown, env: Record<string, string> = {}): ProviderConfig =>
  Either.getOrThrowWith(parseProviders(file, env), (error) => new Error(error.message))

/** The one error a config gives; the key is never part of it. */
const bad = (file: unknown, env: Record<string, string> = {}): SettingsError => {
  const parsed = parseProviders(file, env)
  assert.isTrue(Either.isLeft(parsed), "expected the config to be refused")
  const error = (parsed as Either.Left<SettingsError, ProviderConfig>).left
  assert.notInclude(error.message, secret)
  assert.notInclude(JSON.stringify(error), secret)
  assert.notInclude(String(error), secret)
  return error
}

const withOptions = (options: Record<string, unknown>) => ({ provider: { openai: { options } } })

describe("parseProviders", () => {
  it("reads providers, their models and the default model", () => {
    const config = good({
      experimental: { tool_timeout: "5m" },
      model: "local/qwen2.5-coder",
      provider: {
        openai: { options: { baseURL: "https://api.example.test/v1/", apiKey: secret }, models: { "gpt-4o-mini": {} } },
        local: { npm: "@ai-sdk/openai-compatible", name: "llama.cpp", options: { baseURL: "http://127.0.0.1:8080/v1", inactivityTimeout: "90 seconds" } }
      }
    })
    assert.strictEqual(config.defaultModel, "local/qwen2.5-coder")
    const [openai, local] = config.providers
    assert.strictEqual(openai!.id, "openai")
    assert.strictEqual(openai!.baseURL, "https://api.example.test/v1")
    assert.strictEqual(Redacted.value(Option.getOrThrow(openai!.apiKey)), secret)
    assert.deepStrictEqual(openai!.inactivityTimeout, Option.some(Duration.seconds(60)))
    assert.deepStrictEqual(openai!.models, [{ name: "gpt-4o-mini", id: "gpt-4o-mini" }])
    assert.strictEqual(local!.id, "local")
    assert.isTrue(Option.isNone(local!.apiKey))
    assert.deepStrictEqual(local!.inactivityTimeout, Option.some(Duration.seconds(90)))
    // The key is held redacted: printing the config does not show it.
    assert.notInclude(JSON.stringify(config), secret)
    assert.notInclude(String(openai!.apiKey), secret)
  })

  it("no file, or no provider section, means the script model alone", () => {
    assert.deepStrictEqual(good(undefined), { providers: [], defaultModel: "script" })
    assert.deepStrictEqual(good({ experimental: {} }), { providers: [], defaultModel: "script" })
  })

  it("substitutes {env:NAME} from the environment", () => {
    const config = good(
      {
        model: "{env:MODEL}",
        provider: { openai: { options: { baseURL: "http://{env:HOST}:8080/v1", apiKey: "{env:OPENAI_API_KEY}", inactivityTimeout: 250 } } }
      },
      { OPENAI_API_KEY: secret, HOST: "127.0.0.1", MODEL: "openai/fake" }
    )
    const [openai] = config.providers
    assert.strictEqual(config.defaultModel, "openai/fake")
    assert.strictEqual(openai!.baseURL, "http://127.0.0.1:8080/v1")
    assert.strictEqual(Redacted.value(Option.getOrThrow(openai!.apiKey)), secret)
    assert.deepStrictEqual(openai!.inactivityTimeout, Option.some(Duration.millis(250)))
  })

  it("an unset environment variable is \"\" with a warning, as opencode reads it", () => {
    const config = good(withOptions({ baseURL: "http://127.0.0.1:8080/v1", apiKey: "{env:OPENAI_API_KEY}" }))
    assert.isTrue(Option.isNone(config.providers[0]!.apiKey))
    assert.deepStrictEqual(config.warnings, [
      `provider.openai.options.apiKey: the environment variable OPENAI_API_KEY is not set; {env:OPENAI_API_KEY} is ""`
    ])
  })

  it("{file:path} is read relative to the config's folder; a file that cannot be read is an error", () => {
    const dir = mkdtempSync(join(tmpdir(), "vigil-file-ref-"))
    try {
      writeFileSync(join(dir, "key.txt"), `${secret}\n`)
      const parsed = parseProviders(withOptions({ baseURL: "http://127.0.0.1:8080/v1", apiKey: "{file:key.txt}" }), {}, dir)
      const config = Either.getOrThrow(parsed)
      assert.strictEqual(Redacted.value(Option.getOrThrow(config.providers[0]!.apiKey)), secret)
      const missing = parseProviders(withOptions({ baseURL: "http://127.0.0.1:8080/v1", apiKey: "{file:nope.txt}" }), {}, dir)
      assert.isTrue(Either.isLeft(missing))
      const error = (missing as Either.Left<SettingsError, ProviderConfig>).left
      assert.strictEqual(error.message, `invalid config: provider.openai.options.apiKey = "<redacted>": {file:nope.txt} cannot be read: ENOENT`)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("opencode's options: models.<key>.id, headers, timeout, chunkTimeout, maxRetries", () => {
    const config = good({
      provider: {
        local: {
          options: {
            baseURL: "http://127.0.0.1:8080/v1",
            headers: { "X-Title": "vigil", Authorization: "{env:TOKEN}" },
            timeout: 120000,
            chunkTimeout: 15000,
            maxRetries: 2,
            setCacheKey: true
          },
          models: { coder: { id: "qwen2.5-coder-32b-instruct-q4", name: "Qwen coder" }, plain: {} }
        }
      }
    }, { TOKEN: "Bearer abc" })
    const local = config.providers[0]!
    assert.deepStrictEqual(local.models, [{ name: "coder", id: "qwen2.5-coder-32b-instruct-q4" }, { name: "plain", id: "plain" }])
    assert.deepStrictEqual(local.headers, { "X-Title": "vigil", Authorization: "Bearer abc" })
    assert.deepStrictEqual(local.requestTimeout, Option.some(Duration.millis(120000)))
    assert.deepStrictEqual(local.inactivityTimeout, Option.some(Duration.millis(15000)))
    assert.strictEqual(local.maxRetries, 2)
    assert.deepStrictEqual(config.warnings, ["provider.local.options.setCacheKey: an opencode option vigil does not use; ignored"])
    assert.include(bad(withOptions({ baseURL: "http://x.test/v1", maxRetries: -1 })).message, "provider.openai.options.maxRetries = -1")
    assert.include(bad(withOptions({ baseURL: "http://x.test/v1", chunkTimeout: "soon" })).message, "provider.openai.options.chunkTimeout")
  })

  it("a missing baseURL", () => {
    // `openai` and `anthropic` without one are opencode's built-ins (test/EffectAiProviders.test.ts).
    const error = bad({ provider: { local: { options: { apiKey: secret } } } })
    assert.strictEqual(error.key, "provider.local.options.baseURL")
    assert.include(error.message, "invalid config: provider.local.options.baseURL")
    assert.include(error.message, `missing: the endpoint's base URL, such as "http://127.0.0.1:8080/v1"`)
    assert.strictEqual(bad({ provider: { local: {} } }).key, "provider.local.options.baseURL")
    assert.strictEqual(bad({ provider: { openai: { npm: "@ai-sdk/openai-compatible" } } }).key, "provider.openai.options.baseURL")
  })

  it("a baseURL that is not an http URL", () => {
    assert.strictEqual(
      bad(withOptions({ baseURL: "localhost:8080", apiKey: secret })).message,
      `invalid config: provider.openai.options.baseURL = "localhost:8080": must be an http:// or https:// URL`
    )
    assert.strictEqual(
      bad(withOptions({ baseURL: "not a url", apiKey: secret })).message,
      `invalid config: provider.openai.options.baseURL = "not a url": is not a URL (try "http://127.0.0.1:8080/v1")`
    )
  })

  it("an apiKey that is not a string is refused without showing it", () => {
    for (const apiKey of [4242, { key: secret }, [secret], true]) {
      const error = bad(withOptions({ baseURL: "http://127.0.0.1:8080/v1", apiKey }))
      assert.strictEqual(
        error.message,
        `invalid config: provider.openai.options.apiKey = "<redacted>": must be a string (such as "{env:OPENAI_API_KEY}")`
      )
    }
  })

  it("a bad inactivityTimeout", () => {
    const options = { baseURL: "http://127.0.0.1:8080/v1", apiKey: secret }
    assert.strictEqual(
      bad(withOptions({ ...options, inactivityTimeout: "soon" })).message,
      `invalid config: provider.openai.options.inactivityTimeout = "soon": cannot read it as a duration (try "90 seconds", "5m" or 5000)`
    )
    assert.strictEqual(
      bad(withOptions({ ...options, inactivityTimeout: -5 })).message,
      "invalid config: provider.openai.options.inactivityTimeout = -5: must not be negative"
    )
    assert.strictEqual(bad(withOptions({ ...options, inactivityTimeout: { s: 1 } })).key, "provider.openai.options.inactivityTimeout")
    // Off, as every duration in the config can be: the step's deadline still holds.
    assert.isTrue(Option.isNone(good(withOptions({ ...options, inactivityTimeout: false })).providers[0]!.inactivityTimeout))
  })

  it("a provider entry or section of the wrong shape is named, its contents not shown", () => {
    assert.strictEqual(bad({ provider: { openai: [secret] } }).key, "provider.openai")
    assert.strictEqual(bad({ provider: { openai: { options: [secret] } } }).key, "provider.openai.options")
    assert.strictEqual(bad({ provider: [secret] }).key, "provider")
    assert.strictEqual(bad({ provider: { "a/b": { options: { baseURL: "http://x" } } } }).key, "provider.a/b")
  })

  it("a default model of an unconfigured provider is named", () => {
    const error = bad({ ...withOptions({ baseURL: "http://127.0.0.1:8080/v1", apiKey: secret }), model: "anthropic/claude" })
    assert.strictEqual(
      error.message,
      `invalid config: model = "anthropic/claude": names provider "anthropic", which is not configured under "provider" (configured: openai)`
    )
    assert.strictEqual(bad({ model: "gpt-4o" }).key, "model")
    assert.strictEqual(bad({ model: 42 }).key, "model")
  })
})

describe("LanguageModels from providers", () => {
  const unusedClient = HttpClient.make(() => Effect.die("no request expected"))

  it.effect("any <provider>/<name> of a configured provider is a model; others are not", () =>
    Effect.gen(function*() {
      const config = good({
        model: "openai/fake",
        provider: { openai: { options: { baseURL: "http://127.0.0.1:1/v1" }, models: { listed: {} } } }
      })
      const { defaultModel, models } = yield* makeLanguageModels(config).pipe(
        Effect.provideService(HttpClient.HttpClient, unusedClient)
      )
      assert.strictEqual(defaultModel, "openai/fake")
      assert.deepStrictEqual([...models.keys()], ["script", "openai/listed", "openai/*"])
      assert.strictEqual(models.get("script")?.name, "script")
      assert.strictEqual(models.get("openai/gpt-4o-mini")?.name, "openai/gpt-4o-mini")
      assert.strictEqual(models.get("openai/org/model-7b")?.name, "openai/org/model-7b")
      assert.isTrue(models.has("openai/fake"))
      assert.isUndefined(models.get("other/gpt-4o"))
      assert.isUndefined(models.get("openai/"))
      assert.isUndefined(models.get("openai/*"))
      assert.isUndefined(models.get("gpt-4o"))
      assert.isFalse(models.has("other/x"))
    }))
})
