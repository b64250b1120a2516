import type { Settings } from "@vigil/domain"
import { parseSettings, SettingsError, settingsKeys, settingsNotes } from "@vigil/domain"
import type { ProviderConfig } from "@vigil/provider"
import { Config, Effect, Either, Option } from "effect"
import { existsSync, statSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { dirname, resolve } from "node:path"
import { configCandidates, defaultConfig } from "./Defaults.js"

/**
 * The config file, in one place: which file (named, else the first of `configCandidates`), read
 * once at a process's start (JSONC), and its shape: `experimental` holds vigil's rules (the
 * settings), `provider` and `model` the models, and the rest of an opencode config is noted, not
 * used. The settings and the providers are both derived from the one parsed value, so they can never
 * come from two reads of a file that changed (or a pipe, `--config <(…)`, that reads once).
 */
export interface ConfigFile {
  /** Relative to the working directory, as named or found (`vigil.json` when there is none). */
  readonly path: string
  /** Named by `--config` / `VIGIL_CONFIG` (it must exist), not found among the candidates. */
  readonly named: boolean
  /** Whether there is a file (a missing default file means the defaults). */
  readonly found: boolean
  /** The file's JSON; `undefined` when there is none. */
  readonly json: unknown
  /**
   * Every file the next start would read instead, were it there (or now, the one read): the one
   * named, else the candidates up to the one found, or all of them when none was. The tools must
   * not reach any of them: a tool that wrote a `vigil.json` beside the `opencode.json` in use chose
   * the next start's providers and keys.
   */
  readonly readAtNextStart: ReadonlyArray<string>
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

/** The file named, else the first candidate that is a file, else the default (read if it is there after all). */
const choose = (named: Option.Option<string>): { readonly path: string; readonly named: boolean } =>
  Option.isSome(named)
    ? { path: named.value, named: true }
    : { path: configCandidates.find((candidate) => existsSync(candidate) && statSync(candidate).isFile()) ?? defaultConfig, named: false }

/**
 * The one read of the config file. A missing default file is no file; a file named explicitly
 * must exist. A file that cannot be read, or is not JSON(C), fails with a `SettingsError` naming it.
 */
export const readConfigFile = (named: Option.Option<string>): Effect.Effect<ConfigFile, SettingsError> =>
  Effect.gen(function*() {
    const choice = choose(named)
    const text = yield* Effect.tryPromise(() => readFile(choice.path, "utf8")).pipe(
      Effect.map(Option.some),
      Effect.catchAll((error) =>
        !choice.named && (error.error as NodeJS.ErrnoException)?.code === "ENOENT"
          ? Effect.succeed(Option.none<string>())
          : Effect.fail(
            new SettingsError({ key: "(config file)", value: choice.path, problem: `cannot be read: ${String(error.error)}` })
          )
      )
    )
    const readAtNextStart = choice.named ? [choice.path] : configCandidates.slice(0, configCandidates.indexOf(choice.path) + 1)
    if (Option.isNone(text)) return { ...choice, found: false, json: undefined, readAtNextStart: configCandidates }
    const json = yield* Effect.try({
      try: () => JSON.parse(stripJsonc(text.value)) as unknown,
      catch: (error) =>
        new SettingsError({
          key: "(config file)",
          value: choice.path,
          problem: `is not valid JSON (comments and trailing commas are fine): ${String(error)}`
        })
    })
    return { ...choice, found: true, json, readAtNextStart }
  })

/** The settings: `experimental`, then the environment overrides (`VIGIL_TOOL_TIMEOUT`, …), which win. */
export const settingsOf = (file: ConfigFile): Effect.Effect<Settings, SettingsError> =>
  Effect.gen(function*() {
    const env: Record<string, string | undefined> = {}
    for (const spec of Object.values(settingsKeys)) {
      const value = yield* Config.option(Config.string(spec.env)).pipe(Effect.orElseSucceed(() => Option.none()))
      if (Option.isSome(value)) env[spec.env] = value.value
    }
    return yield* Either.match(parseSettings(file.json, env), { onLeft: Effect.fail, onRight: Effect.succeed })
  })

/**
 * The providers' package, loaded when they are read: a bad setting is reported before the models'
 * modules (and the runtime behind them) load, as the CLI's `lazy` does for each command (issue 17:
 * a bad config reported under 1 s).
 */
const Provider = Effect.promise(() => import("@vigil/provider"))

/** The providers: `provider` and `model`; `{env:NAME}` from the environment, `{file:path}` beside the file. */
export const providersOf = (file: ConfigFile): Effect.Effect<ProviderConfig, SettingsError> =>
  Effect.flatMap(Effect.all([Provider, Effect.sync(() => ({ ...process.env }))]), ([{ parseProviders }, env]) =>
    Either.match(parseProviders(file.json, env, dirname(resolve(file.path))), { onLeft: Effect.fail, onRight: Effect.succeed }))

/**
 * The top-level keys of an opencode config that vigil reads no rule from: accepted as they are
 * (a user's `opencode.json` works unchanged), and noted once at start.
 */
const opencodeKeys: ReadonlySet<string> = new Set([
  "$schema", "agent", "mcp", "permission", "theme", "keybinds", "tui", "share", "autoshare", "autoupdate", "instructions",
  "lsp", "formatter", "small_model", "username", "tools", "mode", "plugin", "snapshot", "disabled_providers",
  "enabled_providers", "layout", "command", "watcher", "server", "enterprise", "compaction"
])

/** The keys of the file vigil reads: `experimental` (the settings), `provider` and `model` (the providers). */
const vigilKeys: ReadonlySet<string> = new Set(["experimental", "provider", "model"])

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * What start-up says about a file it accepted but does not take whole: opencode's own
 * `experimental.*` keys, opencode keys vigil has no use for, and keys it does not know at all.
 */
export const configNotes = (json: unknown): ReadonlyArray<string> => {
  if (!isRecord(json)) return []
  const notes = [...settingsNotes(json)]
  const ignored = Object.keys(json).filter((key) => opencodeKeys.has(key) && key !== "$schema")
  if (ignored.length > 0) notes.push(`${ignored.join(", ")}: opencode settings vigil does not use; ignored`)
  const unknown = Object.keys(json).filter((key) => !opencodeKeys.has(key) && !vigilKeys.has(key))
  if (unknown.length > 0) notes.push(`${unknown.join(", ")}: unknown keys; ignored`)
  return notes
}

/**
 * What start-up says about the file, once it can go on (a start-up that cannot says so in its one
 * line alone): which file (with no file, only at debug level), what in it vigil does not use, and,
 * given the providers, what was not taken as written (an unset `{env:NAME}`).
 */
export const announceConfig = (file: ConfigFile, providers?: ProviderConfig): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (file.found) yield* Effect.logInfo(`config: ${file.path}${file.named ? " (named)" : ""}`)
    else yield* Effect.logDebug(`config: no file (looked for ${configCandidates.join(", ")}); defaults`)
    for (const note of configNotes(file.json)) yield* Effect.logInfo(`config ${file.path}: ${note}`)
    for (const warning of providers?.warnings ?? []) yield* Effect.logWarning(`config ${file.path}: ${warning}`)
  })
