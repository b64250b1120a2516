import { assert, describe, it } from "@effect/vitest"
import { Option } from "effect"
import { request as httpRequest } from "node:http"
import { join } from "node:path"
import { afterAll, beforeAll } from "vitest"
import { jsonDepth, maxJsonDepth } from "../src/BadRequests.js"
import { checkRequest } from "../src/RequestGuard.js"
import type { RunningServer } from "./support.js"
import { eventually, removeDirs, rowCounts, startServer, tempDir } from "./support.js"

/**
 * The request rules against a web page driving the server (RequestGuard.ts): a foreign Host (DNS
 * rebinding), a cross-site Origin, a body that is not JSON; and what a body may hold (UTF-8, depth).
 * Sent with node:http, which (unlike fetch) lets a test write any Host and any bytes.
 */

const dirs: Array<string> = []
let server: RunningServer
let allowing: RunningServer

beforeAll(async () => {
  server = await startServer({ db: join(tempDir(dirs), "vigil.db") })
  allowing = await startServer({ db: join(tempDir(dirs), "vigil.db"), allowedOrigins: ["https://ide.example.com"] })
})

afterAll(async () => {
  await server?.close()
  await allowing?.close()
  removeDirs(dirs)
})

interface Raw {
  readonly status: number
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any
}

/** One request, headers and body exactly as given (`chunked`: no length, sent in pieces). */
const send = (
  target: RunningServer,
  path: string,
  options: { readonly method?: string; readonly headers?: Record<string, string>; readonly body?: string | Buffer; readonly chunked?: boolean } = {}
): Promise<Raw> =>
  new Promise((resolve, reject) => {
    const body = typeof options.body === "string" ? Buffer.from(options.body) : options.body
    const headers: Record<string, string> = { host: `127.0.0.1:${target.port}`, ...options.headers }
    if (body !== undefined && options.chunked !== true) headers["content-length"] = String(body.length)
    const req = httpRequest({ host: "127.0.0.1", port: target.port, path, method: options.method ?? (body ? "POST" : "GET"), headers }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8")
        let parsed: unknown = text
        try {
          parsed = JSON.parse(text)
        } catch {
          // kept as text
        }
        resolve({ status: res.statusCode ?? 0, body: parsed })
      })
    })
    req.on("error", reject)
    if (body !== undefined && options.chunked === true) {
      req.write(body.subarray(0, 1))
      req.write(body.subarray(1))
    } else if (body !== undefined) req.write(body)
    req.end()
  })

const json = { "content-type": "application/json" }

const counts = (target: RunningServer) =>
  rowCounts(target.db)

const refused = (response: Raw, status: number, tag: string, ...mentions: Array<string>) => {
  assert.strictEqual(response.status, status, JSON.stringify(response.body))
  assert.strictEqual(response.body?._tag, tag, JSON.stringify(response.body))
  for (const word of mentions) assert.include(response.body.message, word)
}

const newSession = async (target: RunningServer) => {
  const created = await send(target, "/session", { body: "{}", headers: json })
  assert.strictEqual(created.status, 201, JSON.stringify(created.body))
  return created.body.id as string
}

describe("Host: only this server's own names (DNS rebinding)", () => {
  it("refuses a foreign name, or a loopback name on another port, on every route; accepts the loopback names", async () => {
    const before = await counts(server)
    for (const host of ["evil.example", `evil.example:${server.port}`, `localhost:${server.port + 1}`, `127.0.0.2:${server.port}`, "localhost"]) {
      for (const path of ["/health", "/", "/event", "/doc"]) {
        refused(await send(server, path, { headers: { host } }), 421, "MisdirectedRequest", JSON.stringify(host))
      }
      refused(await send(server, "/session", { body: "{}", headers: { ...json, host } }), 421, "MisdirectedRequest")
    }
    assert.deepStrictEqual(await counts(server), before, "no session was made")
    for (const host of [`localhost:${server.port}`, `LocalHost:${server.port}`, `127.0.0.1:${server.port}`, `[::1]:${server.port}`]) {
      assert.strictEqual((await send(server, "/health", { headers: { host } })).status, 200, host)
    }
  })

  it("a server bound to every address takes any IP literal, never a name; VIGIL_ALLOWED_HOSTS adds names", () => {
    const head = (host: string) => ({ method: "GET", headers: { host } })
    const verdict = (host: string, rules: Parameters<typeof checkRequest>[1]) => Option.map(checkRequest(head(host), rules, 4096), (r) => r.status)
    assert.deepStrictEqual(verdict("192.168.1.20:4096", { host: "0.0.0.0" }), Option.none())
    assert.deepStrictEqual(verdict("[fe80::1]:4096", { host: "::" }), Option.none())
    assert.deepStrictEqual(verdict("evil.example:4096", { host: "0.0.0.0" }), Option.some(421))
    assert.deepStrictEqual(verdict("192.168.1.20:4096", { host: "127.0.0.1" }), Option.some(421))
    assert.deepStrictEqual(verdict("10.0.0.5:4096", { host: "10.0.0.5" }), Option.none())
    assert.deepStrictEqual(verdict("vigil.internal", { host: "0.0.0.0", allowedHosts: ["vigil.internal"] }), Option.none())
    assert.deepStrictEqual(verdict("vigil.internal:8080", { host: "0.0.0.0", allowedHosts: ["vigil.internal:8080"] }), Option.none())
    assert.deepStrictEqual(verdict("vigil.internal:9090", { host: "0.0.0.0", allowedHosts: ["vigil.internal:8080"] }), Option.some(421))
    // What a URL parser would read as user info or a path is not a host.
    assert.deepStrictEqual(verdict("localhost:4096@evil.example", { host: "127.0.0.1" }), Option.some(421))
    assert.deepStrictEqual(verdict("evil.example/localhost:4096", { host: "127.0.0.1" }), Option.some(421))
  })
})

describe("Origin: the server's own, or one configured (cross-site requests)", () => {
  it("refuses a foreign Origin, and `null`, before anything runs; takes its own origin", async () => {
    const before = await counts(server)
    const sessionId = await newSession(server)
    const tool = JSON.stringify({ tool: "bash", input: { command: "echo pwned" } })
    const foreign = ["http://evil.example", "null", `http://localhost:${server.port}`, `https://127.0.0.1:${server.port}`, "http://127.0.0.1"]
    for (const origin of foreign) {
      refused(await send(server, `/session/${sessionId}/tool`, { body: tool, headers: { ...json, origin } }), 403, "ForbiddenOrigin", origin)
      refused(await send(server, "/session", { body: "{}", headers: { ...json, origin } }), 403, "ForbiddenOrigin")
      refused(await send(server, `/session/${sessionId}/abort`, { method: "POST", headers: { origin } }), 403, "ForbiddenOrigin")
      refused(await send(server, "/health", { headers: { origin } }), 403, "ForbiddenOrigin")
    }
    assert.deepStrictEqual(await counts(server), { ...before, sessions: before.sessions + 1 }, "no part, and no other session")
    const own = await send(server, "/session", { body: "{}", headers: { ...json, origin: `http://127.0.0.1:${server.port}` } })
    assert.strictEqual(own.status, 201, JSON.stringify(own.body))
    const viaLocalhost = await send(server, "/session", {
      body: "{}",
      headers: { ...json, host: `localhost:${server.port}`, origin: `http://localhost:${server.port}` }
    })
    assert.strictEqual(viaLocalhost.status, 201, JSON.stringify(viaLocalhost.body))
  })

  it("VIGIL_ALLOWED_ORIGINS lets a named origin in, and only it", async () => {
    const ok = await send(allowing, "/session", { body: "{}", headers: { ...json, origin: "https://ide.example.com" } })
    assert.strictEqual(ok.status, 201, JSON.stringify(ok.body))
    refused(await send(allowing, "/session", { body: "{}", headers: { ...json, origin: "https://evil.example" } }), 403, "ForbiddenOrigin")
    refused(await send(server, "/session", { body: "{}", headers: { ...json, origin: "https://ide.example.com" } }), 403, "ForbiddenOrigin")
  })
})

describe("a body must be JSON", () => {
  it("refuses text/plain, forms, multipart, no content type and other charsets with 415; nothing runs", async () => {
    const sessionId = await newSession(server)
    const before = await counts(server)
    const tool = JSON.stringify({ tool: "bash", input: { command: "echo pwned" } })
    for (const type of ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=latin1", "application/jsonx"]) {
      refused(await send(server, `/session/${sessionId}/tool`, { body: tool, headers: { "content-type": type } }), 415, "UnsupportedMediaType", "application/json")
      refused(await send(server, `/session/${sessionId}/tool`, { body: tool, headers: { "content-type": type }, chunked: true }), 415, "UnsupportedMediaType")
    }
    refused(await send(server, `/session/${sessionId}/tool`, { body: tool }), 415, "UnsupportedMediaType", "none")
    refused(await send(server, `/session/${sessionId}/tool`, { body: tool, chunked: true }), 415, "UnsupportedMediaType")
    // Even with no body, a form's content type is refused (an empty cross-site form to /abort).
    refused(await send(server, `/session/${sessionId}/abort`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" } }), 415, "UnsupportedMediaType")
    assert.deepStrictEqual(await counts(server), before)
    assert.strictEqual((await send(server, `/session/${sessionId}`)).body.status, "idle")

    // What is accepted: application/json (with a UTF-8 charset); a POST without a body needs no type.
    const ok = await send(server, `/session/${sessionId}/tool`, { body: tool, headers: { "content-type": "Application/JSON; charset=utf-8" } })
    assert.strictEqual(ok.status, 202, JSON.stringify(ok.body))
    await eventually(async () => ((await send(server, `/part/${ok.body.partId}`)).body.status === "completed" ? true : undefined))
    const aborted = await send(server, `/session/${sessionId}/abort`, { method: "POST" })
    assert.strictEqual(aborted.status, 200, JSON.stringify(aborted.body))
  })
})

describe("what a JSON body may hold", () => {
  it("refuses invalid UTF-8 with a 400 naming it (not replaced with U+FFFD), with and without a length", async () => {
    const sessionId = await newSession(server)
    const before = await counts(server)
    const prefix = Buffer.from(`{"tool":"bash","input":{"command":"echo `)
    const bad = Buffer.concat([prefix, Buffer.from([0xff, 0xfe, 0x41]), Buffer.from(`"}}`)])
    for (const chunked of [false, true]) {
      refused(await send(server, `/session/${sessionId}/tool`, { body: bad, headers: json, chunked }), 400, "BadRequest", "UTF-8")
    }
    // A lone surrogate's bytes (CESU-style) are not UTF-8 either.
    const surrogate = Buffer.concat([Buffer.from(`{"title":"`), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from(`"}`)])
    refused(await send(server, "/session", { body: surrogate, headers: json }), 400, "BadRequest", "UTF-8")
    assert.deepStrictEqual(await counts(server), before)
    // Valid UTF-8 beyond ASCII is stored as sent.
    const created = await send(server, "/session", { body: JSON.stringify({ title: "café ✓ 🚀" }), headers: json })
    assert.strictEqual(created.status, 201)
    assert.strictEqual(created.body.title, "café ✓ 🚀")
  })

  it("refuses a 100,000-deep body with a 400 before it is parsed or walked, and the server goes on", async () => {
    const sessionId = await newSession(server)
    const before = await counts(server)
    const deep = `{"tool":"bash","input":{"command":"echo x","extra":${"[".repeat(100_000)}${"]".repeat(100_000)}}}`
    for (const chunked of [false, true]) {
      refused(await send(server, `/session/${sessionId}/tool`, { body: deep, headers: json, chunked }), 400, "BadRequest", "100002 levels", String(maxJsonDepth))
    }
    const deepObject = `{"title":"x","nested":${"{\"a\":".repeat(5_000)}1${"}".repeat(5_000)}}`
    refused(await send(server, "/session", { body: deepObject, headers: json }), 400, "BadRequest", "levels deep")
    assert.deepStrictEqual(await counts(server), before)
    // At the limit it is taken (the input is not the bash tool's business beyond `command`).
    const atLimit = `{"tool":"bash","input":{"command":"echo ok","extra":${"[".repeat(maxJsonDepth - 2)}${"]".repeat(maxJsonDepth - 2)}}}`
    const ok = await send(server, `/session/${sessionId}/tool`, { body: atLimit, headers: json })
    assert.strictEqual(ok.status, 202, JSON.stringify(ok.body))
    assert.strictEqual((await send(server, "/health")).status, 200)
  })

  it("counts depth outside strings only", () => {
    assert.strictEqual(jsonDepth(`{"a":"[[[[{{{{\\"[["}`), 1)
    assert.strictEqual(jsonDepth(`[[1],[[2]]]`), 3)
    assert.strictEqual(jsonDepth(`"\\\\"`), 0)
    assert.strictEqual(jsonDepth(`["\\\\",[["x"]]]`), 3)
  })
})
