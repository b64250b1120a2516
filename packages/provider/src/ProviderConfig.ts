import { parseDuration, SettingsError } from "@vigil/domain"
import { Duration, Either, Option, Redacted } from "effect"
import { readFileSync } from "node:fs"
import { homedir } from "node:os"
import { join, resolve } from "node:path"
import { defaultMaxRetries } from "./Retry.js"

/** One OpenAI-compatible endpoint, as `provider.<id>` in the config file describes it. */
export interface ProviderSettings {
  /** The key under `provider`: the part of a model name before the first `/`. */
  readonly id: string
  /** Where `/chat/completions` lives, without a trailing slash (`http://127.0.0.1:8080/v1`). */
  readonly baseURL: string
  /** Sent as a bearer token; never shown in an error or a log. */
  readonly apiKey: Option.Option<Redacted.Redacted<string>>
  /** How long a stream may send nothing before the step fails; `None` leaves it to the step's deadline. */
  readonly inactivityTimeout: Option.Option<Duration.Duration>
  /** The key it was set by (opencode's `chunkTimeout`, or `inactivityTimeout`), as an error names it. */
  readonly inactivityKey?: "inactivityTimeout" | "chunkTimeout"
  /**
   * The names listed under `provider.<id>.models`, each with the id sent to the provider
   * (`models.<name>.id`, else the name); any other name of this provider works too, sent as it is.
   */
  readonly models: ReadonlyArray<ProviderModel>
  /** Sent with every request (`options.headers`). */
  readonly headers: Readonly<Record<string, string>>
  /** How long one call may take in all (`options.timeout`, as opencode has it); `None`: the step's deadline. */
  readonly requestTimeout: Option.Option<Duration.Duration>
  /** How many times a 429, a 5xx or a refused connection is tried again (`options.maxRetries`). */
  readonly maxRetries: number
  /**
   * Which API it speaks: `chat-completions` (any OpenAI-compatible server: llama.cpp, vLLM,
   * Ollama, gateways), or, through `@effect/ai`, Anthropic's Messages or OpenAI's Responses.
   */
  readonly api: ProviderApi
}

export type ProviderApi = "chat-completions" | "anthropic" | "openai-responses"

/**
 * opencode's built-in providers vigil serves through `@effect/ai`: where they are, and the
 * environment variable their key is read from when the config gives none.
 */
export const builtInProviders: Readonly<Record<string, { readonly api: ProviderApi; readonly baseURL: string; readonly keyEnv: string }>> = {
  anthropic: { api: "anthropic", baseURL: "https://api.anthropic.com", keyEnv: "ANTHROPIC_API_KEY" },
  openai: { api: "openai-responses", baseURL: "https://api.openai.com/v1", keyEnv: "OPENAI_API_KEY" }
}

/** opencode's `npm` field names the AI SDK package of a provider; it says which API it speaks. */
const apiOfPackage: Readonly<Record<string, ProviderApi>> = {
  "@ai-sdk/openai-compatible": "chat-completions",
  "@ai-sdk/anthropic": "anthropic",
  "@ai-sdk/openai": "openai-responses"
}

/**
 * The API of `provider.<id>`: its `npm` package when named; else a built-in id (`anthropic`, or
 * `openai` without a `baseURL`) is the built-in; anything else is an OpenAI-compatible server.
 */
const apiOf = (id: string, raw: Record<string, unknown>, options: Record<string, unknown>): ProviderApi => {
  const npm = raw["npm"]
  if (typeof npm === "string" && Object.hasOwn(apiOfPackage, npm)) return apiOfPackage[npm]!
  if (id === "anthropic") return "anthropic"
  if (id === "openai" && options["baseURL"] === undefined) return "openai-responses"
  return "chat-completions"
}

export interface ProviderModel {
  /** The key under `models`: what a prompt names (`<provider>/<name>`). */
  readonly name: string
  /** What the provider is asked for (`models.<name>.id`). */
  readonly id: string
}

export interface ProviderConfig {
  readonly providers: ReadonlyArray<ProviderSettings>
  /** `model` in the file (`"openai/gpt-4o-mini"`): what a prompt that names none runs on. */
  readonly defaultModel: string
  /** What was read but not taken as written (an unset `{env:NAME}`, say): logged at start. */
  readonly warnings?: ReadonlyArray<string>
}

/** Where `{file:path}` is read from, and where what is not fatal is noted. */
interface ParseContext {
  readonly env: Readonly<Record<string, string | undefined>>
  readonly baseDir: string
  readonly warnings: Array<string>
}

export const defaultInactivityTimeout: Duration.Duration = Duration.seconds(60)

/** The offline model, always there, and the default when the file names none. */
export const scriptModelName = "script"

/** No provider configured: only the offline `script` model. */
export const noProviders: ProviderConfig = { providers: [], defaultModel: scriptModelName }

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** What a secret shows as in an error: `Redacted` prints as `<redacted>`. */
const hidden = (value: unknown) => Redacted.make(value)

/** A scalar is shown as it is; an object or array is not, since it may hold an API key. */
const shown = (value: unknown) => (typeof value === "object" && value !== null ? hidden(value) : value)

const reference = /\{(env|file):([^}]*)\}/g

/**
 * `{env:NAME}` and `{file:path}` in a string value, as opencode reads them: an unset variable is
 * "" (with a warning, as opencode gives none and a user then wonders); a file is read (relative to
 * the config file's folder, `~/` for the home folder) and its text, trimmed, put in its place.
 * A file that cannot be read is an error: a key or a URL silently empty would fail later, unclearly.
 */
const substitute = (
  key: string,
  value: string,
  context: ParseContext,
  secret: boolean
): Either.Either<string, SettingsError> => {
  let problem: string | undefined
  const result = value.replace(reference, (_match, kind: string, name: string) => {
    if (name.trim() === "") {
      problem ??= `a {${kind}:…} reference needs a ${kind === "env" ? "variable name" : "path"}`
      return ""
    }
    if (kind === "env") {
      const found = Object.hasOwn(context.env, name) ? context.env[name] : undefined
      if (found === undefined) context.warnings.push(`${key}: the environment variable ${name} is not set; {env:${name}} is ""`)
      return found ?? ""
    }
    const path = name.startsWith("~/") ? join(homedir(), name.slice(2)) : resolve(context.baseDir, name)
    try {
      return readFileSync(path, "utf8").trim()
    } catch (error) {
      problem ??= `{file:${name}} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`
      return ""
    }
  })
  if (problem === undefined) return Either.right(result)
  return Either.left(new SettingsError({ key, value: secret ? hidden(value) : value, problem }))
}

const parseBaseURL = (key: string, raw: unknown, context: ParseContext) => {
  if (raw === undefined) {
    return Either.left(new SettingsError({ key, value: raw, problem: `missing: the endpoint's base URL, such as "http://127.0.0.1:8080/v1"` }))
  }
  if (typeof raw !== "string") return Either.left(new SettingsError({ key, value: raw, problem: "must be a string (a URL)" }))
  return Either.flatMap(substitute(key, raw, context, false), (text) => {
    let url: URL
    try {
      url = new URL(text)
    } catch {
      return Either.left(new SettingsError({ key, value: text, problem: `is not a URL (try "http://127.0.0.1:8080/v1")` }))
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      return Either.left(new SettingsError({ key, value: text, problem: "must be an http:// or https:// URL" }))
    }
    return Either.right(text.trim().replace(/\/+$/, ""))
  })
}

const parseApiKey = (key: string, raw: unknown, context: ParseContext) => {
  if (raw === undefined) return Either.right(Option.none<Redacted.Redacted<string>>())
  // The value is never shown: a key put in the wrong place (a number, an object) is still a key.
  if (typeof raw !== "string") {
    return Either.left(new SettingsError({ key, value: hidden(raw), problem: `must be a string (such as "{env:OPENAI_API_KEY}")` }))
  }
  return Either.map(
    substitute(key, raw, context, true),
    (text) => (text === "" ? Option.none() : Option.some(Redacted.make(text)))
  )
}

const parseInactivityTimeout = (key: string, raw: unknown, context: ParseContext) => {
  if (raw === undefined) return Either.right(Option.some(defaultInactivityTimeout))
  const value = typeof raw === "string" ? substitute(key, raw, context, false) : Either.right<unknown>(raw)
  return Either.flatMap(value, (value) =>
    Either.mapLeft(parseDuration(value), (problem) => new SettingsError({ key, value, problem })))
}

const parseOptionalDuration = (key: string, raw: unknown, context: ParseContext) => {
  if (raw === undefined) return Either.right(Option.none<Duration.Duration>())
  return parseInactivityTimeout(key, raw, context)
}

const parseMaxRetries = (key: string, raw: unknown) => {
  if (raw === undefined) return Either.right(defaultMaxRetries)
  if (typeof raw !== "number" || !Number.isSafeInteger(raw) || raw < 0 || raw > 20) {
    return Either.left(new SettingsError({ key, value: shown(raw), problem: "must be a whole number from 0 (no retries) to 20" }))
  }
  return Either.right(raw)
}

const parseHeaders = (key: string, raw: unknown, context: ParseContext) => {
  if (raw === undefined) return Either.right<Readonly<Record<string, string>>>({})
  if (!isRecord(raw)) return Either.left(new SettingsError({ key, value: hidden(raw), problem: `must be an object such as { "X-Title": "vigil" }` }))
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(raw)) {
    // A header may carry a key (`x-api-key`, `Authorization`): its value is never shown.
    if (typeof value !== "string") return Either.left(new SettingsError({ key: `${key}.${name}`, value: hidden(value), problem: "must be a string" }))
    const text = substitute(`${key}.${name}`, value, context, true)
    if (Either.isLeft(text)) return Either.left(text.left)
    headers[name] = text.right
  }
  return Either.right<Readonly<Record<string, string>>>(headers)
}

const parseModels = (key: string, raw: Record<string, unknown>, context: ParseContext) => {
  const models: Array<ProviderModel> = []
  for (const [name, entry] of Object.entries(raw)) {
    const id = isRecord(entry) ? entry["id"] : undefined
    if (id !== undefined && typeof id !== "string") {
      return Either.left(new SettingsError({ key: `${key}.${name}.id`, value: shown(id), problem: "must be a string: the model id sent to the provider" }))
    }
    const sent = id === undefined ? Either.right(name) : substitute(`${key}.${name}.id`, id, context, false)
    if (Either.isLeft(sent)) return Either.left(sent.left)
    models.push({ name, id: sent.right === "" ? name : sent.right })
  }
  return Either.right(models)
}

/** `options` keys opencode's providers take that vigil has no use for: accepted, noted once. */
const ignoredOptions = new Set(["setCacheKey", "includeUsage", "fetch", "name"])
const knownOptions = new Set(["baseURL", "apiKey", "inactivityTimeout", "chunkTimeout", "timeout", "headers", "maxRetries"])

const parseProvider = (
  id: string,
  raw: unknown,
  context: ParseContext
): Either.Either<ProviderSettings, SettingsError> => {
  const key = `provider.${id}`
  if (id === "" || id.includes("/") || id === scriptModelName) {
    return Either.left(
      new SettingsError({ key, value: id, problem: `a provider id must be non-empty, have no "/" and not be "${scriptModelName}"` })
    )
  }
  if (!isRecord(raw)) return Either.left(new SettingsError({ key, value: shown(raw), problem: "must be an object with options.baseURL" }))
  const options = raw["options"] ?? {}
  if (!isRecord(options)) {
    return Either.left(new SettingsError({ key: `${key}.options`, value: shown(options), problem: "must be an object" }))
  }
  const models = raw["models"] ?? {}
  if (!isRecord(models)) {
    return Either.left(
      new SettingsError({ key: `${key}.models`, value: shown(models), problem: "must be an object keyed by model name" })
    )
  }
  for (const name of Object.keys(options)) {
    if (!knownOptions.has(name)) {
      context.warnings.push(`${key}.options.${name}: ${ignoredOptions.has(name) ? "an opencode option vigil does not use" : "unknown option"}; ignored`)
    }
  }
  // opencode's name for the stream inactivity timeout; vigil's own name wins when both are set.
  const inactivity = options["inactivityTimeout"] ?? options["chunkTimeout"]
  const inactivityKey = options["inactivityTimeout"] !== undefined ? "inactivityTimeout" : "chunkTimeout"
  const api = apiOf(id, raw, options)
  const builtIn = Object.hasOwn(builtInProviders, id) && builtInProviders[id]!.api === api ? builtInProviders[id] : undefined
  // A built-in provider needs no URL, and takes its key from the environment when none is given.
  const baseURL = options["baseURL"] ?? (api === "chat-completions" ? undefined : builtIn?.baseURL)
  const apiKey = options["apiKey"] ?? (builtIn !== undefined && context.env[builtIn.keyEnv] ? `{env:${builtIn.keyEnv}}` : undefined)
  return Either.all({
    api: Either.right(api),
    baseURL: parseBaseURL(`${key}.options.baseURL`, baseURL, context),
    apiKey: parseApiKey(`${key}.options.apiKey`, apiKey, context),
    inactivityTimeout: parseInactivityTimeout(`${key}.options.${inactivityKey}`, inactivity, context),
    requestTimeout: parseOptionalDuration(`${key}.options.timeout`, options["timeout"], context),
    headers: parseHeaders(`${key}.options.headers`, options["headers"], context),
    maxRetries: parseMaxRetries(`${key}.options.maxRetries`, options["maxRetries"]),
    models: parseModels(`${key}.models`, models, context)
  }).pipe(Either.map((fields) => ({ id, ...fields, ...(inactivityKey === "chunkTimeout" && inactivity !== undefined ? { inactivityKey } : {}) })))
}

/**
 * Reads the `provider` and `model` keys of an opencode-style config file (the rest belongs to
 * others and is left alone): every entry under `provider` is an OpenAI-compatible endpoint, and
 * `model` (`"<provider>/<name>"`) is the default model. `{env:NAME}` in a value is read from `env`,
 * `{file:path}` relative to `baseDir` (the config file's folder). A bad value fails with a
 * `SettingsError` naming its key; an API key is never part of one. What is read but not taken as
 * written is in `warnings`.
 */
export const parseProviders = (
  file: unknown,
  env: Readonly<Record<string, string | undefined>> = {},
  baseDir: string = process.cwd()
): Either.Either<ProviderConfig, SettingsError> => {
  if (!isRecord(file ?? {})) return Either.left(new SettingsError({ key: "(config file)", value: shown(file), problem: "must be a JSON object" }))
  const context: ParseContext = { env, baseDir, warnings: [] }
  const section = (file as Record<string, unknown> | undefined)?.["provider"] ?? {}
  if (!isRecord(section)) {
    return Either.left(new SettingsError({ key: "provider", value: shown(section), problem: "must be an object keyed by provider id" }))
  }
  const providers: Array<ProviderSettings> = []
  for (const [id, raw] of Object.entries(section)) {
    const parsed = parseProvider(id, raw, context)
    if (Either.isLeft(parsed)) return Either.left(parsed.left)
    providers.push(parsed.right)
  }
  // opencode's built-ins are there when their key is in the environment (`ANTHROPIC_API_KEY`, …).
  for (const [id, builtIn] of Object.entries(builtInProviders)) {
    if (providers.some((provider) => provider.id === id) || !context.env[builtIn.keyEnv]) continue
    const parsed = parseProvider(id, {}, context)
    if (Either.isLeft(parsed)) return Either.left(parsed.left)
    providers.push(parsed.right)
  }
  const model = (file as Record<string, unknown> | undefined)?.["model"]
  const done = (defaultModel: string): ProviderConfig =>
    context.warnings.length === 0 ? { providers, defaultModel } : { providers, defaultModel, warnings: context.warnings }
  if (model === undefined) return Either.right(done(scriptModelName))
  if (typeof model !== "string") {
    return Either.left(new SettingsError({ key: "model", value: model, problem: `must be a string such as "openai/gpt-4o-mini"` }))
  }
  return Either.flatMap(substitute("model", model, context, false), (name) => {
    if (name === scriptModelName) return Either.right(done(name))
    const { provider, model: modelName } = splitModelName(name)
    if (provider === undefined || modelName === "") {
      return Either.left(new SettingsError({ key: "model", value: name, problem: `must be "<provider>/<model>" or "${scriptModelName}"` }))
    }
    if (!providers.some((entry) => entry.id === provider)) {
      return Either.left(
        new SettingsError({
          key: "model",
          value: name,
          problem: `names provider "${provider}", which is not configured under "provider" (configured: ${
            providers.length === 0 ? "none" : providers.map((entry) => entry.id).join(", ")
          })`
        })
      )
    }
    return Either.right(done(name))
  })
}

/** `"openai/gpt-4o-mini"` → provider `openai`, model `gpt-4o-mini`; the model part may hold more `/`s. */
export const splitModelName = (name: string): { readonly provider: string | undefined; readonly model: string } => {
  const slash = name.indexOf("/")
  return slash <= 0 ? { provider: undefined, model: name } : { provider: name.slice(0, slash), model: name.slice(slash + 1) }
}
