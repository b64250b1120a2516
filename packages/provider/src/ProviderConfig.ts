import { parseDuration, SettingsError } from "@vigil/domain"
import { readConfigFile } from "@vigil/runtime"
import { Duration, Effect, Either, Option, Redacted } from "effect"

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
  /** The names listed under `provider.<id>.models`; any other name of this provider works too. */
  readonly models: ReadonlyArray<string>
}

export interface ProviderConfig {
  readonly providers: ReadonlyArray<ProviderSettings>
  /** `model` in the file (`"openai/gpt-4o-mini"`): what a prompt that names none runs on. */
  readonly defaultModel: string
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

const envReference = /\{env:([^}]*)\}/g

/** `{env:NAME}` in a string value, as opencode reads it; an unset variable is an error, not "". */
const substitute = (
  key: string,
  value: string,
  env: Readonly<Record<string, string | undefined>>,
  secret: boolean
): Either.Either<string, SettingsError> => {
  let missing: string | undefined
  const result = value.replace(envReference, (_match, name: string) => {
    const found = Object.hasOwn(env, name) ? env[name] : undefined
    if (found === undefined && missing === undefined) missing = name
    return found ?? ""
  })
  if (missing === undefined) return Either.right(result)
  return Either.left(
    new SettingsError({
      key,
      value: secret ? hidden(value) : value,
      problem: missing === ""
        ? "an {env:NAME} reference needs a variable name"
        : `the environment variable ${missing} is not set (set it, or remove the reference)`
    })
  )
}

const parseBaseURL = (key: string, raw: unknown, env: Readonly<Record<string, string | undefined>>) => {
  if (raw === undefined) {
    return Either.left(new SettingsError({ key, value: raw, problem: `missing: the endpoint's base URL, such as "http://127.0.0.1:8080/v1"` }))
  }
  if (typeof raw !== "string") return Either.left(new SettingsError({ key, value: raw, problem: "must be a string (a URL)" }))
  return Either.flatMap(substitute(key, raw, env, false), (text) => {
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

const parseApiKey = (key: string, raw: unknown, env: Readonly<Record<string, string | undefined>>) => {
  if (raw === undefined) return Either.right(Option.none<Redacted.Redacted<string>>())
  // The value is never shown: a key put in the wrong place (a number, an object) is still a key.
  if (typeof raw !== "string") {
    return Either.left(new SettingsError({ key, value: hidden(raw), problem: `must be a string (such as "{env:OPENAI_API_KEY}")` }))
  }
  return Either.map(
    substitute(key, raw, env, true),
    (text) => (text === "" ? Option.none() : Option.some(Redacted.make(text)))
  )
}

const parseInactivityTimeout = (key: string, raw: unknown, env: Readonly<Record<string, string | undefined>>) => {
  if (raw === undefined) return Either.right(Option.some(defaultInactivityTimeout))
  const value = typeof raw === "string" ? substitute(key, raw, env, false) : Either.right<unknown>(raw)
  return Either.flatMap(value, (value) =>
    Either.mapLeft(parseDuration(value), (problem) => new SettingsError({ key, value, problem })))
}

const parseProvider = (
  id: string,
  raw: unknown,
  env: Readonly<Record<string, string | undefined>>
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
  return Either.all({
    baseURL: parseBaseURL(`${key}.options.baseURL`, options["baseURL"], env),
    apiKey: parseApiKey(`${key}.options.apiKey`, options["apiKey"], env),
    inactivityTimeout: parseInactivityTimeout(`${key}.options.inactivityTimeout`, options["inactivityTimeout"], env)
  }).pipe(Either.map((fields) => ({ id, ...fields, models: Object.keys(models) })))
}

/**
 * Reads the `provider` and `model` keys of an opencode-style config file (the rest belongs to
 * others and is left alone): every entry under `provider` is an OpenAI-compatible endpoint, and
 * `model` (`"<provider>/<name>"`) is the default model. `{env:NAME}` in a value is read from `env`.
 * A bad value fails with a `SettingsError` naming its key; an API key is never part of one.
 */
export const parseProviders = (
  file: unknown,
  env: Readonly<Record<string, string | undefined>> = {}
): Either.Either<ProviderConfig, SettingsError> => {
  if (file === undefined) return Either.right(noProviders)
  if (!isRecord(file)) return Either.left(new SettingsError({ key: "(config file)", value: shown(file), problem: "must be a JSON object" }))
  const section = file["provider"] ?? {}
  if (!isRecord(section)) {
    return Either.left(new SettingsError({ key: "provider", value: shown(section), problem: "must be an object keyed by provider id" }))
  }
  const providers: Array<ProviderSettings> = []
  for (const [id, raw] of Object.entries(section)) {
    const parsed = parseProvider(id, raw, env)
    if (Either.isLeft(parsed)) return Either.left(parsed.left)
    providers.push(parsed.right)
  }
  const model = file["model"]
  if (model === undefined) return Either.right({ providers, defaultModel: scriptModelName })
  if (typeof model !== "string") {
    return Either.left(new SettingsError({ key: "model", value: model, problem: `must be a string such as "openai/gpt-4o-mini"` }))
  }
  return Either.flatMap(substitute("model", model, env, false), (name) => {
    if (name === scriptModelName) return Either.right({ providers, defaultModel: name })
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
    return Either.right({ providers, defaultModel: name })
  })
}

/** `"openai/gpt-4o-mini"` → provider `openai`, model `gpt-4o-mini`; the model part may hold more `/`s. */
export const splitModelName = (name: string): { readonly provider: string | undefined; readonly model: string } => {
  const slash = name.indexOf("/")
  return slash <= 0 ? { provider: undefined, model: name } : { provider: name.slice(0, slash), model: name.slice(slash + 1) }
}

/**
 * Reads the providers from `vigil.json` (or `path`) and the process environment, as `loadSettings`
 * reads the settings: a missing file at the default path means none; a file named explicitly must exist.
 */
export const loadProviders = (options: { readonly path: string; readonly explicit: boolean }) =>
  Effect.gen(function*() {
    const file = yield* readConfigFile(options)
    const env = yield* Effect.sync(() => ({ ...process.env }))
    return yield* Either.match(parseProviders(file, env), { onLeft: Effect.fail, onRight: Effect.succeed })
  })
