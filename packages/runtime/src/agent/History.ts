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

/**
 * The messages of one step's tool calls: one assistant message with every call, then each call's
 * result in order. A model that made parallel calls expects them back as it made them; as
 * assistant(A), tool(A), assistant(B), tool(B) providers refuse them or take B for a second turn.
 */
export const stepCallMessages = (pairs: ReadonlyArray<readonly [Message, Message]>): Array<Message> => {
  if (pairs.length <= 1) return pairs.flatMap((pair) => [...pair])
  const calls = pairs.flatMap(([call]) => (call.role === "assistant" ? call.toolCalls : []))
  return [{ role: "assistant", text: "", toolCalls: calls }, ...pairs.map(([, result]) => result)]
}

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
  // The model's calls of one step are its tool parts in a row (a step's model part, text or
  // prompt parts come between steps); a call run by hand (no call id) is its own step.
  let step: Array<[Message, Message]> = []
  for (const part of parts) {
    if (part.kind === "tool" && part.callId !== null) {
      step.push(toolCallMessages({ callId: part.callId, name: part.tool, input: part.input }, part))
      continue
    }
    messages.push(...stepCallMessages(step))
    step = []
    messages.push(...messagesOfPart(part))
  }
  messages.push(...stepCallMessages(step))
  return messages
}
