import { assert, describe, it } from "@effect/vitest"
import { defaultSettings, parseDuration, parseSettings, SettingsError, settingsNotes } from "@vigil/domain"
import type { Settings } from "@vigil/domain"
import { Duration, Effect, Either, Option } from "effect"

/** Milliseconds of a setting, `null` when the rule is off: exact numbers compare better than Durations. */
const millisOf = (value: Option.Option<Duration.Duration> | Duration.Duration): number | null =>
  Option.isOption(value) ? Option.match(value, { onNone: () => null, onSome: Duration.toMillis }) : Duration.toMillis(value)

const summary = (settings: Settings) => ({
  toolTimeout: millisOf(settings.toolTimeout),
  taskTimeout: millisOf(settings.taskTimeout),
  idleTimeout: millisOf(settings.idleTimeout),
  watchdogInterval: millisOf(settings.watchdogInterval),
  instanceLease: millisOf(settings.instanceLease),
  abortGrace: millisOf(settings.abortGrace),
  killGrace: millisOf(settings.killGrace),
  maxTaskDepth: settings.maxTaskDepth
})

const defaults = {
  toolTimeout: 10 * 60_000,
  taskTimeout: 60 * 60_000,
  idleTimeout: 30 * 60_000,
  watchdogInterval: 30_000,
  instanceLease: 30_000,
  abortGrace: 5_000,
  killGrace: 2_000,
  maxTaskDepth: 8
}

const parsed = (file: unknown, env: Record<string, string | undefined> = {}) =>
  Either.match(parseSettings(file, env), {
    onLeft: (error) => assert.fail(`expected settings, got: ${error.message}`),
    onRight: summary
  })

const rejected = (file: unknown, env: Record<string, string | undefined> = {}): SettingsError =>
  Either.match(parseSettings(file, env), {
    onLeft: (error) => error,
    onRight: (settings) => assert.fail(`expected a SettingsError, got ${JSON.stringify(summary(settings))}`)
  })

/** The tool timeout read from `experimental.tool_timeout = value`. */
const toolTimeoutFrom = (value: unknown) => parsed({ experimental: { tool_timeout: value } }).toolTimeout

const expectedTypes = `expected a number of milliseconds, a duration string such as "90 seconds" or "5m", or false`
const knownKeys = "tool_timeout, task_timeout, idle_timeout, watchdog_interval, instance_lease, abort_grace, kill_grace, max_task_depth, shell_env"

describe("parseSettings: accepted values", () => {
  it("a number is milliseconds", () => {
    assert.strictEqual(toolTimeoutFrom(5000), 5000)
    assert.strictEqual(toolTimeoutFrom(1), 1)
  })

  it("0 and false turn a rule off", () => {
    assert.strictEqual(toolTimeoutFrom(0), null)
    assert.strictEqual(toolTimeoutFrom(false), null)
    const settings = Either.getOrThrow(parseSettings({ experimental: { idle_timeout: false, watchdog_interval: 0 } }))
    assert.isTrue(Option.isNone(settings.idleTimeout))
    assert.isTrue(Option.isNone(settings.watchdogInterval))
    // the other rules keep their defaults
    assert.strictEqual(millisOf(settings.toolTimeout), defaults.toolTimeout)
  })

  it("duration strings in every documented form", () => {
    assert.strictEqual(toolTimeoutFrom("90 seconds"), 90_000)
    assert.strictEqual(toolTimeoutFrom("5m"), 300_000)
    assert.strictEqual(toolTimeoutFrom("1.5 hours"), 5_400_000)
    assert.strictEqual(toolTimeoutFrom("250"), 250)
    assert.strictEqual(toolTimeoutFrom("2 s"), 2_000)
    assert.strictEqual(toolTimeoutFrom("10 minutes"), 600_000)
    assert.strictEqual(toolTimeoutFrom("300ms"), 300)
    assert.strictEqual(toolTimeoutFrom("1 day"), 86_400_000)
    assert.strictEqual(toolTimeoutFrom("  3 Min  "), 180_000)
  })

  it("\"off\", \"false\" and \"0\" strings turn a rule off", () => {
    assert.strictEqual(toolTimeoutFrom("off"), null)
    assert.strictEqual(toolTimeoutFrom("false"), null)
    assert.strictEqual(toolTimeoutFrom("0"), null)
    assert.strictEqual(toolTimeoutFrom("0 seconds"), null)
  })

  it("every key under experimental is read into its own field", () => {
    assert.deepStrictEqual(
      parsed({
        experimental: {
          tool_timeout: "1m",
          task_timeout: "2m",
          idle_timeout: "3m",
          watchdog_interval: "4s",
          instance_lease: "5s",
          abort_grace: 600,
          kill_grace: "700ms",
          max_task_depth: 3
        }
      }),
      {
        toolTimeout: 60_000,
        taskTimeout: 120_000,
        idleTimeout: 180_000,
        watchdogInterval: 4_000,
        instanceLease: 5_000,
        abortGrace: 600,
        killGrace: 700,
        maxTaskDepth: 3
      }
    )
  })

  it("max_task_depth is a positive whole number, from the file or VIGIL_MAX_TASK_DEPTH", () => {
    assert.strictEqual(parsed({ experimental: { max_task_depth: 12 } }).maxTaskDepth, 12)
    assert.strictEqual(parsed({ experimental: { max_task_depth: 12 } }, { VIGIL_MAX_TASK_DEPTH: " 4 " }).maxTaskDepth, 4)
    assert.strictEqual(
      rejected({ experimental: { max_task_depth: 0 } }).message,
      "invalid config: experimental.max_task_depth = 0: must be a whole number of at least 1"
    )
    assert.strictEqual(
      rejected({ experimental: { max_task_depth: 2.5 } }).message,
      "invalid config: experimental.max_task_depth = 2.5: must be a whole number of at least 1"
    )
    assert.strictEqual(
      rejected({ experimental: { max_task_depth: false } }).message,
      "invalid config: experimental.max_task_depth = false: expected a positive whole number (got boolean)"
    )
    assert.strictEqual(
      rejected(undefined, { VIGIL_MAX_TASK_DEPTH: "deep" }).message,
      "invalid config: VIGIL_MAX_TASK_DEPTH = \"deep\": must be a whole number of at least 1"
    )
  })

  it("defaults when there is no file, an empty file, or no experimental section", () => {
    assert.deepStrictEqual(parsed(undefined), defaults)
    assert.deepStrictEqual(parsed({}), defaults)
    assert.deepStrictEqual(parsed({ experimental: {} }), defaults)
    assert.deepStrictEqual(summary(defaultSettings), defaults)
  })

  it("other top-level keys of an opencode config are ignored", () => {
    assert.deepStrictEqual(
      parsed({
        $schema: "https://opencode.ai/config.json",
        provider: { anthropic: { options: { apiKey: "{env:ANTHROPIC_API_KEY}" } } },
        model: "anthropic/claude-sonnet-4",
        experimental: { tool_timeout: "90 seconds" }
      }),
      { ...defaults, toolTimeout: 90_000 }
    )
  })

  it("environment overrides win over the file", () => {
    assert.deepStrictEqual(
      parsed(
        { experimental: { tool_timeout: "5m", idle_timeout: "1m" } },
        { VIGIL_TOOL_TIMEOUT: "90 seconds", VIGIL_TASK_TIMEOUT: "2h" }
      ),
      { ...defaults, toolTimeout: 90_000, taskTimeout: 7_200_000, idleTimeout: 60_000 }
    )
  })

  it("environment values \"off\" and \"false\" turn a rule off; an empty one is ignored", () => {
    assert.deepStrictEqual(
      parsed(
        { experimental: { tool_timeout: "5m", task_timeout: "7m" } },
        { VIGIL_TOOL_TIMEOUT: "off", VIGIL_IDLE_TIMEOUT: "false", VIGIL_TASK_TIMEOUT: "", VIGIL_WATCHDOG_INTERVAL: "0" }
      ),
      { ...defaults, toolTimeout: null, idleTimeout: null, taskTimeout: 420_000, watchdogInterval: null }
    )
  })
})

describe("parseSettings: rejected values", () => {
  const cases: ReadonlyArray<readonly [string, unknown, string]> = [
    ["a negative number", { experimental: { tool_timeout: -5 } }, "invalid config: experimental.tool_timeout = -5: must not be negative"],
    [
      "a negative string",
      { experimental: { task_timeout: "-5 seconds" } },
      `invalid config: experimental.task_timeout = "-5 seconds": must not be negative`
    ],
    [
      "an unparsable string",
      { experimental: { idle_timeout: "soon" } },
      `invalid config: experimental.idle_timeout = "soon": cannot read it as a duration (try "90 seconds", "5m" or 5000)`
    ],
    [
      "an unknown unit",
      { experimental: { tool_timeout: "5 fortnights" } },
      `invalid config: experimental.tool_timeout = "5 fortnights": unknown unit "fortnights" (use ms, s, m, h or d)`
    ],
    [
      "true",
      { experimental: { tool_timeout: true } },
      `invalid config: experimental.tool_timeout = true: ${expectedTypes} (got boolean)`
    ],
    [
      "null",
      { experimental: { watchdog_interval: null } },
      `invalid config: experimental.watchdog_interval = null: ${expectedTypes} (got null)`
    ],
    [
      "an array",
      { experimental: { tool_timeout: [5000] } },
      `invalid config: experimental.tool_timeout = [5000]: ${expectedTypes} (got an array)`
    ],
    [
      "an object",
      { experimental: { tool_timeout: { ms: 5000 } } },
      `invalid config: experimental.tool_timeout = {"ms":5000}: ${expectedTypes} (got object)`
    ],
    [
      "an unknown key under experimental",
      { experimental: { tool_timout: "5m" } },
      `invalid config: experimental.tool_timout = "5m": unknown key; did you mean tool_timeout? (vigil's keys: ${knownKeys})`
    ],
    [
      "experimental that is not an object",
      { experimental: "fast" },
      `invalid config: experimental = "fast": must be an object`
    ],
    ["experimental as an array", { experimental: [] }, `invalid config: experimental = []: must be an object`],
    ["experimental as null", { experimental: null }, `invalid config: experimental = null: must be an object`],
    ["a file that is a string", "hello", `invalid config: (config file) = "hello": must be a JSON object`],
    ["a file that is an array", [1, 2], `invalid config: (config file) = [1,2]: must be a JSON object`],
    ["a file that is null", null, `invalid config: (config file) = null: must be a JSON object`],
    [
      "instance_lease: false",
      { experimental: { instance_lease: false } },
      "invalid config: experimental.instance_lease = false: cannot be turned off"
    ],
    [
      "instance_lease: 0",
      { experimental: { instance_lease: 0 } },
      "invalid config: experimental.instance_lease = 0: cannot be turned off"
    ],
    [
      "shell_env that is not an object",
      { experimental: { shell_env: ["FOO"] } },
      `invalid config: experimental.shell_env = ["FOO"]: must be an object such as { "include": ["GITHUB_TOKEN"], "exclude": ["AWS_*"] }`
    ],
    [
      "an unknown key under shell_env",
      { experimental: { shell_env: { inherit: "all" } } },
      `invalid config: experimental.shell_env.inherit = "all": unknown key (known: include, exclude, include_only)`
    ],
    [
      "a shell_env list that is not a list of names",
      { experimental: { shell_env: { exclude: "AWS_*" } } },
      `invalid config: experimental.shell_env.exclude = "AWS_*": must be a list of variable names or globs, such as ["AWS_*"]`
    ],
    [
      "instance_lease: 1 (a lease renewed every third of a millisecond)",
      { experimental: { instance_lease: 1 } },
      "invalid config: experimental.instance_lease = 1: must be at least 2s " +
      "(a shorter lease makes a live instance look dead after a short pause, and renewing it costs CPU)"
    ],
    [
      "instance_lease: \"1999 ms\"",
      { experimental: { instance_lease: "1999 ms" } },
      `invalid config: experimental.instance_lease = "1999 ms": must be at least 2s ` +
      "(a shorter lease makes a live instance look dead after a short pause, and renewing it costs CPU)"
    ],
    [
      "1e309 in the file (read as Infinity), said as such, not as null",
      JSON.parse(`{ "experimental": { "tool_timeout": 1e309 } }`),
      "invalid config: experimental.tool_timeout = Infinity: not a finite number of milliseconds"
    ],
    [
      "-1e309",
      JSON.parse(`{ "experimental": { "instance_lease": -1e309 } }`),
      "invalid config: experimental.instance_lease = -Infinity: not a finite number of milliseconds"
    ],
    [
      "kill_grace: \"off\"",
      { experimental: { kill_grace: "off" } },
      `invalid config: experimental.kill_grace = "off": cannot be turned off`
    ]
  ]

  for (const [name, file, message] of cases) {
    it(name, () => {
      const error = rejected(file)
      assert.instanceOf(error, SettingsError)
      assert.strictEqual(error._tag, "SettingsError")
      assert.strictEqual(error.message, message)
    })
  }

  it("the error keeps the key, the value and the problem as fields", () => {
    const error = rejected({ experimental: { tool_timeout: -5 } })
    assert.strictEqual(error.key, "experimental.tool_timeout")
    assert.strictEqual(error.value, -5)
    assert.strictEqual(error.problem, "must not be negative")
  })

  it("a long value is shortened in the message", () => {
    const value = "x".repeat(200)
    const error = rejected({ experimental: { tool_timeout: value } })
    assert.strictEqual(
      error.message,
      `invalid config: experimental.tool_timeout = "${"x".repeat(76)}...: cannot read it as a duration (try "90 seconds", "5m" or 5000)`
    )
  })

  it("a bad environment value names the environment variable", () => {
    assert.strictEqual(
      rejected({}, { VIGIL_IDLE_TIMEOUT: "soon" }).message,
      `invalid config: VIGIL_IDLE_TIMEOUT = "soon": cannot read it as a duration (try "90 seconds", "5m" or 5000)`
    )
    assert.strictEqual(
      rejected({}, { VIGIL_TOOL_TIMEOUT: "-1m" }).message,
      `invalid config: VIGIL_TOOL_TIMEOUT = "-1m": must not be negative`
    )
    assert.strictEqual(
      rejected({}, { VIGIL_INSTANCE_LEASE: "off" }).message,
      `invalid config: VIGIL_INSTANCE_LEASE = "off": cannot be turned off`
    )
    assert.include(rejected({}, { VIGIL_INSTANCE_LEASE: "1" }).message, `VIGIL_INSTANCE_LEASE = "1": must be at least 2s`)
    assert.include(rejected({}, { VIGIL_TOOL_TIMEOUT: "1e309" }).message, `VIGIL_TOOL_TIMEOUT = "1e309": cannot read it`)
  })

  it("the lease floor itself is taken", () => {
    assert.strictEqual(parsed({ experimental: { instance_lease: "2 seconds" } }).instanceLease, 2_000)
    assert.strictEqual(parsed({}, { VIGIL_INSTANCE_LEASE: "2000" }).instanceLease, 2_000)
  })

  it("a bad environment value is rejected even when the file is fine", () => {
    assert.strictEqual(
      rejected({ experimental: { task_timeout: "1h" } }, { VIGIL_TASK_TIMEOUT: "5 fortnights" }).message,
      `invalid config: VIGIL_TASK_TIMEOUT = "5 fortnights": unknown unit "fortnights" (use ms, s, m, h or d)`
    )
  })

  it.effect("fails as a tagged error in an Effect", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parseSettings({ experimental: { tool_timeout: -5 } }))
      assert.strictEqual(error._tag, "SettingsError")
      assert.strictEqual(error.message, "invalid config: experimental.tool_timeout = -5: must not be negative")
    }))
})

describe("experimental.shell_env", () => {
  it("defaults to no extra rules, and reads the three lists", () => {
    assert.deepStrictEqual(defaultSettings.shellEnv, { include: [], exclude: [], includeOnly: Option.none() })
    const settings = Either.getOrThrow(
      parseSettings({ experimental: { shell_env: { include: ["GITHUB_TOKEN"], exclude: ["AWS_*"], include_only: ["PATH", "HOME"] } } })
    )
    assert.deepStrictEqual(settings.shellEnv, { include: ["GITHUB_TOKEN"], exclude: ["AWS_*"], includeOnly: Option.some(["PATH", "HOME"]) })
    assert.strictEqual(millisOf(settings.toolTimeout), defaults.toolTimeout)
  })
})

describe("parseDuration", () => {
  it("returns the problem alone, without a key", () => {
    assert.deepStrictEqual(parseDuration(-1), Either.left("must not be negative"))
    assert.deepStrictEqual(parseDuration(Number.NaN), Either.left("not a finite number of milliseconds"))
    assert.deepStrictEqual(
      parseDuration(Number.POSITIVE_INFINITY),
      Either.left("not a finite number of milliseconds")
    )
    assert.deepStrictEqual(parseDuration(undefined), Either.left(`${expectedTypes} (got undefined)`))
  })

  it("returns None for off and Some for a duration", () => {
    assert.deepStrictEqual(parseDuration(false), Either.right(Option.none()))
    assert.deepStrictEqual(parseDuration("off"), Either.right(Option.none()))
    assert.deepStrictEqual(
      Either.map(parseDuration("90 seconds"), (d) => millisOf(d)),
      Either.right(90_000)
    )
  })
})

describe("an opencode config, as users write it", () => {
  it("opencode's own experimental keys are noted, not fatal; a typo of vigil's key stays fatal", () => {
    const file = {
      $schema: "https://opencode.ai/config.json",
      theme: "opencode",
      agent: { build: { model: "anthropic/claude-sonnet-4-5" } },
      mcp: {},
      permission: { bash: "ask" },
      colour: "blue",
      experimental: { batch_tool: true, openTelemetry: false, tool_timeout: "5m" }
    }
    const settings = Either.getOrThrow(parseSettings(file))
    assert.deepStrictEqual(settings.toolTimeout, Option.some(Duration.minutes(5)))
    // The file's other keys are noted by the config file's reader (server/test/ConfigFile.test.ts).
    assert.deepStrictEqual(settingsNotes(file), [
      `experimental.batch_tool, experimental.openTelemetry: not vigil's (opencode's, or unknown); ignored. vigil's keys: ${knownKeys}`
    ])
    for (const typo of ["idle_timout", "Tool-Timeout", "abortgrace"]) {
      assert.isTrue(Either.isLeft(parseSettings({ experimental: { [typo]: "5m" } })), typo)
    }
    // Unknown keys inside vigil's own rules stay fatal too.
    assert.isTrue(Either.isLeft(parseSettings({ experimental: { shell_env: { inherit: "all" } } })))
  })
})
