import { assert, describe, it } from "@effect/vitest"
import { defaultSettings, parseSettings, settingsKeys, SettingsError, settingsNotes } from "@vigil/domain"
import { Duration, Either, Option } from "effect"
import fc from "fast-check"
import { afterAll, beforeAll } from "vitest"
import type { Database } from "./support/Database.js"
import { openDatabase } from "./support/Database.js"
import type { RawResponse } from "./support/Http.js"
import { ConnectionError, send, sendJson } from "./support/Http.js"
import type { Workspace } from "./support/ServerProcess.js"
import { killEverything, makeWorkspace, ServerProcess } from "./support/ServerProcess.js"

/**
 * Hostile input against the two doors of vigil: the config file (`parseSettings`) and the HTTP
 * routes of a real server. Bounded runs; a failure prints fast-check's shrunk counterexample and
 * its seed (`fc.assert` reports both) and names what went wrong.
 *
 * What the fuzzers found is pinned by the `it.fails` tests at the end of each block: each one
 * asserts the contract for one concrete input and fails today. When the bug is fixed, the
 * `it.fails` starts failing: remove it, and the filter that keeps that input out of the property.
 */

// --- hostile values ------------------------------------------------------------------------------

const hostileStrings = [
  "", " ", "\u0000", "\ufeff", "\u202e", "😀", "ñ", "İ", "١٠ s", "10\u00a0s",
  "NaN", "nan", "Infinity", "-Infinity", "1e3", "1e999", "0x10", "0b1", "-0", "-0.0", "0", "-5", "-5s", "- 5 s",
  "5m", "90 seconds", "1.5 hours", "10 ms ms", "5 fortnights", "false", "FALSE", "off", "true", "null", "undefined",
  "9".repeat(300), "9".repeat(300) + " days", "0.0000001 ms", ".5s", "5.s",
  "__proto__", "constructor", "prototype", "toString", "hasOwnProperty",
  "' OR 1=1 --", "\"; DROP TABLE sessions; --", "../../etc/passwd", "%2e%2e%2f", "${7*7}", "{{7*7}}", "<script>",
  "a".repeat(2000)
]

/** A string a hostile user might send: edge cases, unicode, control characters, arbitrary text. */
const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...hostileStrings) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 30 }) },
  { weight: 1, arbitrary: fc.tuple(fc.double(), fc.constantFrom("", " ", "ms", " s", "m", " hours", "d", "x")).map(([n, unit]) => `${n}${unit}`) }
)

/** Keys that are not data on a plain object: the lookups `obj[key]` finds on its prototype. */
const prototypeKeys = [
  "__proto__", "constructor", "toString", "valueOf", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable",
  "toLocaleString", "__defineGetter__", "__defineSetter__", "__lookupGetter__", "__lookupSetter__"
]

// --- (a) the config parser -----------------------------------------------------------------------

const knownKeys = Object.keys(settingsKeys)
/** The keys whose value is a duration (`max_task_depth` is a count). */
const durationKeys = knownKeys.filter((key) => settingsKeys[key]!.count !== true)
const envNames = Object.values(settingsKeys).map((spec) => spec.env)
const settingsFields = ["toolTimeout", "taskTimeout", "idleTimeout", "watchdogInterval", "instanceLease", "abortGrace", "killGrace"]
/** The settings that are counts: always a positive whole number. */
const countFields = ["maxTaskDepth"]
/** The rules that cannot be turned off: they always hold a positive duration. */
const requiredFields = new Set(["instanceLease", "abortGrace", "killGrace"])

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** A value for a duration key: JSON values of every type, numbers at the edges, hostile strings. */
const durationValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: hostileString },
  { weight: 2, arbitrary: fc.double() },
  { weight: 2, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.constantFrom(0, -0, 1, -1, 1e308, -1e308, Number.MAX_SAFE_INTEGER, Number.MIN_VALUE, false, true, null) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) }
)

const experimentalKey = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...knownKeys) },
  { weight: 1, arbitrary: fc.constantFrom(...prototypeKeys) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.constantFrom(...knownKeys.map((key) => key.toUpperCase()), "tool-timeout", "toolTimeout", " tool_timeout") }
)

/**
 * A config file as `JSON.parse` gives it: entries become own properties, `__proto__` included
 * (an object literal would set the prototype instead; a config file cannot).
 */
const ownObject = (entries: ReadonlyArray<readonly [string, unknown]>): Record<string, unknown> => {
  const object: Record<string, unknown> = {}
  for (const [key, value] of entries) Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true })
  return object
}

const configFile: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.record({
      experimental: fc.array(fc.tuple(experimentalKey, durationValue), { maxLength: 6 }).map(ownObject),
      other: fc.array(fc.tuple(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 })), { maxLength: 3 })
    }).map(({ experimental, other }) => ownObject([...other.filter(([key]) => key !== "experimental"), ["experimental", experimental]])) },
  { weight: 1, arbitrary: fc.jsonValue().map((experimental) => ownObject([["experimental", experimental]])) },
  { weight: 1, arbitrary: fc.jsonValue() },
  { weight: 1, arbitrary: fc.constant(undefined) }
)

const environment: fc.Arbitrary<Record<string, string | undefined>> = fc
  .array(fc.tuple(fc.oneof(fc.constantFrom(...envNames), fc.constantFrom("VIGIL_PORT", "PATH", "__proto__")), hostileString), { maxLength: 3 })
  .map((entries) => ownObject(entries) as Record<string, string>)

const millisOf = (value: unknown): number | null => {
  if (Option.isOption(value)) return Option.isNone(value) ? null : millisOf(value.value)
  if (Duration.isDuration(value)) return Duration.toMillis(value)
  return Number.NaN
}

/** Everything wrong with what `parseSettings` made of this input; empty when it keeps the contract. */
const settingsProblems = (file: unknown, env: Record<string, string | undefined>): Array<string> => {
  const prototypeBefore = Object.getOwnPropertyNames(Object.prototype).join(",")
  let result: Either.Either<unknown, SettingsError>
  try {
    result = parseSettings(file, env)
  } catch (error) {
    return [`threw ${String(error)}`]
  }
  const problems: Array<string> = []
  if (Object.getOwnPropertyNames(Object.prototype).join(",") !== prototypeBefore) problems.push("Object.prototype was changed")
  const experimental = isRecord(file) ? file["experimental"] : undefined
  if (Either.isRight(result)) {
    const settings = result.right as Record<string, unknown>
    // `shellEnv` is a policy object (experimental.shell_env), not a duration: the fuzz leaves it out.
    const keys = Object.keys(settings).filter((key) => key !== "shellEnv").sort()
    if (keys.join(",") !== [...settingsFields, ...countFields].sort().join(",")) problems.push(`settings have the keys ${JSON.stringify(keys)}`)
    for (const field of countFields) {
      const count = settings[field]
      if (typeof count !== "number" || !Number.isSafeInteger(count) || count < 1) problems.push(`${field} = ${String(count)}`)
    }
    for (const field of settingsFields) {
      const millis = millisOf(settings[field])
      if (millis === null) {
        if (requiredFields.has(field)) problems.push(`${field} is off, but it cannot be turned off`)
      } else if (!Number.isFinite(millis) || millis < 0 || (requiredFields.has(field) && millis === 0)) {
        problems.push(`${field} = ${millis} ms`)
      }
    }
    if (isRecord(experimental)) {
      for (const key of Object.keys(experimental)) {
        // opencode's own keys are accepted (issue 18), and must then be noted at start.
        if (!Object.hasOwn(settingsKeys, key) && key !== "shell_env" && !settingsNotes(file).some((note) => note.includes(`experimental.${key}`))) {
          problems.push(`the unknown key experimental.${key} was accepted without a note`)
        }
      }
    }
    return problems
  }
  const error = result.left
  if (!(error instanceof SettingsError)) return [`failed with ${String(error)}, not a SettingsError`]
  let message: string
  try {
    message = error.message
  } catch (cause) {
    return [`the error's message threw ${String(cause)}`]
  }
  if (/[\r\n]/.test(message)) problems.push(`the message is not one line: ${JSON.stringify(message)}`)
  if (!message.startsWith(`invalid config: ${error.key} = `)) problems.push(`the message does not lead with the key: ${JSON.stringify(message)}`)
  if (error.key === "(config file)") {
    if (file === undefined || isRecord(file)) problems.push("blames the file, which is an object")
  } else if (error.key === "experimental") {
    if (experimental === undefined || isRecord(experimental)) problems.push("blames experimental, which is an object")
  } else if (error.key.startsWith("experimental.")) {
    const key = error.key.slice("experimental.".length)
    if (!isRecord(experimental) || !Object.hasOwn(experimental, key)) {
      problems.push(`names ${error.key}, which is not in the file`)
    } else if (Either.isRight(parseSettings(ownObject([["experimental", ownObject([[key, experimental[key]]])]])))) {
      problems.push(`names ${error.key}, whose value alone is accepted`)
    }
  } else if (envNames.includes(error.key)) {
    const value = Object.hasOwn(env, error.key) ? env[error.key] : undefined
    if (value === undefined || value === "") problems.push(`names ${error.key}, which is not set`)
    else if (Either.isRight(parseSettings(undefined, { [error.key]: value }))) {
      problems.push(`names ${error.key}, whose value alone is accepted`)
    }
  } else {
    problems.push(`names neither an experimental. key nor an environment variable: ${error.key}`)
  }
  return problems
}

const checkSettings = (file: unknown, env: Record<string, string | undefined>) => {
  const problems = settingsProblems(file, env)
  if (problems.length > 0) throw new Error(problems.join("; "))
}

describe("fuzz: parseSettings", () => {
  it("never throws: settings with finite, non-negative durations, or one SettingsError line naming the bad key", () => {
    fc.assert(
      fc.property(configFile, environment, (file, env) => {
        checkSettings(file, env)
        // The file as start-up reads it: through JSON text.
        const text = file === undefined ? undefined : JSON.stringify(file)
        checkSettings(text === undefined ? undefined : JSON.parse(text), env)
      }),
      { numRuns: 3_000 }
    )
  })

  it("reads well-formed values as the right number of milliseconds", () => {
    const units = [["ms", 1], ["s", 1_000], ["seconds", 1_000], ["m", 60_000], ["minutes", 60_000], ["h", 3_600_000], ["d", 86_400_000]] as const
    fc.assert(
      fc.property(fc.constantFrom(...durationKeys), fc.integer({ min: 1, max: 1_000_000 }), fc.constantFrom(...units), fc.boolean(), (key, amount, [unit, factor], spaced) => {
        const result = parseSettings({ experimental: { [key]: `${amount}${spaced ? " " : ""}${unit}` } })
        const floor = settingsKeys[key]!.floor?.millis ?? 0
        if (amount * factor < floor) {
          // Under its floor (instance_lease below 2 s) a well-formed value is refused, naming the floor.
          assert.isTrue(Either.isLeft(result) && result.left.message.includes("must be at least"), `${key} under its floor was accepted`)
          return
        }
        assert.isTrue(Either.isRight(result), Either.isLeft(result) ? result.left.message : "")
        const settings = Either.getOrThrow(result) as unknown as Record<string, unknown>
        assert.strictEqual(millisOf(settings[settingsKeys[key]!.field]), amount * factor)
      }),
      { numRuns: 300 }
    )
  })

  // Found by the property above. domain/src/Settings.ts looks keys up with `settingsKeys[key]`,
  // which finds Object.prototype's members: `__proto__` and `constructor` are accepted (the value
  // lands on a field named "undefined"), `toString: false` says "cannot be turned off".
  // Since issue 18 an unknown key is noted, not fatal (opencode has many): these two must still
  // not reach Object.prototype's members, so the settings stay the defaults.
  it("found by fuzzing: experimental.__proto__ / constructor are not taken for settings", () => {
    for (const key of ["__proto__", "constructor"]) {
      const file: unknown = JSON.parse(`{"experimental":{"${key}":5000}}`)
      const result = parseSettings(file)
      assert.deepStrictEqual(result, Either.right(defaultSettings), `experimental.${key} = 5000 changed the settings`)
      assert.include(settingsNotes(file).join("\n"), `experimental.${key}`)
    }
  })

  // Found by the property above. The problem text repeats the raw value, so a value with a line
  // break makes a start-up error of two lines (docs/design.md#the-config-file: one clear line).
  it("found by fuzzing: an unreadable value with a line break still gives a one-line error", () => {
    const result = parseSettings({ experimental: { tool_timeout: "1\n0s" } })
    assert.isTrue(Either.isLeft(result))
    assert.notMatch(Either.isLeft(result) ? result.left.message : "", /\n/)
  })

  // Found by the property above. A number is refused when it is not finite, but a digit string
  // past Number.MAX_VALUE reads as Infinity: `instance_lease` (which cannot be turned off) becomes
  // an infinite lease, so a crashed instance's lease never expires.
  it("found by fuzzing: a digit string past Number.MAX_VALUE is refused", () => {
    const result = parseSettings({ experimental: { instance_lease: "1" + "0".repeat(400) } })
    assert.isTrue(Either.isLeft(result), "an infinite instance_lease was accepted")
  })

  // Found by the property above. The zero check runs on the number, then Duration.millis rounds
  // to whole nanoseconds: a positive value under 1e-6 ms becomes a zero Duration. `abort_grace`,
  // `kill_grace` and `instance_lease` cannot be turned off, yet end up 0 (a zero lease makes every
  // instance dead to its peers at once); `tool_timeout: 1e-7` is a zero deadline, not "off".
  it("found by fuzzing: a positive value below a nanosecond never becomes a zero duration", () => {
    for (const [key, value] of [["abort_grace", 5e-324], ["instance_lease", "0.0000001 ms"], ["kill_grace", 1e-7]] as const) {
      const result = parseSettings({ experimental: { [key]: value } })
      const field = settingsKeys[key]!.field
      assert.isTrue(
        Either.isLeft(result) || millisOf((result.right as unknown as Record<string, unknown>)[field]) !== 0,
        `experimental.${key} = ${value} made ${field} 0 ms`
      )
    }
  })
})

// --- (b) the HTTP routes ---------------------------------------------------------------------------

type Route = "create" | "list" | "get" | "tool" | "prompt" | "reply" | "abort" | "parts" | "part"

interface FuzzRequest {
  readonly route: Route
  readonly method: string
  /** A seed session (by index) or a hostile id. */
  readonly target: { readonly seed: number } | { readonly id: string; readonly encoding: "raw" | "encoded" | "double" }
  readonly contentType: string | undefined
  readonly body: string | Uint8Array | undefined
}

const routePath: Record<Route, (id: string) => string> = {
  create: () => "/session",
  list: () => "/session",
  get: (id) => `/session/${id}`,
  tool: (id) => `/session/${id}/tool`,
  prompt: (id) => `/session/${id}/prompt`,
  reply: (id) => `/session/${id}/reply`,
  abort: (id) => `/session/${id}/abort`,
  parts: (id) => `/session/${id}/part`,
  part: (id) => `/part/${id}`
}
const routeMethod: Record<Route, string> = {
  create: "POST", list: "GET", get: "GET", tool: "POST", prompt: "POST", reply: "POST", abort: "POST", parts: "GET", part: "GET"
}

const hostileId: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(
    "' OR 1=1 --", "' OR '1'='1", "1; DROP TABLE sessions; --", "\" OR \"\"=\"", "*", "%", "_", "ses_%",
    "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..", ".", "./", "..;/",
    "%zz", "%E0%A4%A", "%00", "\u0000", "\n", "\r\nX-Injected: 1", "__proto__", "constructor", "prototype",
    "null", "undefined", "NaN", "[]", "{}", "😀", "ñ", "\u202e", "\ufeff", "ses_0000000000000000000000000",
    "prt_0000000000000000000000000", "a".repeat(6_000), "%".repeat(300), "é".repeat(500)
  ) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.stringMatching(/^(ses|prt|ins)_[0-9a-z]{0,30}$/) }
)

/** A path segment as sent: raw bytes where node's client allows them, else percent-encoded once or twice. */
const segment = (id: string, encoding: "raw" | "encoded" | "double"): string => {
  const once = encodeURIComponent(id)
  if (encoding === "double") return encodeURIComponent(once)
  // `?` and `#` would end the path (a different, legitimate request); the client refuses the rest.
  return encoding === "raw" && /^[\u0021-\u00ff]*$/.test(id) && !/[?#]/.test(id) ? id : once
}

const json = (value: unknown) => JSON.stringify(value)

/** A tool name from the hostile strings that never names a tool able to run a command or write a file. */
const strangeToolName = hostileString.filter((name) => name !== "bash" && name !== "write")

/** A script for the `script` model that only echoes, reads, asks, waits a little or delegates. */
const harmlessScript: fc.Arbitrary<string> = fc.letrec<{ script: string; step: unknown }>((tie) => ({
  script: fc.array(tie("step"), { maxLength: 4 }).map(json),
  step: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.record({ text: hostileString }),
    fc.record({ tool: fc.constant("read"), input: fc.record({ path: hostileString }) }),
    fc.constant({ tool: "bash", input: { command: "echo fuzz" } }),
    fc.record({ tool: fc.constant("ask"), input: fc.record({ question: hostileString }) }),
    fc.record({ sleep: fc.integer({ min: 0, max: 50 }) }),
    fc.record({ tool: fc.constant("task"), input: fc.record({ prompt: tie("script") }) }),
    fc.record({ tool: strangeToolName, input: fc.jsonValue({ maxDepth: 2 }) })
  )
})).script

/**
 * Tool inputs: valid ones for the harmless tools, wrong types for all. `bash` only ever runs
 * `echo fuzz`, and `write` only writes plain names inside the server's temp folder: a fuzzer
 * must not run arbitrary commands nor write arbitrary paths as whoever runs the tests.
 */
const toolCall = fc.oneof(
  fc.record({ tool: fc.constant("read"), input: fc.record({ path: hostileString }) }),
  fc.record({ tool: fc.constant("write"), input: fc.record({ path: fc.stringMatching(/^[a-z]{1,8}\.txt$/), content: hostileString }) }),
  fc.record({ tool: fc.constant("write"), input: fc.record({ path: hostileString, content: fc.oneof(fc.integer(), fc.constant(null), fc.array(fc.string())) }) }),
  fc.record({ tool: fc.constant("ask"), input: fc.oneof(fc.record({ question: hostileString }), fc.jsonValue({ maxDepth: 2 })) }),
  fc.record({ tool: fc.constant("task"), input: fc.oneof(fc.record({ prompt: harmlessScript }), fc.record({ prompt: hostileString, description: hostileString }), fc.jsonValue({ maxDepth: 2 })) }),
  fc.record({ tool: fc.constant("bash"), input: fc.oneof(fc.constant({ command: "echo fuzz" }), fc.record({ command: fc.oneof(fc.integer(), fc.constant(""), fc.constant(null), fc.array(fc.string())) }), fc.constant({})) }),
  fc.record({ tool: fc.oneof(strangeToolName, fc.constantFrom(...prototypeKeys)), input: fc.jsonValue({ maxDepth: 2 }) })
).chain((call) =>
  fc.option(fc.oneof(fc.integer(), fc.constantFrom(-1, 0, 0.5, 1e20, 2 ** 53 + 1, "10", null, true)), { nil: undefined }).map((timeout) =>
    timeout === undefined ? call : { ...call, timeout }
  )
)

const shapedBody: Record<Route, fc.Arbitrary<unknown>> = {
  create: fc.record({ parentId: fc.oneof(hostileId, fc.integer(), fc.constant(null)), title: fc.oneof(hostileString, fc.integer(), fc.jsonValue({ maxDepth: 2 })) }, { requiredKeys: [] }),
  list: fc.constant(undefined),
  get: fc.constant(undefined),
  tool: toolCall,
  prompt: fc.record({ text: fc.oneof(harmlessScript, hostileString), model: fc.oneof(fc.constant("script"), hostileString, fc.constantFrom(...prototypeKeys)) }, { requiredKeys: ["text"] }),
  reply: fc.record({ requestId: fc.oneof(hostileString, fc.constantFrom(...prototypeKeys)), answer: hostileString }, { requiredKeys: [] }),
  abort: fc.constant(undefined),
  parts: fc.constant(undefined),
  part: fc.constant(undefined)
}

const hostileText = fc.constantFrom(
  "", " ", "{", "}", "[", "]", "null", "true", "0", "\"text\"", "1e999", "-1e999", "NaN", "{'single': 1}", "{\"a\":1,}", "\u0000",
  "\ufeff{}", "{\"a\":1,\"a\":2}", "{\"__proto__\":{\"polluted\":true}}", "{\"constructor\":{\"prototype\":{\"polluted\":true}}}",
  "{\"tool\":", "{\"text\":\"\\ud800\"}", "{\"tool\":\"bash\",\"input\":{\"command\":\"echo fuzz\"},\"timeout\":1e999}",
  "[".repeat(100) + "]".repeat(100), "{\"text\":" + "1".repeat(400) + "}", "title=x&parentId=y"
)

const body = (route: Route): fc.Arbitrary<string | Uint8Array | undefined> =>
  fc.oneof(
    { weight: 5, arbitrary: shapedBody[route].map((value) => (value === undefined ? undefined : json(value))) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map(json) },
    { weight: 2, arbitrary: hostileText },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 100 }) },
    { weight: 1, arbitrary: fc.constant(undefined) }
  )

/** Content types, right and wrong (the API takes JSON whatever the label says). */
const contentType = fc.oneof(
  { weight: 6, arbitrary: fc.constant("application/json") },
  { weight: 3, arbitrary: fc.constantFrom(
    "application/json; charset=utf-8", "APPLICATION/JSON", "application/json; charset=latin1", "text/plain",
    "application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=x", "application/octet-stream",
    "text/html", "application/xml", "*/*", "json", ";", "a/b; c=d"
  ) },
  { weight: 1, arbitrary: fc.constant(undefined) }
)

const methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

const fuzzRequest = (options: { readonly hostileIds: boolean }): fc.Arbitrary<FuzzRequest> =>
  fc.constantFrom<Route>("create", "list", "get", "tool", "prompt", "reply", "abort", "parts", "part").chain((route) =>
    fc.record({
      route: fc.constant(route),
      method: fc.oneof({ weight: 8, arbitrary: fc.constant(routeMethod[route]) }, { weight: 1, arbitrary: fc.constantFrom(...methods) }),
      target: options.hostileIds
        ? fc.record({ id: hostileId, encoding: fc.constantFrom("raw" as const, "encoded" as const, "double" as const) })
        : fc.oneof(
          { weight: 4, arbitrary: fc.record({ seed: fc.nat({ max: 2 }) }) },
          { weight: 1, arbitrary: fc.record({ id: hostileId, encoding: fc.constantFrom("raw" as const, "encoded" as const, "double" as const) }) }
        ),
      contentType,
      body: options.hostileIds ? shapedBody[route].map((value) => (value === undefined ? undefined : json(value))) : body(route)
    })
  )

const batch = (options: { readonly hostileIds: boolean }) => fc.array(fuzzRequest(options), { minLength: 1, maxLength: 5 })

describe("fuzz: HTTP routes of a real server", () => {
  let workspace: Workspace
  let server: ServerProcess
  let db: Database
  const seeds: Array<string> = []
  const stats = { requests: 0, byStatus: new Map<number, number>() }

  beforeAll(async () => {
    workspace = makeWorkspace("vigil-e2e-fuzz-", {
      tool_timeout: "2 seconds",
      task_timeout: "4 seconds",
      idle_timeout: "3 seconds",
      watchdog_interval: "250 ms",
      instance_lease: "3 seconds",
      abort_grace: "500 ms",
      kill_grace: "200 ms"
    })
    server = new ServerProcess(workspace)
    await server.start()
    db = openDatabase(workspace.db)
    for (let i = 0; i < 3; i++) {
      const created = await sendJson(server.url, "POST", "/session", { title: `seed ${i}` })
      assert.strictEqual(created.status, 201, created.text)
      seeds.push((created.json as { id: string }).id)
    }
  }, 120_000)

  afterAll(async () => {
    console.log(
      `fuzz: ${stats.requests} requests; answers by status: ${[...stats.byStatus].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(" ")}`
    )
    if (server?.running) {
      const stopped = await server.stop()
      if (stopped.code !== 0) console.log(`the fuzzed server exited ${stopped.code ?? stopped.signal}:\n${server.logTail()}`)
    }
    await server?.retire()
    await db?.close()
    killEverything()
    workspace?.remove()
  }, 60_000)

  const idOf = (request: FuzzRequest) => ("seed" in request.target ? seeds[request.target.seed]! : request.target.id)

  const pathOf = (request: FuzzRequest) =>
    routePath[request.route]("seed" in request.target ? seeds[request.target.seed]! : segment(request.target.id, request.target.encoding))

  const describeRequest = (request: FuzzRequest) => {
    const shown = request.body === undefined ? "" : typeof request.body === "string" ? request.body : `<${request.body.length} bytes>`
    return `${request.method} ${pathOf(request).slice(0, 100)} [${request.contentType ?? "no content-type"}] ${shown.slice(0, 200)}`
  }

  /**
   * Sends a batch at once and checks the contract: an answer for every request (no dropped
   * connection), never 5xx, a JSON error naming the problem for every 4xx, the server still
   * healthy, and rows only from what was accepted: a new session is one a 2xx created (or a child
   * of a session a 2xx set running), a new part belongs to a session a 2xx set running, and a
   * session's route-made parts are exactly as many as the 2xx it got.
   */
  const checkBatch = async (requests: ReadonlyArray<FuzzRequest>) => {
    const before = await db.ids()
    const seedRowsBefore = new Map((await db.sessions()).filter((row) => seeds.includes(row.id)).map((row) => [row.id, JSON.stringify(row)]))
    const answers = await Promise.all(requests.map((request) =>
      send(server.url, {
        method: request.method,
        path: pathOf(request),
        headers: request.contentType === undefined ? {} : { "content-type": request.contentType },
        ...(request.body === undefined ? {} : { body: request.body })
      }).then((response): RawResponse | ConnectionError => response, (error: unknown) => {
        if (error instanceof ConnectionError) return error
        throw error
      })
    ))
    const problems: Array<string> = []
    const created = new Set<string>()
    /** Sessions set running by an accepted request, with how many tool calls and prompts each accepted. */
    const running = new Map<string, { tools: number; prompts: number }>()
    answers.forEach((answer, index) => {
      const request = requests[index]!
      stats.requests++
      if (answer instanceof ConnectionError) {
        problems.push(`no answer (${answer.code}: ${answer.message}) to ${describeRequest(request)}`)
        return
      }
      stats.byStatus.set(answer.status, (stats.byStatus.get(answer.status) ?? 0) + 1)
      const said = `${answer.status} ${answer.text.slice(0, 300)}`
      if (answer.status >= 500 || answer.status < 200 || (answer.status >= 300 && answer.status < 400)) {
        problems.push(`${said} to ${describeRequest(request)}`)
        return
      }
      if (answer.status >= 400) {
        const error = answer.json as { message?: unknown } | undefined
        if (typeof error?.message === "string" && error.message !== "") return
        // Raw bytes past ASCII in the request line are malformed HTTP: node's parser answers its
        // own bare 400 before the app sees a request. Anything else must be the API's JSON error.
        if (answer.status === 400 && answer.text === "" && !/^[\u0021-\u007e]*$/.test(pathOf(request))) return
        problems.push(`a 4xx that is not a JSON error: ${said} to ${describeRequest(request)}`)
        return
      }
      const accepted = answer.json as Record<string, unknown> | undefined
      // `list` and `create` share a path: a POST to `list` is a create, whatever the generator named it.
      if (request.method === "POST" && (request.route === "create" || request.route === "list")) {
        if (answer.status !== 201 || typeof accepted?.["id"] !== "string") problems.push(`create answered ${said}`)
        else created.add(accepted["id"])
      } else if (request.method === "POST" && (request.route === "tool" || request.route === "prompt" || request.route === "reply")) {
        const id = idOf(request)
        const counts = running.get(id) ?? { tools: 0, prompts: 0 }
        if (request.route === "tool") counts.tools++
        if (request.route === "prompt") counts.prompts++
        running.set(id, counts)
        if (request.route === "tool" && (answer.status !== 202 || typeof accepted?.["partId"] !== "string")) problems.push(`tool answered ${said}`)
      }
    })
    // What was accepted ends now, so that the next batch starts from sessions at rest.
    for (const id of running.keys()) {
      const aborted = await sendJson(server.url, "POST", `/session/${encodeURIComponent(id)}/abort`)
      if (aborted.status !== 200) problems.push(`abort of ${id} answered ${aborted.status} ${aborted.text.slice(0, 200)}`)
    }
    const health = await send(server.url, { method: "GET", path: "/health" }).catch((error: unknown) => error)
    if (!(health instanceof Object && "status" in health && health.status === 200)) {
      problems.push(`GET /health after the batch: ${health instanceof Error ? health.message : JSON.stringify(health)}`)
    }

    const after = await db.ids()
    const knownSessions = new Set(before.sessions.map((row) => row.id))
    const knownParts = new Set(before.parts.map((row) => row.id))
    const parentOf = new Map(after.sessions.map((row) => [row.id, row.parentId]))
    /** The session a new row hangs from: itself or its nearest ancestor that some 2xx set running. */
    const underRunning = (id: string) => {
      for (let at: string | null | undefined = id, hops = 0; at != null && hops < 100; at = parentOf.get(at), hops++) {
        if (running.has(at)) return true
      }
      return false
    }
    for (const row of after.sessions) {
      if (knownSessions.has(row.id) || created.has(row.id) || underRunning(row.id)) continue
      problems.push(`session ${row.id} was written, but no accepted request made it`)
    }
    for (const id of created) if (!after.sessions.some((row) => row.id === id)) problems.push(`201 for session ${id}, which is not in the database`)
    for (const row of after.parts) {
      if (knownParts.has(row.id) || underRunning(row.sessionId)) continue
      problems.push(`part ${row.id} (${row.kind}) of session ${row.sessionId} was written, but no accepted request made it`)
    }
    for (const [id, accepted] of running) {
      const fresh = after.parts.filter((row) => row.sessionId === id && !knownParts.has(row.id))
      const prompts = fresh.filter((row) => row.kind === "prompt").length
      const routeTools = fresh.filter((row) => row.kind === "tool" && row.callId === null).length
      if (prompts !== accepted.prompts) problems.push(`session ${id}: ${accepted.prompts} prompt(s) accepted, ${prompts} prompt part(s) written`)
      if (routeTools !== accepted.tools) problems.push(`session ${id}: ${accepted.tools} tool call(s) accepted, ${routeTools} tool part(s) written`)
    }
    for (const row of (await db.sessions()).filter((row) => seedRowsBefore.has(row.id) && !running.has(row.id))) {
      if (JSON.stringify(row) !== seedRowsBefore.get(row.id)) {
        problems.push(`session ${row.id} got no 2xx but changed: ${seedRowsBefore.get(row.id)} -> ${JSON.stringify(row)}`)
      }
    }
    if (problems.length > 0) throw new Error(`${problems.length} problem(s):\n- ${problems.join("\n- ")}`)
  }

  it("arbitrary bodies, bytes and content types on every route: 2xx or a JSON 4xx, and nothing partial written", async () => {
    await fc.assert(fc.asyncProperty(batch({ hostileIds: false }), checkBatch), { numRuns: 200 })
  }, 90_000)

  it("injection-shaped, traversal, unicode, percent-encoded and very long path ids: 4xx, and nothing written", async () => {
    await fc.assert(fc.asyncProperty(batch({ hostileIds: true }), checkBatch), { numRuns: 200 })
  }, 90_000)

  it("an oversized body is refused with 413, and the server stays up", async () => {
    const big = JSON.stringify({ title: "x".repeat(1024 * 1024 + 10) })
    const answer = await send(server.url, { method: "POST", path: "/session", headers: { "content-type": "application/json" }, body: big })
    assert.strictEqual(answer.status, 413, answer.text.slice(0, 200))
    assert.strictEqual((await send(server.url, { method: "GET", path: "/health" })).status, 200)
  }, 30_000)

  // Found by hand while writing the generators: a tool input nested a few thousand levels deep is
  // valid (`input` is Schema.Unknown, the tool ignores extra keys), but store/src/PartRepo.ts
  // `insert` overflows the stack in JSON.stringify: the request answers 500, and the session that
  // runtime/src/agent/SessionService.ts `runTool` had already claimed stays `busy` with no part and no
  // turn (every prompt answers 409) until an abort or the idle monitor frees it.
  it("found by hand: a deeply nested tool input is refused with 4xx and leaves the session at rest", async () => {
    const id = seeds[2]!
    const deep = `${"[".repeat(6_000)}0${"]".repeat(6_000)}`
    const answer = await send(server.url, {
      method: "POST",
      path: `/session/${id}/tool`,
      headers: { "content-type": "application/json" },
      body: `{"tool":"ask","input":{"question":"q","extra":${deep}}}`
    })
    const session = (await sendJson(server.url, "GET", `/session/${id}`)).json as { status: string }
    await sendJson(server.url, "POST", `/session/${id}/abort`)
    assert.isBelow(answer.status, 500, `${answer.status} ${answer.text}`)
    assert.notStrictEqual(session.status, "busy")
  }, 30_000)
})
