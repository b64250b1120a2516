import { Effect } from "effect"
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

export interface Recorded {
  readonly path: string
  readonly headers: IncomingHttpHeaders
  readonly body: {
    readonly model?: string
    readonly stream?: boolean
    readonly messages?: ReadonlyArray<Record<string, unknown>>
    readonly tools?: ReadonlyArray<{ readonly type: string; readonly function: { readonly name: string; readonly parameters: unknown } }>
  }
}

/** How the fake answers one request; the n-th request gets the n-th responder. */
export type Responder = (res: ServerResponse, request: Recorded) => void

export interface FakeServer {
  /** The base URL, as a provider's `baseURL`. */
  readonly baseURL: string
  readonly requests: Array<Recorded>
  /** How many requests the client hung up on (the server saw their socket close before it answered in full). */
  readonly disconnects: () => number
}

/**
 * An OpenAI-compatible chat-completions server on 127.0.0.1 (port 0), closed with the scope:
 * every connection is cut first, so a responder that never answers cannot hold the test.
 */
export const fakeServer = (responders: ReadonlyArray<Responder>) =>
  Effect.acquireRelease(
    Effect.async<{ readonly fake: FakeServer; readonly close: () => Promise<void> }>((resume) => {
      const requests: Array<Recorded> = []
      let disconnects = 0
      const server = createServer((req: IncomingMessage, res: ServerResponse) => {
        const chunks: Array<Buffer> = []
        req.on("data", (chunk: Buffer) => chunks.push(chunk))
        req.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8")
          const recorded: Recorded = { path: req.url ?? "", headers: req.headers, body: text === "" ? {} : JSON.parse(text) }
          const responder = responders[requests.length]
          requests.push(recorded)
          res.on("close", () => {
            if (!res.writableFinished) disconnects++
          })
          if (responder === undefined) {
            res.writeHead(500, { "content-type": "text/plain" }).end(`no scripted answer for request ${requests.length}`)
          } else {
            responder(res, recorded)
          }
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({
          fake: { baseURL: `http://127.0.0.1:${port}/v1`, requests, disconnects: () => disconnects },
          close: () =>
            new Promise<void>((resolve) => {
              server.closeAllConnections()
              server.close(() => resolve())
            })
        }))
      })
    }),
    ({ close }) => Effect.promise(close)
  ).pipe(Effect.map(({ fake }) => fake))

/** A port nothing listens on: a server is started, its port noted, and closed again. */
export const closedPort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
)

export const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) => ({
  id: "chatcmpl-fake",
  object: "chat.completion.chunk",
  created: 0,
  model: "fake",
  choices: [{ index: 0, delta, finish_reason: finishReason }]
})

export const textDelta = (content: string) => chunk({ content })

export const toolDelta = (index: number, fields: { readonly id?: string; readonly name?: string; readonly arguments: string }) =>
  chunk({
    tool_calls: [{
      index,
      ...(fields.id !== undefined ? { id: fields.id, type: "function" } : {}),
      function: { ...(fields.name !== undefined ? { name: fields.name } : {}), arguments: fields.arguments }
    }]
  })

export const startStream = (res: ServerResponse) => {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
  res.flushHeaders()
}

export const writeEvent = (res: ServerResponse, data: unknown) =>
  res.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`)

/** A whole streamed answer: the chunks, then `[DONE]`, then the end. */
export const streamed = (...chunks: ReadonlyArray<unknown>): Responder => (res) => {
  startStream(res)
  for (const data of chunks) writeEvent(res, data)
  writeEvent(res, "[DONE]")
  res.end()
}

/** Answers with a status and a body, as a provider's error. */
export const failing = (status: number, body: string, contentType = "application/json"): Responder => (res) => {
  res.writeHead(status, { "content-type": contentType }).end(body)
}

/** Never answers, and ignores the client hanging up: the socket stays open until the test ends. */
export const silent: Responder = () => {}
