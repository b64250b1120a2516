import { HttpClient } from "@effect/platform"
// The module, not the package index: the index loads all of @effect/platform-node (its cluster and
// RPC modules, with @effect/cluster, @effect/rpc, @effect/sql), a third of the CLI's start-up.
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type { LanguageModelShape } from "@vigil/runtime"
import { LanguageModels, scriptModel } from "@vigil/runtime"
import { Effect, Layer, Option, Redacted } from "effect"
import { makeEffectAiModel } from "./EffectAi.js"
import { makeOpenAiCompatibleModel } from "./OpenAiCompatible.js"
import type { ProviderConfig, ProviderSettings } from "./ProviderConfig.js"
import { splitModelName } from "./ProviderConfig.js"

/**
 * The models a prompt can name. Model names are open-ended (`"openai/gpt-4o-mini"`), so `get`
 * makes a model on demand for any `<provider>/<name>` of a configured provider; the entries are
 * what is known up front (`script` and the names under `provider.<id>.models`). `keys()`, which is
 * what an "unknown model" error lists, adds `<provider>/*` for each provider.
 */
export class ProviderModels extends Map<string, LanguageModelShape> {
  constructor(
    known: Iterable<readonly [string, LanguageModelShape]>,
    private readonly resolve: (name: string) => LanguageModelShape | undefined,
    private readonly patterns: ReadonlyArray<string> = []
  ) {
    super(known)
  }

  override keys(): MapIterator<string> {
    return new Map([...super.keys(), ...this.patterns].map((key) => [key, key])).keys()
  }

  override get(name: string): LanguageModelShape | undefined {
    return super.get(name) ?? this.resolve(name)
  }

  override has(name: string): boolean {
    return this.get(name) !== undefined
  }
}

/** The API keys of a config, as text: what no error, log or shell may show. */
export const configuredKeys = (config: ProviderConfig): ReadonlyArray<string> =>
  config.providers.flatMap((provider) => Option.toArray(Option.map(provider.apiKey, Redacted.value)))

/** One model of a provider, on the client its API needs: chat-completions here, the rest through `@effect/ai`. */
export const makeModel = (
  options: { readonly provider: ProviderSettings; readonly model: string; readonly name?: string; readonly secrets?: ReadonlyArray<string> },
  client: HttpClient.HttpClient
): LanguageModelShape =>
  options.provider.api === "chat-completions"
    ? makeOpenAiCompatibleModel(options, client)
    : makeEffectAiModel({ ...options, api: options.provider.api }, client)

/** `LanguageModels` for a config: `script`, plus every model of every configured provider. */
export const makeLanguageModels = (config: ProviderConfig) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const providers = new Map<string, ProviderSettings>(config.providers.map((provider) => [provider.id, provider]))
    // Every model hides every configured key: one provider's error may quote another's.
    const secrets = configuredKeys(config)
    const resolve = (name: string): LanguageModelShape | undefined => {
      const { model, provider } = splitModelName(name)
      const settings = provider === undefined ? undefined : providers.get(provider)
      // `*` is how `keys()` shows "any name", not a name.
      return settings === undefined || model === "" || model === "*" ? undefined : makeModel({ provider: settings, model, secrets }, client)
    }
    const known: Array<readonly [string, LanguageModelShape]> = [[scriptModel.name, scriptModel]]
    for (const provider of config.providers) {
      for (const model of provider.models) {
        const name = `${provider.id}/${model.name}`
        known.push([name, makeModel({ provider, model: model.id, name, secrets }, client)])
      }
    }
    const patterns = config.providers.map((provider) => `${provider.id}/*`)
    return { defaultModel: config.defaultModel, models: new ProviderModels(known, resolve, patterns) }
  })

/** The models on a given HttpClient (a test's, say). */
export const ProvidersLayer = (config: ProviderConfig): Layer.Layer<LanguageModels, never, HttpClient.HttpClient> =>
  Layer.effect(LanguageModels, makeLanguageModels(config))

/**
 * The HTTP client the providers run on: `@effect/platform-node`'s undici client, whose requests are
 * aborted (the socket destroyed) on interruption.
 *
 * Not its `node:http` client (`NodeHttpClient.layer`): that one writes the request in one fiber
 * and attaches its `response` listener in a second, concurrent one. Node emits a response head the
 * moment it is parsed and drops it when nobody listens, so the two fibers' first steps must run
 * with no I/O between them. The server's FairScheduler lets I/O in between any two fiber tasks
 * (that is its point), and a provider answering within a millisecond then lost 2 to 11 responses
 * in 100, more on a busier machine: each such step sat silent until the inactivity timeout
 * (test/NoLostResponse.test.ts). Undici's `request` is one call whose promise settles with the
 * response; the body is a stream that buffers until it is read, so nothing depends on when a
 * fiber gets its turn.
 */
export const ProviderHttpClient: Layer.Layer<HttpClient.HttpClient> = NodeHttpClient.layerUndici

/** The models on `ProviderHttpClient`. */
export const ProvidersLive = (config: ProviderConfig): Layer.Layer<LanguageModels> =>
  ProvidersLayer(config).pipe(Layer.provide(ProviderHttpClient))
