import type { Settings as SettingsShape } from "@vigil/domain"
import { defaultSettings, parseSettings, settingsKeys, SettingsError } from "@vigil/domain"
import { Config, Context, Effect, Either, Layer, Option } from "effect"
import { readFile } from "node:fs/promises"

/** The supervision settings in force, read once at start. */
export class Settings extends Context.Tag("vigil/Settings")<Settings, SettingsShape>() {
  static readonly layer = (settings: Partial<SettingsShape> = {}) =>
    Layer.succeed(Settings, { ...defaultSettings, ...settings })
}

/**
 * The config file's JSON (`undefined` when there is none): a missing file at the default path is no
 * file; a file named explicitly must exist. Shared by every reader of `vigil.json` (the settings,
 * the providers), so they fail alike, with a `SettingsError` naming the file.
 */
export const readConfigFile = (options: { readonly path: string; readonly explicit: boolean }) =>
  Effect.gen(function*() {
    const text = yield* Effect.tryPromise(() => readFile(options.path, "utf8")).pipe(
      Effect.map(Option.some),
      Effect.catchAll((error) =>
        !options.explicit && (error.error as NodeJS.ErrnoException)?.code === "ENOENT"
          ? Effect.succeed(Option.none<string>())
          : Effect.fail(
            new SettingsError({ key: "(config file)", value: options.path, problem: `cannot be read: ${String(error.error)}` })
          )
      )
    )
    return yield* Option.match(text, {
      onNone: () => Effect.succeed(undefined as unknown),
      onSome: (content) =>
        Effect.try({
          try: () => JSON.parse(content) as unknown,
          catch: (error) =>
            new SettingsError({ key: "(config file)", value: options.path, problem: `is not valid JSON: ${String(error)}` })
        })
    })
  })

/**
 * Reads `vigil.json` (or `path`) and the environment overrides (`VIGIL_TOOL_TIMEOUT`, …) through
 * Effect's Config. A missing file at the default path means defaults; a file named explicitly must
 * exist. Any bad value fails with a `SettingsError` naming the key and the value.
 */
export const loadSettings = (options: { readonly path: string; readonly explicit: boolean }) =>
  Effect.gen(function*() {
    const file = yield* readConfigFile(options)
    const env: Record<string, string | undefined> = {}
    for (const spec of Object.values(settingsKeys)) {
      const value = yield* Config.option(Config.string(spec.env)).pipe(Effect.orElseSucceed(() => Option.none()))
      if (Option.isSome(value)) env[spec.env] = value.value
    }
    return yield* Either.match(parseSettings(file, env), { onLeft: Effect.fail, onRight: Effect.succeed })
  })

export const SettingsFromFile = (options: { readonly path: string; readonly explicit: boolean }) =>
  Layer.effect(Settings, loadSettings(options))
