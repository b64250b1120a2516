import { assert, describe, it } from "@effect/vitest"
import { existsSync, readFileSync, statSync } from "node:fs"
import { connect } from "node:net"
import type { Socket } from "node:net"
import { join } from "node:path"
import { afterAll, afterEach } from "vitest"
import { eventually, isAlive, killChildren, removeDirs, request, serveProcess, tempDir } from "./support.js"

/**
 * The memory guarantee on a real server with a small heap: whatever a tool prints or a client
 * fails to read, the server lives and its RSS grows by less than `rssGrowthBoundMb` (the bound
 * the README states). Measured on a loaded 2-core machine: +32 MB at the peak of the flood (the
 * unbounded runner held the whole 200 MB), +21 MB over 400 calls with a stalled client.
 */
const heapMb = 96
const rssGrowthBoundMb = 64

const dirs: Array<string> = []
const sockets: Array<Socket> = []
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy()
  killChildren()
})
afterAll(() => removeDirs(dirs))

const rssMb = (pid: number): number => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024
}

const startServer = async () => {
  const dir = tempDir(dirs)
  const db = join(dir, "vigil.db")
  const server = await serveProcess(["--db", db], { cwd: dir, env: { NODE_OPTIONS: `--max-old-space-size=${heapMb}` } })
  return { dir, db, server, pid: server.child.pid! }
}

const runTool = async (url: string, sessionId: string, command: string, timeout = 120_000) => {
  const started = await request(`${url}/session/${sessionId}/tool`, { body: { tool: "bash", input: { command, timeout } } })
  assert.strictEqual(started.status, 202, JSON.stringify(started.body))
  return started.body.partId as string
}

const untilEnded = (url: string, partId: string, onPoll: () => void = () => undefined) =>
  eventually(async () => {
    onPoll()
    const part = (await request(`${url}/part/${partId}`)).body
    if (part.status !== "completed" && part.status !== "error") return undefined
    // A part ends before its turn does (the turn frees the session after the part's end is
    // written): the session takes the next call once it is at rest.
    const session = (await request(`${url}/session/${part.sessionId}`)).body
    return session.status === "busy" ? undefined : part
  }, 240_000, `part ${partId} and its turn to end`)

describe("memory stays bounded, on a real server with a small heap", () => {
  it("a `yes | head -c 200M` flood: the server lives, the part keeps head and tail, the file has the rest", async () => {
    const { dir, pid, server } = await startServer()
    const session = (await request(`${server.url}/session`, { body: {} })).body
    // Warm up (the first shell, the first part) so the baseline is the server at work, not at rest.
    await untilEnded(server.url, await runTool(server.url, session.id, "echo warm"))
    const baseline = rssMb(pid)
    let peak = baseline
    const partId = await runTool(server.url, session.id, "yes | head -c 200000000; echo; echo 'the last line' >&2; exit 3")
    const part = await untilEnded(server.url, partId, () => (peak = Math.max(peak, rssMb(pid))))
    console.log(`flood of 200 MB: RSS ${baseline.toFixed(0)} MB → peak ${peak.toFixed(0)} MB (heap ${heapMb} MB)`)
    assert.isTrue(isAlive(pid), `the server died:\n${server.stderr()}`)
    assert.strictEqual(part.status, "completed", JSON.stringify(part.error))
    assert.isAtMost(Buffer.byteLength(part.output), 64 * 1024)
    assert.isTrue(part.output.startsWith("y\ny\n"))
    // stdout and stderr are two pipes: the last line's place among the last bytes is not fixed.
    assert.isTrue(part.output.endsWith("\n[exit code 3]"), part.output.slice(-80))
    assert.include(part.output.slice(-100), "the last line\n")
    const file = join(dir, "output", `${partId}.log`)
    assert.include(part.output, `full output: ${file}`)
    assert.isTrue(existsSync(file))
    // The file stops at its 32 MiB bound, with a line saying so.
    assert.strictEqual(statSync(file).size, 32 * 1024 * 1024 + Buffer.byteLength("\n… [the output file stops at 33554432 bytes, its bound]\n"))
    assert.isBelow(peak - baseline, rssGrowthBoundMb)
  }, 300_000)

  it("an /event client that never reads: the server lives, and the stream ends with stream.overflow", async () => {
    const { pid, server } = await startServer()
    const { port } = new URL(server.url)
    // A raw socket that sends the request, sees the stream start, and then never reads again.
    const socket = connect({ host: "127.0.0.1", port: Number(port) })
    sockets.push(socket)
    let received = ""
    let paused = false
    await new Promise<void>((resolve) => {
      socket.on("connect", () => socket.write(`GET /event HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`))
      socket.on("data", (chunk) => {
        received += chunk.toString()
        if (!paused && received.includes(": connected")) {
          paused = true
          socket.pause()
          resolve()
        }
      })
    })
    const sessions = await Promise.all(Array.from({ length: 4 }, () => request(`${server.url}/session`, { body: {} })))
    await untilEnded(server.url, await runTool(server.url, sessions[0]!.body.id, "echo warm"))
    const baseline = rssMb(pid)
    let peak = baseline
    // Each call's completed event carries ~60 KB of output; 4 sessions run side by side.
    const calls = 100
    await Promise.all(sessions.map(async (session) => {
      for (let i = 0; i < calls; i++) {
        const partId = await runTool(server.url, session.body.id, "head -c 60000 /dev/zero | tr '\\0' 'x'")
        await untilEnded(server.url, partId, () => (peak = Math.max(peak, rssMb(pid))))
      }
    }))
    peak = Math.max(peak, rssMb(pid))
    console.log(`${calls * sessions.length} tool calls with a stalled /event client: RSS ${baseline.toFixed(0)} MB → peak ${peak.toFixed(0)} MB`)
    assert.isTrue(isAlive(pid), `the server died:\n${server.stderr()}`)
    assert.isBelow(peak - baseline, rssGrowthBoundMb)
    // Reading now: what the kernel held, then the overflow event, then the end of the stream.
    socket.resume()
    await eventually(async () => (received.includes("stream.overflow") ? true : undefined), 30_000, "the overflow event")
    assert.match(received, /event: stream\.overflow\ndata: \{"type":"stream.overflow","limit":4096,/)
    const health = await request(`${server.url}/health`)
    assert.strictEqual(health.status, 200)
  }, 600_000)
})
