import type { Part } from "@vigil/domain"
import { describeReason } from "@vigil/domain"
import type { Message } from "./LanguageModel.js"

/**
 * The conversation a model sees, built from a session's parts. Each tool call is taken from its
 * tool part, so every call in the history has a result: the output, the error's text for a part
 * that a timeout, an abort, the watchdog or recovery ended, or a note for one still running.
 */
export const historyOf = (parts: ReadonlyArray<Part>): Array<Message> => {
  const messages: Array<Message> = []
  for (const part of parts) {
    switch (part.kind) {
      case "prompt":
        messages.push({ role: "user", text: part.output ?? "" })
        break
      case "text":
        messages.push({ role: "assistant", text: part.output ?? "", toolCalls: [] })
        break
      case "tool": {
        const callId = part.callId ?? part.id
        messages.push({ role: "assistant", text: "", toolCalls: [{ id: callId, name: part.tool, input: part.input }] })
        messages.push({
          role: "tool",
          callId,
          name: part.tool,
          output: part.status === "completed"
            ? part.output ?? ""
            : part.status === "error" && part.error !== null
            ? `error: ${describeReason(part.error)}${part.output ? `\noutput before the error:\n${part.output}` : ""}`
            : "error: no result was recorded for this call",
          isError: part.status !== "completed"
        })
        break
      }
      case "model":
        break
    }
  }
  return messages
}
