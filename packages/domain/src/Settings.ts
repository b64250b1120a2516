import { Data, Duration, Either, Option } from "effect"

/**
 * The supervision settings, read once at start. `Option.none()` means the rule is off
 * (`false` or `0` in the file).
 */
export interface Settings {
  readonly toolTimeout: Option.Option<Duration.Duration>
  readonly taskTimeout: Option.Option<Duration.Duration>
  readonly idleTimeout: Option.Option<Duration.Duration>
  /** How often the watchdog and the idle monitor scan; off stops both. */
  readonly watchdogInterval: Option.Option<Duration.Duration>
  /** How long an instance stays alive without renewing its heartbeat; it renews at a third of it. */
  readonly instanceLease: Duration.Duration
  /** How long an abort may take before the work is abandoned and recorded `AbortIncomplete`. */
  readonly abortGrace: Duration.Duration
  /** Between SIGTERM and SIGKILL in a hard stop of a process tree. */
  readonly killGrace: Duration.Duration
  /** How deep sub-agents may nest: a session this many `task`s below its root cannot start another. */
  readonly maxTaskDepth: number
  /** Which of the server's environment variables a shell inherits (`experimental.shell_env`). */
  readonly shellEnv: ShellEnvPolicy
}

/**
 * Name globs (`*`, `?`; case-insensitive) over the server's environment. By default a shell gets
 * it with secrets removed: vigil's own, the configured provider keys, and names like
 * `*KEY*`, `*SECRET*`, `*TOKEN*`, `*PASSWORD*` (codex's `shell_environment_policy` does the same).
 */
export interface ShellEnvPolicy {
  /** Kept although the defaults would remove them (`["GITHUB_TOKEN"]`). */
  readonly include: ReadonlyArray<string>
  /** Removed as well; wins over `include`. */
  readonly exclude: ReadonlyArray<string>
  /** When set, only these are passed at all (the other rules still apply). */
  readonly includeOnly: Option.Option<ReadonlyArray<string>>
}

export const defaultShellEnv: ShellEnvPolicy = { include: [], exclude: [], includeOnly: Option.none() }

export const defaultSettings: Settings = {
  toolTimeout: Option.some(Duration.minutes(10)),
  taskTimeout: Option.some(Duration.minutes(60)),
  idleTimeout: Option.some(Duration.minutes(30)),
  watchdogInterval: Option.some(Duration.seconds(30)),
  instanceLease: Duration.seconds(30),
  abortGrace: Duration.seconds(5),
  killGrace: Duration.seconds(2),
  maxTaskDepth: 8,
  shellEnv: defaultShellEnv
}

/** One bad value, named by its key, so start-up can stop with one clear line. */
export class SettingsError extends Data.TaggedError("SettingsError")<{
  readonly key: string
  readonly value: unknown
  readonly problem: string
}> {
  override get message(): string {
    return `invalid config: ${this.key} = ${showValue(this.value)}: ${this.problem}`
  }
}

const showValue = (value: unknown): string => {
  if (value === undefined) return "undefined"
  // JSON.stringify writes a non-finite number as `null`: a file's `1e309` is read as Infinity,
  // and the line must say so, not `= null`.
  if (typeof value === "number" && !Number.isFinite(value)) return String(value)
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

interface KeySpec {
  readonly field: Exclude<keyof Settings, "shellEnv">
  readonly env: string
  /** Whether `false`/`0` may turn the rule off. */
  readonly canDisable: boolean
  /** A whole number (a count), not a duration. */
  readonly count?: true
  /** The least value taken, with why: below it the rule does harm. */
  readonly floor?: { readonly millis: number; readonly why: string }
}

/**
 * The least `instance_lease`. A lease is renewed at a third of it, and a peer declares the
 * instance dead (and ends its parts, kills its shells) once it expires. At 1 ms the idle server
 * renewed thousands of times a second (39% of a core); under 2 s, a GC pause or a slow disk on a
 * loaded machine is enough to miss three renewals and look dead while alive. At 2 s it renews
 * every ~667 ms, a few cheap writes a second, and the chaos suite runs at exactly this lease.
 */
const minInstanceLeaseMillis = 2_000

/** The keys under `experimental`, named as opencode names them, with their environment overrides. */
export const settingsKeys: Readonly<Record<string, KeySpec>> = {
  tool_timeout: { field: "toolTimeout", env: "VIGIL_TOOL_TIMEOUT", canDisable: true },
  task_timeout: { field: "taskTimeout", env: "VIGIL_TASK_TIMEOUT", canDisable: true },
  idle_timeout: { field: "idleTimeout", env: "VIGIL_IDLE_TIMEOUT", canDisable: true },
  watchdog_interval: { field: "watchdogInterval", env: "VIGIL_WATCHDOG_INTERVAL", canDisable: true },
  instance_lease: {
    field: "instanceLease",
    env: "VIGIL_INSTANCE_LEASE",
    canDisable: false,
    floor: {
      millis: minInstanceLeaseMillis,
      why: "a shorter lease makes a live instance look dead after a short pause, and renewing it costs CPU"
    }
  },
  abort_grace: { field: "abortGrace", env: "VIGIL_ABORT_GRACE", canDisable: false },
  kill_grace: { field: "killGrace", env: "VIGIL_KILL_GRACE", canDisable: false },
  max_task_depth: { field: "maxTaskDepth", env: "VIGIL_MAX_TASK_DEPTH", canDisable: false, count: true }
}

/**
 * A count setting: a positive whole number (or such a string, as the environment gives it). It
 * cannot be off: a bound on sub-agent nesting that can be lifted is what let a model recurse forever.
 */
const parseCount = (value: unknown): Either.Either<number, string> => {
  const number = typeof value === "number" ? value : typeof value === "string" && /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN
  if (typeof value !== "number" && typeof value !== "string") {
    return Either.left(`expected a positive whole number (got ${value === null ? "null" : Array.isArray(value) ? "an array" : typeof value})`)
  }
  if (!Number.isSafeInteger(number) || number < 1) return Either.left("must be a whole number of at least 1")
  return Either.right(number)
}

/** The key of the shell environment policy, which is an object, not a duration. */
const shellEnvKey = "shell_env"
const shellEnvFields: Readonly<Record<string, keyof ShellEnvPolicy>> = { include: "include", exclude: "exclude", include_only: "includeOnly" }

/** `experimental.shell_env`: `{ include?, exclude?, include_only? }`, each a list of name globs. */
const parseShellEnv = (value: unknown): Either.Either<ShellEnvPolicy, SettingsError> => {
  const key = `experimental.${shellEnvKey}`
  if (!isRecord(value)) {
    return Either.left(new SettingsError({ key, value, problem: `must be an object such as { "include": ["GITHUB_TOKEN"], "exclude": ["AWS_*"] }` }))
  }
  const policy: { -readonly [K in keyof ShellEnvPolicy]: ShellEnvPolicy[K] } = { ...defaultShellEnv }
  for (const [name, list] of Object.entries(value)) {
    const field = Object.hasOwn(shellEnvFields, name) ? shellEnvFields[name] : undefined
    if (field === undefined) {
      return Either.left(
        new SettingsError({ key: `${key}.${name}`, value: list, problem: `unknown key (known: ${Object.keys(shellEnvFields).join(", ")})` })
      )
    }
    if (!Array.isArray(list) || !list.every((glob) => typeof glob === "string" && glob !== "")) {
      return Either.left(new SettingsError({ key: `${key}.${name}`, value: list, problem: `must be a list of variable names or globs, such as ["AWS_*"]` }))
    }
    if (field === "includeOnly") policy.includeOnly = Option.some(list as Array<string>)
    else policy[field] = list as Array<string>
  }
  return Either.right(policy)
}

const unitMillis: ReadonlyArray<readonly [RegExp, number]> = [
  [/^(ms|msecs?|millis|milliseconds?)$/, 1],
  [/^(s|secs?|seconds?)$/, 1_000],
  [/^(m|mins?|minutes?)$/, 60_000],
  [/^(h|hrs?|hours?)$/, 3_600_000],
  [/^(d|days?)$/, 86_400_000]
]

/**
 * A duration setting: a number of milliseconds, a string such as `"90 seconds"`, `"5m"`,
 * `"1.5 hours"` or `"250"` (ms); `false` or `0` is off. `None` = off.
 */
export const parseDuration = (value: unknown): Either.Either<Option.Option<Duration.Duration>, string> => {
  if (value === false) return Either.right(Option.none())
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return Either.left("not a finite number of milliseconds")
    if (value < 0) return Either.left("must not be negative")
    return fromMillis(value)
  }
  if (typeof value !== "string") {
    return Either.left(
      `expected a number of milliseconds, a duration string such as "90 seconds" or "5m", or false (got ${
        value === null ? "null" : Array.isArray(value) ? "an array" : typeof value
      })`
    )
  }
  const text = value.trim().toLowerCase()
  if (text === "false" || text === "off") return Either.right(Option.none())
  const match = /^(-?\d+(?:\.\d+)?)\s*([a-z]*)$/.exec(text)
  if (match === null) return Either.left(`cannot read it as a duration (try "90 seconds", "5m" or 5000)`)
  const amount = Number(match[1])
  const unit = match[2] ?? ""
  if (amount < 0) return Either.left("must not be negative")
  const factor = unit === "" ? 1 : unitMillis.find(([pattern]) => pattern.test(unit))?.[1]
  if (factor === undefined) return Either.left(`unknown unit ${JSON.stringify(unit)} (use ms, s, m, h or d)`)
  return fromMillis(amount * factor)
}

/**
 * Zero is off; anything else must be a whole-millisecond-scale, finite duration: a value that
 * would round to zero (and so silently turn a rule off, or make a lease expire at once) is refused.
 */
const fromMillis = (millis: number): Either.Either<Option.Option<Duration.Duration>, string> => {
  if (!Number.isFinite(millis)) return Either.left("must be a finite duration")
  if (millis === 0) return Either.right(Option.none())
  if (millis < 1) return Either.left("must be at least 1 ms (or 0 / false to turn the rule off)")
  return Either.right(Option.some(Duration.millis(millis)))
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * Reads the `experimental` section of a config file (other top-level keys belong to other parts of
 * an opencode-style config and are left alone), then the environment overrides, which win.
 */
export const parseSettings = (
  file: unknown,
  env: Readonly<Record<string, string | undefined>> = {}
): Either.Either<Settings, SettingsError> => {
  if (file !== undefined && !isRecord(file)) {
    return Either.left(new SettingsError({ key: "(config file)", value: file, problem: "must be a JSON object" }))
  }
  const experimental = file?.["experimental"]
  if (experimental !== undefined && !isRecord(experimental)) {
    return Either.left(new SettingsError({ key: "experimental", value: experimental, problem: "must be an object" }))
  }
  const result: { -readonly [K in keyof Settings]: Settings[K] } = { ...defaultSettings }
  const apply = (key: string, spec: KeySpec, value: unknown): SettingsError | undefined => {
    if (spec.count) {
      const count = parseCount(value)
      if (Either.isLeft(count)) return new SettingsError({ key, value, problem: count.left })
      ;(result as Record<string, unknown>)[spec.field] = count.right
      return undefined
    }
    const parsed = parseDuration(value)
    if (Either.isLeft(parsed)) return new SettingsError({ key, value, problem: parsed.left })
    const duration = parsed.right
    if (spec.canDisable) {
      ;(result as Record<string, unknown>)[spec.field] = duration
      return undefined
    }
    if (Option.isNone(duration)) return new SettingsError({ key, value, problem: "cannot be turned off" })
    if (spec.floor !== undefined && Duration.toMillis(duration.value) < spec.floor.millis) {
      return new SettingsError({
        key,
        value,
        problem: `must be at least ${Duration.format(Duration.millis(spec.floor.millis))} (${spec.floor.why})`
      })
    }
    ;(result as Record<string, unknown>)[spec.field] = duration.value
    return undefined
  }
  for (const [key, value] of Object.entries(experimental ?? {})) {
    if (key === shellEnvKey) {
      const policy = parseShellEnv(value)
      if (Either.isLeft(policy)) return Either.left(policy.left)
      result.shellEnv = policy.right
      continue
    }
    // Own keys only: `__proto__` or `constructor` must not find Object.prototype's members.
    const spec = Object.hasOwn(settingsKeys, key) ? settingsKeys[key] : undefined
    if (spec === undefined) {
      // opencode keeps many keys of its own here (`batch_tool`, …): those are noted, not fatal
      // (`settingsNotes`). A near miss of one of vigil's keys is a typo, and a rule silently off.
      const near = nearKey(key)
      if (near === undefined) continue
      return Either.left(
        new SettingsError({
          key: `experimental.${key}`,
          value,
          problem: `unknown key; did you mean ${near}? (vigil's keys: ${vigilExperimentalKeys().join(", ")})`
        })
      )
    }
    const error = apply(`experimental.${key}`, spec, value)
    if (error) return Either.left(error)
  }
  for (const spec of Object.values(settingsKeys)) {
    const value = env[spec.env]
    if (value === undefined || value === "") continue
    const error = apply(spec.env, spec, value)
    if (error) return Either.left(error)
  }
  return Either.right(result)
}

const vigilExperimentalKeys = () => [...Object.keys(settingsKeys), shellEnvKey]

/** The edit distance between two short keys (insert, delete, substitute one character). */
const distance = (a: string, b: string): number => {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]!
}

/** The vigil key an unknown key is a typo of (two edits or fewer, or the same in another case or separator). */
const nearKey = (key: string): string | undefined => {
  const plain = (text: string) => text.toLowerCase().replace(/[-_]/g, "")
  return vigilExperimentalKeys().find((known) => plain(known) === plain(key) || distance(known, key) <= 2)
}

/**
 * What start-up says about an `experimental` section it accepted but does not take whole:
 * opencode's own `experimental.*` keys, and keys vigil does not know (the file's other keys are
 * the config file's to note: server/src/ConfigFile.ts).
 */
export const settingsNotes = (file: unknown): ReadonlyArray<string> => {
  if (!isRecord(file)) return []
  const experimental = file["experimental"]
  if (!isRecord(experimental)) return []
  const foreign = Object.keys(experimental).filter((key) => !Object.hasOwn(settingsKeys, key) && key !== shellEnvKey)
  return foreign.length === 0 ? [] : [
    `experimental.${foreign.join(", experimental.")}: not vigil's (opencode's, or unknown); ignored. vigil's keys: ${
      vigilExperimentalKeys().join(", ")
    }`
  ]
}
