import type { IncomingMessage, Server, ServerResponse } from "node:http"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

/**
 * An OpenAI-compatible chat-completions server that answers at once, as a local llama.cpp or
 * Ollama does: the case in which responses used to be lost (a head that arrived before the
 * client listened for it). Each turn is one tool call and one text answer: the first request of a
 * conversation (its last message is the user's) gets a streamed `bash` call echoing the prompt's
 * text, the next (its last message is the tool's result) gets the text `instant done`. Every
 * answer is written in one go, with nothing between the head and the end.
 */
export class InstantProvider {
  requests = 0
  baseURL = ""
  private readonly server: Server

  private constructor() {
    this.server = createServer((req, res) => this.answer(req, res))
  }

  static async start(): Promise<InstantProvider> {
    const provider = new InstantProvider()
    await new Promise<void>((resolve) => provider.server.listen(0, "127.0.0.1", resolve))
    const { port } = provider.server.address() as AddressInfo
    provider.baseURL = `http://127.0.0.1:${port}/v1`
    return provider
  }

  private answer(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      this.requests++
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as {
        readonly messages?: ReadonlyArray<{ readonly role: string; readonly content?: unknown }>
      }
      const messages = body.messages ?? []
      const last = messages.at(-1)
      const prompt = [...messages].reverse().find((message) => message.role === "user")
      const echo = typeof prompt?.content === "string" ? prompt.content.replace(/[^a-z0-9-]/gi, "") : "instant"
      const events = last?.role === "tool"
        ? [chunk({ content: "instant done" }, null), chunk({}, "stop")]
        : [
          chunk({
            tool_calls: [{
              index: 0,
              id: `call_${this.requests}`,
              type: "function",
              function: { name: "bash", arguments: JSON.stringify({ command: `echo ${echo}` }) }
            }]
          }, null),
          chunk({}, "tool_calls")
        ]
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
      res.end(`${events.map((event) => `data: ${JSON.stringify(event)}\n\n`).join("")}data: [DONE]\n\n`)
    })
  }

  /** The `provider` entry of a config file: `instant/<any name>` then reaches this server. */
  get config(): Record<string, unknown> {
    return { instant: { options: { baseURL: this.baseURL, apiKey: "not-a-real-key" } } }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

const chunk = (delta: Record<string, unknown>, finishReason: string | null) => ({
  id: "chatcmpl-instant",
  object: "chat.completion.chunk",
  created: 0,
  model: "instant",
  choices: [{ index: 0, delta, finish_reason: finishReason }]
})
