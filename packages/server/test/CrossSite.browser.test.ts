import { assert, describe, it } from "@effect/vitest"
import { existsSync } from "node:fs"
import type { Server } from "node:http"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import type { Browser, Response } from "playwright-core"
import { afterAll, beforeAll } from "vitest"
import { chromiumAvailable, chromiumPath, inCi, launchBrowser } from "./DashboardSupport.js"
import type { RunningServer } from "./support.js"
import { eventually, removeDirs, request, rowCounts, startServer, tempDir } from "./support.js"

/**
 * The browser as a weapon, with no password set: a page the user visits tries to start a bash
 * tool on the server in a real headless chromium, by every way a page can reach loopback without
 * the server's consent: a `no-cors` fetch with a text/plain body, a form POST (`text/plain` and
 * urlencoded), a `cors` fetch with a JSON body (a preflight), and DNS rebinding (the page's own
 * name now resolving to 127.0.0.1). Each request reaches the server and is refused; no part is made
 * and the command's marker file never appears.
 */

const dirs: Array<string> = []
let server: RunningServer
let attacker: Server
let attackerUrl: string
let browser: Browser
let closeBrowser: () => Promise<void> = async () => undefined
let sessionId: string
let markerDir: string

const counts = () =>
  rowCounts(server.db)

/**
 * The attacking page. It knows the session id (the worst case: ids leak through logs and
 * screenshots) and writes a marker file if any of its commands runs.
 */
const attackPage = (target: string, marker: (n: number) => string) => {
  const tool = (n: number) => JSON.stringify({ tool: "bash", input: { command: `touch ${marker(n)}` } })
  // A text/plain form posts `name=value`: a name that is a JSON prefix and a value that closes it.
  const formName = (n: number) => tool(n).slice(0, -2) + `,"pad":"`
  const escape = (text: string) => text.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;")
  return `<!doctype html><html><head><title>cute cats</title></head><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="plain" method="POST" enctype="text/plain" target="sink1" action="${target}/session/${sessionId}/tool">
  <input name="${escape(formName(3))}" value='"}}'>
</form>
<form id="urlencoded" method="POST" target="sink2" action="${target}/session/${sessionId}/tool">
  <input name="${escape(tool(4))}" value="">
</form>
<script>
  const results = [];
  const attempt = async (name, run) => {
    try { const r = await run(); results.push(name + ": " + r.type + " " + r.status); }
    catch (e) { results.push(name + ": blocked " + e.message); }
  };
  (async () => {
    await attempt("no-cors text/plain", () => fetch(${JSON.stringify(`${target}/session/${sessionId}/tool`)}, {
      method: "POST", mode: "no-cors", headers: { "content-type": "text/plain" }, body: ${JSON.stringify(tool(1))}
    }));
    await attempt("cors json", () => fetch(${JSON.stringify(`${target}/session/${sessionId}/tool`)}, {
      method: "POST", headers: { "content-type": "application/json" }, body: ${JSON.stringify(tool(2))}
    }));
    await attempt("no-cors new session", () => fetch(${JSON.stringify(`${target}/session`)}, {
      method: "POST", mode: "no-cors", body: "{}"
    }));
    document.getElementById("plain").submit();
    document.getElementById("urlencoded").submit();
    window.attackResults = results;
    document.title = "done";
  })();
</script></body></html>`
}

describe.skipIf(!chromiumAvailable && !inCi)("a web page on another origin cannot drive the server", () => {
  beforeAll(async () => {
    if (!chromiumAvailable) throw new Error(`no chromium at ${chromiumPath} (set VIGIL_CHROMIUM): CI must run the browser tests`)
    const dir = tempDir(dirs)
    markerDir = tempDir(dirs)
    server = await startServer({ db: join(dir, "vigil.db") })
    const created = await request(`${server.url}/session`, { body: { title: "the user's session" } })
    sessionId = created.body.id
    attacker = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/html" })
      res.end(attackPage(server.url, (n) => join(markerDir, `pwned-${n}`)))
    })
    await new Promise<void>((resolve) => attacker.listen(0, "127.0.0.1", resolve))
    attackerUrl = `http://localhost:${(attacker.address() as AddressInfo).port}`
    // `rebind.test` resolves to loopback, as an attacker's name does once it is rebound. And this
    // chromium's own Local Network Access checks are off: they would stop the rebound page's
    // requests before they reach the server, but older browsers have none and a user may grant
    // the permission; the server must not rely on them.
    ;({ browser, close: closeBrowser } = await launchBrowser([
      "--host-resolver-rules=MAP rebind.test 127.0.0.1",
      "--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessRespectPreflightResults,BlockInsecurePrivateNetworkRequests"
    ]))
  }, 60_000)

  afterAll(async () => {
    await closeBrowser()
    await new Promise((resolve) => attacker?.close(resolve))
    await server?.close()
    removeDirs(dirs)
  })

  /** Every response of the server the page saw, as `METHOD path → status`. */
  const watch = (responses: Array<string>, origin: string) => (response: Response) => {
    if (response.url().startsWith(origin)) {
      responses.push(`${response.request().method()} ${new URL(response.url()).pathname} → ${response.status()}`)
    }
  }

  it("a cross-site page: fetches (no-cors, cors) and form POSTs are refused; no part, no command", async () => {
    const before = await counts()
    const page = await browser.newPage()
    const responses: Array<string> = []
    page.on("response", watch(responses, server.url))
    await page.goto(attackerUrl)
    await eventually(async () => ((await page.title()) === "done" ? true : undefined), 15_000, "the attack to run")
    const tool = `/session/${sessionId}/tool`
    // Both forms' navigations reach the server too (their answers land in the iframes).
    await eventually(async () => (responses.filter((r) => r.startsWith(`POST ${tool}`)).length >= 3 ? true : undefined), 15_000, "the form posts")
    const results = (await page.evaluate(() => (window as unknown as { attackResults: Array<string> }).attackResults))
    console.log(`cross-site attempts: ${JSON.stringify(results)}; server answers: ${JSON.stringify(responses)}`)
    // The no-cors fetch and the forms arrived and were refused for their Origin; the cors fetch
    // never got past its preflight (refused too), so the browser did not send it.
    assert.includeMembers(responses, [`POST ${tool} → 403`, `POST /session → 403`])
    assert.strictEqual(responses.filter((r) => r === `POST ${tool} → 403`).length, 3, JSON.stringify(responses))
    assert.isFalse(responses.some((r) => /→ 2\d\d/.test(r)), JSON.stringify(responses))
    assert.include(results.join("\n"), "cors json: blocked")
    await page.close()

    assert.deepStrictEqual(await counts(), before, "no session and no part was made")
    for (const n of [1, 2, 3, 4]) assert.isFalse(existsSync(join(markerDir, `pwned-${n}`)), `command ${n} ran`)
    assert.strictEqual((await request(`${server.url}/session/${sessionId}`)).body.status, "idle")
  })

  it("DNS rebinding: the page's own name resolving to 127.0.0.1 is refused for its Host, same-origin or not", async () => {
    const before = await counts()
    const rebound = `http://rebind.test:${server.port}`
    const page = await browser.newPage()
    const responses: Array<string> = []
    page.on("response", watch(responses, rebound))
    // The page was served by the attacker under that name and port; only then did the name rebind,
    // so its later requests (same-origin to the browser) reach the server.
    await page.route(`${rebound}/cats`, (route) =>
      route.fulfill({ status: 200, contentType: "text/html", body: attackPage(rebound, (n) => join(markerDir, `rebound-${n}`)) }))
    await page.goto(`${rebound}/cats`)
    await eventually(async () => ((await page.title()) === "done" ? true : undefined), 15_000, "the attack to run")
    const tool = `/session/${sessionId}/tool`
    await eventually(async () => (responses.filter((r) => r.startsWith(`POST ${tool}`)).length >= 4 ? true : undefined), 15_000, "the posts")
    console.log(`rebinding: server answers: ${JSON.stringify(responses)}`)
    // Same-origin now: no preflight, the JSON fetch is sent, and still refused.
    assert.includeMembers(responses, [`POST ${tool} → 421`, `POST /session → 421`])
    assert.isFalse(responses.some((r) => !r.endsWith("→ 421") && r !== "GET /cats → 200"), JSON.stringify(responses))
    // Reading the dashboard or the API under that name is refused too.
    const dashboard = await page.goto(`${rebound}/`)
    assert.strictEqual(dashboard?.status(), 421)
    await page.close()

    assert.deepStrictEqual(await counts(), before)
    for (const n of [1, 2, 3, 4]) assert.isFalse(existsSync(join(markerDir, `rebound-${n}`)), `command ${n} ran`)
  })
})
