import { assert, describe, it } from "@effect/vitest"
import { Containment } from "@vigil/tools"
import type { JsonResponse } from "./support.js"
import { createSession as createServerSession, eventually, openEvents, request, rowCounts, serverPerFile } from "./support.js"

const served = serverPerFile()
const createSession = (body: Record<string, unknown> = {}) => createServerSession(served.url, body)

const getPart = async (id: string) => (await request(`${served.url}/part/${id}`)).body

const partEnded = (id: string, timeoutMs = 10_000) =>
  eventually(async () => {
    const part = await getPart(id)
    return part.status === "completed" || part.status === "error" ? part : undefined
  }, timeoutMs, `part ${id} to end`)

const sessionAtRest = (id: string, timeoutMs = 10_000) =>
  eventually(async () => {
    const session = (await request(`${served.url}/session/${id}`)).body
    return session.status === "busy" || session.status === "waiting" ? undefined : session
  }, timeoutMs, `session ${id} to be at rest`)

/** A JSON error: the status, a `message` that names the problem, and the tag when given. */
const assertJsonError = (response: JsonResponse, status: number, mentions: ReadonlyArray<string>, tag?: string) => {
  assert.strictEqual(response.status, status, JSON.stringify(response.body))
  assert.include(response.headers.get("content-type") ?? "", "application/json")
  assert.isObject(response.body)
  assert.isString(response.body.message)
  if (tag !== undefined) assert.strictEqual(response.body._tag, tag)
  const text = JSON.stringify(response.body)
  for (const word of mentions) assert.include(text, word)
}

describe("the HTTP API", () => {
  it("GET /health reports the instance, the startup recovery and the watchdog", async () => {
    const response = await request(`${served.url}/health`)
    assert.strictEqual(response.status, 200)
    const health = response.body
    assert.strictEqual(health.status, "ok")
    assert.match(health.instance.id, /^ins_/)
    assert.strictEqual(health.instance.pid, process.pid)
    assert.isString(health.instance.host)
    assert.isNumber(health.instance.startedAt)
    assert.strictEqual(health.recovery.orphanedParts, 0)
    assert.strictEqual(health.recovery.dryRun, false)
    assert.isNumber(health.recovery.tookMs)
    assert.strictEqual(health.leakedFibers, 0)
    // What this host really offers (a cgroup as root on Linux with cgroupfs, else the marker).
    assert.strictEqual(health.processContainment, Containment.current().mechanism)
    assert.deepStrictEqual(health.store, { status: "ok", pendingWrites: 0, droppedWrites: 0, lastError: null, since: null })
    assert.isTrue(health.watchdog === null || typeof health.watchdog.tookMs === "number")
  })

  it("creates, lists and gets sessions; an unknown id is a JSON 404", async () => {
    const parent = await createSession({ title: "parent" })
    assert.strictEqual(parent.status, "idle")
    assert.strictEqual(parent.title, "parent")
    assert.isNull(parent.parentId)
    const child = await createSession({ parentId: parent.id })
    assert.strictEqual(child.parentId, parent.id)

    const list = await request(`${served.url}/session`)
    assert.strictEqual(list.status, 200)
    const ids = (list.body.items as Array<{ id: string }>).map((session) => session.id)
    assert.includeMembers(ids, [parent.id, child.id])

    const got = await request(`${served.url}/session/${parent.id}`)
    assert.strictEqual(got.status, 200)
    assert.strictEqual(got.body.id, parent.id)

    assertJsonError(await request(`${served.url}/session/ses_nope`), 404, ["ses_nope"], "SessionNotFound")
    assertJsonError(await request(`${served.url}/session`, { body: { parentId: "ses_gone" } }), 404, ["ses_gone"], "SessionNotFound")
  })

  it("runs a tool: 202 with the part id, then the part completes with its output", async () => {
    const session = await createSession()
    const response = await request(`${served.url}/session/${session.id}/tool`, {
      body: { tool: "bash", input: { command: "echo hi" } }
    })
    assert.strictEqual(response.status, 202, JSON.stringify(response.body))
    const partId = response.body.partId as string
    assert.match(partId, /^prt_/)
    const part = await partEnded(partId)
    assert.strictEqual(part.status, "completed", JSON.stringify(part))
    assert.include(part.output, "hi")
    assert.strictEqual(part.tool, "bash")
    assert.strictEqual(part.sessionId, session.id)

    const parts = await request(`${served.url}/session/${session.id}/part`)
    assert.strictEqual(parts.status, 200)
    assert.deepStrictEqual((parts.body.items as Array<{ id: string }>).map((p) => p.id), [partId])
    assert.isNull(parts.body.next)
    const rested = await sessionAtRest(session.id)
    assert.strictEqual(rested.status, "idle")
  })

  it("streams a tool's part.updated events over SSE, running then completed", async () => {
    const events = await openEvents(served.url)
    try {
      assert.strictEqual(events.response.status, 200)
      assert.include(events.response.headers.get("content-type") ?? "", "text/event-stream")
      const session = await createSession()
      const response = await request(`${served.url}/session/${session.id}/tool`, {
        body: { tool: "bash", input: { command: "echo hi" } }
      })
      assert.strictEqual(response.status, 202)
      const partId = response.body.partId as string
      const statuses = await eventually(async () => {
        const seen = events.messages
          .filter((message) => message.event === "part.updated" && message.data.part.id === partId)
          .map((message) => message.data.part.status as string)
        return seen.includes("completed") ? seen : undefined
      }, 10_000, "the completed event")
      // The process record may add a second `running` update; the order is what matters.
      assert.strictEqual(statuses[0], "running")
      assert.strictEqual(statuses[statuses.length - 1], "completed")
      assert.deepStrictEqual(statuses.filter((status) => status !== "running"), ["completed"])
      for (const message of events.messages) assert.strictEqual(message.data.type, message.event)
      const completed = events.messages.find((m) => m.event === "part.updated" && m.data.part.status === "completed")!
      assert.include(completed.data.part.output, "hi")
      assert.isTrue(
        events.messages.some((m) => m.event === "session.updated" && m.data.session.id === session.id),
        "session.updated events too"
      )
    } finally {
      await events.close()
    }
  })

  it("a tool's own timeout ends it as ToolTimeout", async () => {
    const session = await createSession()
    const started = Date.now()
    const response = await request(`${served.url}/session/${session.id}/tool`, {
      body: { tool: "bash", input: { command: "sleep 30" }, timeout: 300 }
    })
    assert.strictEqual(response.status, 202, JSON.stringify(response.body))
    const part = await partEnded(response.body.partId, 8_000)
    assert.strictEqual(part.status, "error")
    assert.deepStrictEqual(part.error, { _tag: "ToolTimeout", timeout: 300 })
    assert.isBelow(Date.now() - started, 5_000)
    // The session is free again for the next call, whatever the part ended as.
    await sessionAtRest(session.id)
  })

  it("a busy session answers 409; abort ends its turn and part with SessionCancelled", async () => {
    const session = await createSession()
    const first = await request(`${served.url}/session/${session.id}/tool`, {
      body: { tool: "bash", input: { command: "sleep 30" } }
    })
    assert.strictEqual(first.status, 202)
    assertJsonError(
      await request(`${served.url}/session/${session.id}/tool`, { body: { tool: "bash", input: { command: "echo again" } } }),
      409,
      [session.id, "busy"],
      "SessionBusy"
    )
    assertJsonError(
      await request(`${served.url}/session/${session.id}/prompt`, { body: { text: "[]" } }),
      409,
      [session.id],
      "SessionBusy"
    )
    const aborted = await request(`${served.url}/session/${session.id}/abort`, { method: "POST" })
    assert.strictEqual(aborted.status, 200, JSON.stringify(aborted.body))
    assert.strictEqual(aborted.body.status, "cancelled")
    assert.deepStrictEqual(aborted.body.cancelReason, { _tag: "SessionCancelled", by: "api" })
    const part = await getPart(first.body.partId)
    assert.strictEqual(part.status, "error")
    assert.deepStrictEqual(part.error, { _tag: "SessionCancelled", by: "api" })
    // Only the first call made a part: the refused ones wrote nothing.
    const parts = await request(`${served.url}/session/${session.id}/part`)
    assert.strictEqual(parts.body.items.length, 1)
  })

  it("runs a prompt under the script model (202), and the session takes another one after", async () => {
    const session = await createSession()
    const script = JSON.stringify([{ tool: "bash", input: { command: "echo from-script" } }, { text: "all done" }])
    const response = await request(`${served.url}/session/${session.id}/prompt`, { body: { text: script } })
    assert.strictEqual(response.status, 202, JSON.stringify(response.body))
    assert.strictEqual(response.body.sessionId, session.id)
    const rested = await sessionAtRest(session.id)
    assert.strictEqual(rested.status, "idle")
    const parts = (await request(`${served.url}/session/${session.id}/part`)).body.items as Array<Record<string, unknown>>
    const bash = parts.find((part) => part.tool === "bash")
    assert.strictEqual(bash?.status, "completed")
    assert.include(String(bash?.output), "from-script")
    assert.isTrue(parts.some((part) => part.kind === "text" && part.output === "all done"))

    const again = await request(`${served.url}/session/${session.id}/prompt`, { body: { text: "[{\"text\":\"again\"}]", model: "script" } })
    assert.strictEqual(again.status, 202)
    assert.strictEqual((await sessionAtRest(session.id)).status, "idle")
  })

  it("a prompt over 64 KiB is stored whole and its turn runs; one over the 1 MiB body limit is refused 413 naming it", async () => {
    const session = await createSession()
    // 100 KB of script: the old 64 KiB cut on the prompt part made it "not a valid script".
    const padding = "p".repeat(100_000)
    const script = JSON.stringify([{ text: padding }, { tool: "bash", input: { command: "echo after-the-padding" } }, { text: "end" }])
    const response = await request(`${served.url}/session/${session.id}/prompt`, { body: { text: script } })
    assert.strictEqual(response.status, 202, JSON.stringify(response.body))
    assert.strictEqual((await sessionAtRest(session.id)).status, "idle")
    const parts = (await request(`${served.url}/session/${session.id}/part?limit=1000`)).body.items as Array<Record<string, unknown>>
    assert.strictEqual(parts.find((part) => part.kind === "prompt")?.output, script)
    assert.isTrue(parts.some((part) => part.kind === "text" && part.output === padding))
    assert.include(String(parts.find((part) => part.tool === "bash")?.output), "after-the-padding")

    const other = await createSession()
    const tooBig = await request(`${served.url}/session/${other.id}/prompt`, { body: { text: "x".repeat(1024 * 1024 + 1) } })
    assertJsonError(tooBig, 413, ["1048576 bytes (1 MiB)"], "PayloadTooLarge")
    const untouched = (await request(`${served.url}/session/${other.id}/part`)).body
    assert.deepStrictEqual(untouched, { items: [], next: null })
  })

  it("answers a waiting session's question through /reply", async () => {
    const session = await createSession()
    const script = JSON.stringify([{ tool: "ask", input: { question: "go on?" } }, { text: "thanks" }])
    assert.strictEqual((await request(`${served.url}/session/${session.id}/prompt`, { body: { text: script } })).status, 202)
    const ask = await eventually(async () => {
      const current = (await request(`${served.url}/session/${session.id}`)).body
      if (current.status !== "waiting") return undefined
      const parts = (await request(`${served.url}/session/${session.id}/part`)).body.items as Array<{ id: string; tool: string; status: string }>
      return parts.find((part) => part.tool === "ask" && part.status === "running")
    }, 10_000, "the session to wait")
    assertJsonError(
      await request(`${served.url}/session/${session.id}/reply`, { body: { requestId: "req_nope", answer: "yes" } }),
      404,
      ["req_nope"],
      "RequestNotFound"
    )
    const reply = await request(`${served.url}/session/${session.id}/reply`, { body: { requestId: ask.id, answer: "yes" } })
    assert.strictEqual(reply.status, 200, JSON.stringify(reply.body))
    assert.deepStrictEqual(reply.body, { sessionId: session.id, requestId: ask.id })
    assert.strictEqual((await sessionAtRest(session.id)).status, "idle")
    const answered = await getPart(ask.id)
    assert.strictEqual(answered.status, "completed")
    assert.strictEqual(answered.output, "yes")
  })

  it("GET /part/:id of an unknown part is a JSON 404", async () => {
    assertJsonError(await request(`${served.url}/part/prt_nope`), 404, ["prt_nope"], "PartNotFound")
  })

  it("serves the OpenAPI document and its UI at /doc", async () => {
    const doc = await fetch(`${served.url}/doc`)
    assert.strictEqual(doc.status, 200)
    assert.include(doc.headers.get("content-type") ?? "", "text/html")
    assert.include(await doc.text(), "swagger-ui")
    const spec = await request(`${served.url}/openapi.json`)
    assert.strictEqual(spec.status, 200)
    assert.includeMembers(Object.keys(spec.body.paths), [
      "/health",
      "/session",
      "/session/{id}",
      "/session/{id}/tool",
      "/session/{id}/prompt",
      "/session/{id}/abort",
      "/session/{id}/reply",
      "/session/{id}/part",
      "/part/{id}",
      "/event"
    ])
  })
})

describe("bad input", () => {
  const counts = () =>
    rowCounts(served.server.db)

  it("answers each with a JSON 4xx naming the problem, writes nothing, and the server goes on", async () => {
    const session = await createSession({ title: "target" })
    const before = await counts()
    const tool = `${served.url}/session/${session.id}/tool`

    // Malformed JSON.
    assertJsonError(await request(`${served.url}/session`, { raw: "{\"title\": " }), 400, ["JSON"], "BadRequest")
    assertJsonError(await request(tool, { raw: "{tool: bash}" }), 400, ["JSON"], "BadRequest")
    // Wrong types.
    assertJsonError(await request(`${served.url}/session`, { body: { title: 5 } }), 400, ["title"], "HttpApiDecodeError")
    assertJsonError(await request(`${served.url}/session`, { body: [1, 2] }), 400, [], "HttpApiDecodeError")
    assertJsonError(await request(tool, { body: { tool: 42, input: {} } }), 400, ["tool"], "HttpApiDecodeError")
    assertJsonError(
      await request(tool, { body: { tool: "bash", input: { command: "echo x" }, timeout: -5 } }),
      400,
      ["timeout"],
      "HttpApiDecodeError"
    )
    assertJsonError(
      await request(tool, { body: { tool: "bash", input: { command: "echo x" }, timeout: 1.5 } }),
      400,
      ["timeout"],
      "HttpApiDecodeError"
    )
    // Missing fields.
    assertJsonError(await request(tool, { body: { input: { command: "echo x" } } }), 400, ["tool"], "HttpApiDecodeError")
    assertJsonError(await request(`${served.url}/session/${session.id}/prompt`, { body: {} }), 400, ["text"], "HttpApiDecodeError")
    assertJsonError(
      await request(`${served.url}/session/${session.id}/reply`, { body: { requestId: "req_x" } }),
      400,
      ["answer"],
      "HttpApiDecodeError"
    )
    assertJsonError(await request(tool, { raw: "" }), 400, [], "HttpApiDecodeError")
    // Unknown tool, invalid tool input, unknown model.
    assertJsonError(await request(tool, { body: { tool: "teleport", input: {} } }), 400, ["teleport", "bash"], "UnknownTool")
    assertJsonError(await request(tool, { body: { tool: "bash", input: { cmd: "ls" } } }), 400, ["command"], "InvalidToolInput")
    assertJsonError(
      await request(`${served.url}/session/${session.id}/prompt`, { body: { text: "[]", model: "gpt-nope" } }),
      400,
      ["gpt-nope"],
      "UnknownModel"
    )
    // Unknown ids.
    for (const path of ["tool", "prompt", "reply", "abort", "part"]) {
      const body = path === "tool"
        ? { tool: "bash", input: { command: "echo x" } }
        : path === "prompt"
        ? { text: "[]" }
        : path === "reply"
        ? { requestId: "req_x", answer: "y" }
        : undefined
      const response = await request(`${served.url}/session/ses_missing/${path}`, {
        method: path === "part" ? "GET" : "POST",
        ...(body !== undefined ? { body } : {})
      })
      assertJsonError(response, 404, ["ses_missing"], "SessionNotFound")
    }
    assertJsonError(await request(`${served.url}/part/prt_missing`), 404, ["prt_missing"], "PartNotFound")
    assertJsonError(await request(`${served.url}/no/such/route`), 404, ["/no/such/route"], "RouteNotFound")
    // Oversized bodies: declared, and streamed without a length.
    const big = JSON.stringify({ tool: "bash", input: { command: `echo ${"x".repeat(1024 * 1024 + 10)}` } })
    assertJsonError(await request(tool, { raw: big }), 413, ["1 MiB"], "PayloadTooLarge")
    const chunked = await fetch(tool, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: new ReadableStream({
        start(controller) {
          const chunk = new TextEncoder().encode("x".repeat(64 * 1024))
          for (let i = 0; i < 20; i++) controller.enqueue(chunk)
          controller.close()
        }
      }),
      duplex: "half"
    } as RequestInit)
    assertJsonError({ status: chunked.status, headers: chunked.headers, body: await chunked.json() }, 413, [], "PayloadTooLarge")

    // Still serving, and nothing was written by any of them.
    assert.strictEqual((await request(`${served.url}/health`)).status, 200)
    assert.deepStrictEqual(await counts(), before)
    assert.strictEqual((await request(`${served.url}/session/${session.id}`)).body.status, "idle")
    // A body sent without a length (chunked) is read within the limit, and decoded as usual.
    const streamed = (text: string) =>
      fetch(`${served.url}/session`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: new ReadableStream({
          start(controller) {
            controller.enqueue(new TextEncoder().encode(text))
            controller.close()
          }
        }),
        duplex: "half"
      } as RequestInit)
    const bad = await streamed("{\"title\":")
    assertJsonError({ status: bad.status, headers: bad.headers, body: await bad.json() }, 400, ["JSON"], "BadRequest")
    const good = await streamed(JSON.stringify({ title: "streamed" }))
    assert.strictEqual(good.status, 201)
    assert.strictEqual(((await good.json()) as { title: string }).title, "streamed")
    // A JSON body labelled as something else (`curl -d` says form; a cross-site form sends one) is
    // refused: a body must say application/json (RequestGuard.test.ts has the rest of the rules).
    const labelled = await request(`${served.url}/session`, {
      raw: JSON.stringify({ title: "from curl" }),
      headers: { "content-type": "application/x-www-form-urlencoded" }
    })
    assertJsonError(labelled, 415, ["application/json"], "UnsupportedMediaType")
    assert.deepStrictEqual(await counts(), { ...before, sessions: before.sessions + 1 }, "only the streamed session was made")
    // And the session still takes work.
    const ok = await request(tool, { body: { tool: "bash", input: { command: "echo still-fine" } } })
    assert.strictEqual(ok.status, 202)
    assert.strictEqual((await partEnded(ok.body.partId)).status, "completed")
  })
})
