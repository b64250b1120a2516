import { assert, describe, it } from "@effect/vitest"
import { Redacted } from "effect"
import { join } from "node:path"
import { afterAll, beforeAll } from "vitest"
import { isAuthorized } from "../src/Auth.js"
import type { RunningServer } from "./support.js"
import { openEvents, removeDirs, startServer, tempDir } from "./support.js"

const dirs: Array<string> = []
const password = "s3cret-Pass"
const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`
let secured: RunningServer
let open: RunningServer

beforeAll(async () => {
  secured = await startServer({ db: join(tempDir(dirs), "vigil.db"), password: Redacted.make(password) })
  open = await startServer({ db: join(tempDir(dirs), "vigil.db") })
})

afterAll(async () => {
  await secured?.close()
  await open?.close()
  removeDirs(dirs)
})

const status = async (url: string, authorization?: string) => {
  const response = await fetch(url, authorization === undefined ? {} : { headers: { authorization } })
  await response.body?.cancel()
  return response
}

describe("basic auth", () => {
  it("with VIGIL_SERVER_PASSWORD set, every route wants user vigil and the password", async () => {
    for (const path of ["/health", "/session", "/doc", "/openapi.json", "/event", "/part/prt_x"]) {
      const none = await status(`${secured.url}${path}`)
      assert.strictEqual(none.status, 401, path)
      assert.strictEqual(none.headers.get("www-authenticate"), `Basic realm="vigil"`)
      assert.strictEqual((await status(`${secured.url}${path}`, basic("vigil", "wrong"))).status, 401, path)
      assert.strictEqual((await status(`${secured.url}${path}`, basic("admin", password))).status, 401, path)
      assert.strictEqual((await status(`${secured.url}${path}`, "Bearer abc")).status, 401, path)
    }
    const body = (await (await fetch(`${secured.url}/health`)).json()) as { _tag: string }
    assert.strictEqual(body._tag, "Unauthorized")
    assert.notInclude(JSON.stringify(body), password)

    const health = await status(`${secured.url}/health`, basic("vigil", password))
    assert.strictEqual(health.status, 200)
    const events = await openEvents(secured.url, { authorization: basic("vigil", password) })
    try {
      assert.strictEqual(events.response.status, 200)
      assert.include(events.response.headers.get("content-type") ?? "", "text/event-stream")
      assert.isTrue(events.comments.some((comment) => comment.startsWith(": connected")))
    } finally {
      await events.close()
    }
    // A request refused by auth never reaches a handler: nothing was created.
    const created = await fetch(`${secured.url}/session`, { method: "POST", body: "{}", headers: { "content-type": "application/json" } })
    assert.strictEqual(created.status, 401)
    const list = await (await fetch(`${secured.url}/session`, { headers: { authorization: basic("vigil", password) } })).json()
    assert.deepStrictEqual(list, { items: [], next: null })
  })

  it("without a password, routes answer without credentials", async () => {
    assert.strictEqual((await status(`${open.url}/health`)).status, 200)
    const events = await openEvents(open.url)
    try {
      assert.strictEqual(events.response.status, 200)
    } finally {
      await events.close()
    }
  })

  it("parses the Authorization header strictly", () => {
    const secret = Redacted.make("pw:with:colons")
    assert.isTrue(isAuthorized(basic("vigil", "pw:with:colons"), secret))
    assert.isFalse(isAuthorized(basic("vigil", "pw:with"), secret))
    assert.isFalse(isAuthorized(undefined, secret))
    assert.isFalse(isAuthorized("Basic !!!", secret))
    assert.isFalse(isAuthorized(`Basic ${Buffer.from("vigil").toString("base64")}`, secret))
  })
})
