import type { Agent } from "node:http"
import { request as httpRequest } from "node:http"

/**
 * A raw HTTP/1.1 client (node:http, not fetch): the path goes out byte for byte (fetch would
 * normalize `../` and re-encode), any content type and any body bytes can be sent, and a dropped
 * connection is told apart from an answer.
 */

export interface RawRequest {
  readonly method: string
  /** Sent as is: `/session/../../etc/passwd` stays that. */
  readonly path: string
  readonly headers?: Record<string, string>
  readonly body?: string | Uint8Array
  /** A keep-alive agent for load; without one every request has its own connection. */
  readonly agent?: Agent
  readonly timeoutMs?: number
}

export interface RawResponse {
  readonly status: number
  readonly contentType: string | undefined
  readonly text: string
  /** The body as JSON, or `undefined` when it is not JSON. */
  readonly json: unknown
}

/** The connection failed or was cut before a whole answer arrived (the server died or dropped it). */
export class ConnectionError extends Error {
  constructor(
    readonly request: string,
    readonly code: string,
    message: string
  ) {
    super(`${request}: ${code}: ${message}`)
  }
}

const parseJson = (text: string): unknown => {
  try {
    return text === "" ? undefined : (JSON.parse(text) as unknown)
  } catch {
    return undefined
  }
}

export const send = (base: string, options: RawRequest): Promise<RawResponse> =>
  new Promise((resolve, reject) => {
    const url = new URL(base)
    const label = `${options.method} ${options.path.length > 120 ? `${options.path.slice(0, 117)}...` : options.path}`
    const body = options.body === undefined ? undefined : Buffer.from(options.body)
    let settled = false
    const fail = (code: string, message: string) => {
      if (settled) return
      settled = true
      reject(new ConnectionError(label, code, message))
    }
    let req: ReturnType<typeof httpRequest>
    try {
      req = httpRequest({
        host: url.hostname,
        port: url.port,
        method: options.method,
        path: options.path,
        headers: {
          ...(body !== undefined ? { "content-length": String(body.length) } : {}),
          ...options.headers
        },
        agent: options.agent ?? false
      }, (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (chunk: Buffer) => chunks.push(chunk))
        res.once("error", (error: NodeJS.ErrnoException) => fail(error.code ?? "ERESPONSE", error.message))
        res.once("aborted", () => fail("ECONNRESET", "the answer was cut"))
        res.once("end", () => {
          if (settled) return
          settled = true
          const text = Buffer.concat(chunks).toString("utf8")
          resolve({ status: res.statusCode ?? 0, contentType: res.headers["content-type"], text, json: parseJson(text) })
        })
      })
    } catch (error) {
      // The client refused to send it (an invalid path or header): a bug of the test, not the server.
      reject(error)
      return
    }
    req.setTimeout(options.timeoutMs ?? 15_000, () => {
      fail("ETIMEDOUT", `no answer within ${options.timeoutMs ?? 15_000} ms`)
      req.destroy()
    })
    req.once("error", (error: NodeJS.ErrnoException) => fail(error.code ?? "EREQUEST", error.message))
    req.end(body)
  })

/** JSON in, JSON out, for driving the API. */
export const sendJson = (base: string, method: string, path: string, body?: unknown, agent?: Agent) =>
  send(base, {
    method,
    path,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
    ...(agent === undefined ? {} : { agent })
  })
