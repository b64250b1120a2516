import type { Settings as SettingsShape } from "@vigil/domain"
import { defaultSettings, parseSettings, settingsKeys, SettingsError, settingsNotes } from "@vigil/domain"
import { Config, Context, Effect, Either, Layer, Option } from "effect"
import { readFile } from "node:fs/promises"

/** The supervision settings in force, read once at start. */
export class Settings extends Context.Tag("vigil/Settings")<Settings, SettingsShape>() {
  static readonly layer = (settings: Partial<SettingsShape> = {}) =>
    Layer.succeed(Settings, { ...defaultSettings, ...settings })
}

/**
 * JSONC as opencode reads its config: `//` and `/* … *\/` comments and trailing commas removed,
 * strings left as they are. Each comment becomes spaces (and its newlines stay), so a JSON error
 * still points at the right place.
 */
export const stripJsonc = (text: string): string => {
  let out = ""
  let i = 0
  // Where a comma was written, to drop it if a `}` or `]` follows with only space or comments between.
  let pendingComma = -1
  while (i < text.length) {
    const char = text[i]!
    if (char === "\"") {
      let end = i + 1
      while (end < text.length && text[end] !== "\"") end += text[end] === "\\" ? 2 : 1
      out += text.slice(i, end + 1)
      i = end + 1
      pendingComma = -1
    } else if (char === "/" && text[i + 1] === "/") {
      const end = text.indexOf("\n", i)
      const stop = end < 0 ? text.length : end
      out += " ".repeat(stop - i)
      i = stop
    } else if (char === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2)
      const stop = end < 0 ? text.length : end + 2
      out += text.slice(i, stop).replace(/[^\n]/g, " ")
      i = stop
    } else if (char === ",") {
      pendingComma = out.length
      out += char
      i++
    } else if ((char === "}" || char === "]") && pendingComma >= 0) {
      out = `${out.slice(0, pendingComma)} ${out.slice(pendingComma + 1)}${char}`
      pendingComma = -1
      i++
    } else {
      if (!/\s/.test(char)) pendingComma = -1
      out += char
      i++
    }
  }
  return out
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
          try: () => JSON.parse(stripJsonc(content)) as unknown,
          catch: (error) =>
            new SettingsError({ key: "(config file)", value: options.path, problem: `is not valid JSON (comments and trailing commas are fine): ${String(error)}` })
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
    const settings = yield* Either.match(parseSettings(file, env), { onLeft: Effect.fail, onRight: Effect.succeed })
    for (const note of settingsNotes(file)) yield* Effect.logInfo(`config ${options.path}: ${note}`)
    return settings
  })

export const SettingsFromFile = (options: { readonly path: string; readonly explicit: boolean }) =>
  Layer.effect(Settings, loadSettings(options))
