import { assert, describe, it } from "@effect/vitest"
import { createServer, connect } from "node:net"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import { afterAll, afterEach } from "vitest"
import { eventually, killChildren, removeDirs, tempDir, vigil } from "./support.js"

const dirs: Array<string> = []
afterEach(() => killChildren())
afterAll(() => removeDirs(dirs))

/** A port nothing listens on now, for every start of the server to take in turn. */
const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })

/**
 * What became of one request: answered (the status line's code), refused (nothing listened), cut
 * (connected, then reset or closed without a byte back: a server that stops listening resets the
 * connections still in its backlog, and closes the idle ones it accepted), or left waiting with
 * no byte back for `waitMillis`: lost. Times are ms since the test began.
 */
type Outcome =
  | { readonly _tag: "Answered"; readonly status: number }
  | { readonly _tag: "Refused" }
  | { readonly _tag: "Cut"; readonly code: string; readonly at: number }
  | { readonly _tag: "Lost"; readonly connectedAt: number }

/**
 * Long enough that a request merely slow to be answered on a loaded machine is not taken for lost;
 * short of the time an unanswered one waits (each server runs for `upMillis` after it is ready,
 * and a stop cuts what is still open only after 2 s).
 */
const waitMillis = 2_000
const upMillis = 2_500

/** `GET /health` on a connection of its own; a raw socket, so the first byte back is what counts. */
const probe = (port: number, startedAt: number): Promise<Outcome> =>
  new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" })
    let connectedAt: number | undefined
    let timer: NodeJS.Timeout | undefined
    const now = () => Math.round(performance.now() - startedAt)
    const settle = (outcome: Outcome) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(outcome)
    }
    socket.once("connect", () => {
      connectedAt = now()
      socket.write(`GET /health HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`)
      timer = setTimeout(() => settle({ _tag: "Lost", connectedAt: connectedAt! }), waitMillis)
    })
    socket.once("data", (data: Buffer) => settle({ _tag: "Answered", status: Number(/^HTTP\/1\.1 (\d{3})/.exec(data.toString("latin1"))?.[1] ?? 0) }))
    socket.once("error", (error: NodeJS.ErrnoException) =>
      settle(connectedAt === undefined && error.code === "ECONNREFUSED" ? { _tag: "Refused" } : { _tag: "Cut", code: error.code ?? error.message, at: now() })
    )
    socket.once("close", () => settle({ _tag: "Cut", code: "closed", at: now() }))
  })

describe("vigil serve, restarted under a stream of connections", () => {
  // The dashboard reconnects as soon as a server is back: a request that reaches the port while
  // the server starts (or stops) must be answered or refused, never accepted and left waiting.
  it("answers or refuses every request, from the first accepted connection on, through five starts", async () => {
    const dir = tempDir(dirs)
    const db = join(dir, "vigil.db")
    const port = await freePort()
    const startedAt = performance.now()
    const outcomes: Array<Promise<Outcome>> = []
    let hammering = true
    const hammer = (async () => {
      while (hammering) {
        outcomes.push(probe(port, startedAt))
        await new Promise((resolve) => setTimeout(resolve, 2))
      }
    })()

    const startsAt: Array<number> = []
    const stopsAt: Array<number> = []
    for (let start = 0; start < 5; start++) {
      startsAt.push(Math.round(performance.now() - startedAt))
      const server = vigil(["serve", "--port", String(port), "--db", db], { cwd: dir })
      await eventually(async () => {
        if (server.child.exitCode !== null) throw new Error(`vigil serve exited ${server.child.exitCode}:\n${server.stderr()}`)
        return server.stdout().includes("vigil listening on") ? true : undefined
      }, 30_000, "vigil serve to listen")
      await new Promise((resolve) => setTimeout(resolve, upMillis))
      stopsAt.push(Math.round(performance.now() - startedAt))
      server.child.kill("SIGTERM")
      const exit = await server.exited
      assert.strictEqual(exit.code, 0, server.stderr())
    }
    hammering = false
    await hammer
    const settled = await Promise.all(outcomes)

    const count = (tag: Outcome["_tag"]) => settled.filter((outcome) => outcome._tag === tag).length
    const statuses = new Map<number, number>()
    for (const outcome of settled) if (outcome._tag === "Answered") statuses.set(outcome.status, (statuses.get(outcome.status) ?? 0) + 1)
    const lost = settled.filter((outcome) => outcome._tag === "Lost")
    // A cut is a refusal only where it comes from a stop: at once, not from a server still serving.
    const cutsAwayFromAStop = settled.filter((outcome) =>
      outcome._tag === "Cut" && !stopsAt.some((stop) => outcome.at >= stop && outcome.at - stop < 3_000)
    )
    console.log(
      `${settled.length} requests: ${count("Answered")} answered (${[...statuses].map(([status, n]) => `${n}× ${status}`).join(", ")}), ` +
        `${count("Refused")} refused, ${count("Cut")} cut (at a stop), ${lost.length} lost; ` +
        `starts at ${startsAt.join(", ")} ms, stops at ${stopsAt.join(", ")} ms`
    )
    assert.isAbove(statuses.get(200) ?? 0, 100, "the servers did serve")
    assert.isAbove(count("Refused"), 0, "requests did arrive between the servers")
    assert.deepStrictEqual(lost.slice(0, 5), [], `${lost.length} requests accepted and never answered`)
    assert.deepStrictEqual(cutsAwayFromAStop.slice(0, 5), [], `${cutsAwayFromAStop.length} connections cut while a server was serving`)
    // Only 200 (served) and 503 (not serving yet, or no more) are answers here.
    assert.deepStrictEqual([...statuses.keys()].filter((status) => status !== 200 && status !== 503), [])
  }, 120_000)
})
