import { assert, describe, it } from "@effect/vitest"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import { afterAll } from "vitest"
import { eventually, removeDirs, request, startServer, tempDir } from "./support.js"

/**
 * Issue 19, traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the spans the supervision layer already
 * makes (`Effect.fn`) and HttpApi's request spans reach an OTLP/HTTP collector: here a loopback one
 * that keeps what it is sent.
 */

const dirs: Array<string> = []
afterAll(() => removeDirs(dirs))

interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
}

/** An OTLP/HTTP JSON receiver on a loopback port: what reaches `POST /v1/traces`. */
const collector = async () => {
  const spans: Array<OtlpSpan> = []
  const services: Array<string> = []
  const server = createServer((req, res) => {
    let text = ""
    req.on("data", (chunk: Buffer) => (text += chunk.toString()))
    req.on("end", () => {
      if (req.method === "POST" && req.url === "/v1/traces") {
        const body = JSON.parse(text) as {
          resourceSpans: Array<{
            resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }
            scopeSpans: Array<{ spans: Array<OtlpSpan> }>
          }>
        }
        for (const resource of body.resourceSpans) {
          const name = resource.resource.attributes.find((attribute) => attribute.key === "service.name")?.value.stringValue
          if (name !== undefined) services.push(name)
          for (const scope of resource.scopeSpans) spans.push(...scope.spans)
        }
      }
      res.writeHead(200, { "content-type": "application/json" })
      res.end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    services,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

/** The server built with `OTEL_EXPORTER_OTLP_ENDPOINT` as given (read while its layer is built). */
const serverWith = async (endpoint: string | undefined) => {
  const saved = process.env["OTEL_EXPORTER_OTLP_ENDPOINT"]
  if (endpoint === undefined) delete process.env["OTEL_EXPORTER_OTLP_ENDPOINT"]
  else process.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
  try {
    return await startServer({ db: join(tempDir(dirs), "vigil.db") })
  } finally {
    if (saved === undefined) delete process.env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    else process.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = saved
  }
}

const runTool = async (url: string) => {
  const session = await request(`${url}/session`, { body: {} })
  const started = await request(`${url}/session/${session.body.id}/tool`, { body: { tool: "bash", input: { command: "echo traced" } } })
  assert.strictEqual(started.status, 202)
  await eventually(async () => {
    const part = (await request(`${url}/part/${started.body.partId}`)).body
    return part.status === "completed" ? part : undefined
  }, 10_000, "the tool to complete")
}

describe("traces", () => {
  it("the spans of a tool run reach the OTLP/HTTP collector, in one trace with the request's", async () => {
    const otlp = await collector()
    const server = await serverWith(otlp.url)
    try {
      await runTool(server.url)
    } finally {
      // The stop flushes what the exporter still holds.
      await server.close()
    }
    await eventually(async () => (otlp.spans.some((span) => span.name === "SessionService.runTool") ? true : undefined), 10_000, "the spans")
    await otlp.close()
    assert.include(otlp.services, "vigil")
    const runTool_ = otlp.spans.find((span) => span.name === "SessionService.runTool")!
    const inTrace = otlp.spans.filter((span) => span.traceId === runTool_.traceId)
    const names = inTrace.map((span) => span.name)
    assert.isTrue(names.some((name) => name.startsWith("http.server POST")), names.join(", "))
    assert.isTrue(names.some((name) => name.startsWith("PartRepo.") || name.startsWith("SessionRepo.")), names.join(", "))
    // Linked: runTool's parent is a span of the same trace.
    assert.isTrue(inTrace.some((span) => span.spanId === runTool_.parentSpanId), JSON.stringify(runTool_))
  }, 60_000)

})
