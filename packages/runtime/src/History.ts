import type { ErrorReason, Part } from "@vigil/domain"
import { describeReason } from "@vigil/domain"
import type { Message } from "./LanguageModel.js"

/** What a tool call's result says, from how its part ended (or did not). */
export interface CallResult {
  readonly status: Part["status"]
  readonly output: string | null
  readonly error: ErrorReason | null
}

/** The two messages of one tool call: the call, and its result (every call has one). */
export const toolCallMessages = (
  call: { readonly callId: string; readonly name: string; readonly input: unknown },
  result: CallResult
): [Message, Message] => [
  { role: "assistant", text: "", toolCalls: [{ id: call.callId, name: call.name, input: call.input }] },
  {
    role: "tool",
    callId: call.callId,
    name: call.name,
    output: result.status === "completed"
      ? result.output ?? ""
      : result.status === "error" && result.error !== null
      ? `error: ${describeReason(result.error)}${result.output ? `\noutput before the error:\n${result.output}` : ""}`
      : "error: no result was recorded for this call",
    isError: result.status !== "completed"
  }
]

/** The messages one part adds to the conversation (none for a model step). */
export const messagesOfPart = (part: Part): ReadonlyArray<Message> => {
  switch (part.kind) {
    case "prompt":
      return [{ role: "user", text: part.output ?? "" }]
    case "text":
      return [{ role: "assistant", text: part.output ?? "", toolCalls: [] }]
    case "tool":
      return toolCallMessages({ callId: part.callId ?? part.id, name: part.tool, input: part.input }, part)
    case "model":
      return []
  }
}

/**
 * The conversation a model sees, built from a session's parts. Each tool call is taken from its
 * tool part, so every call in the history has a result: the output, the error's text for a part
 * that a timeout, an abort, the watchdog or recovery ended, or a note for one still running.
 * A turn reads it once and then appends what each of its steps adds (`messagesOfPart`,
 * `toolCallMessages`), so a step costs the same however long the session's history is.
 */
export const historyOf = (parts: ReadonlyArray<Part>): Array<Message> => {
  const messages: Array<Message> = []
  for (const part of parts) messages.push(...messagesOfPart(part))
  return messages
}
