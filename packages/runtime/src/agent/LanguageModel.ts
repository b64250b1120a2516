import type { Effect } from "effect"
import { Context, Data } from "effect"

export interface ToolCall {
  readonly id: string
  readonly name: string
  readonly input: unknown
}

/** What a model sees: every tool call in it has its result (guarantee 9). */
export type Message =
  | { readonly role: "user"; readonly text: string }
  | { readonly role: "assistant"; readonly text: string; readonly toolCalls: ReadonlyArray<ToolCall> }
  | { readonly role: "tool"; readonly callId: string; readonly name: string; readonly output: string; readonly isError: boolean }

export interface ToolSpec {
  readonly name: string
  readonly description: string
  readonly parameters: unknown
}

export interface ModelRequest {
  readonly messages: ReadonlyArray<Message>
  readonly tools: ReadonlyArray<ToolSpec>
  /**
   * Streamed text, as it arrives: progress the idle rule sees. An empty chunk is progress without
   * text (a streamed tool call's arguments, a reasoning model's thinking).
   */
  readonly onText: (chunk: string) => Effect.Effect<void>
  /** A failed attempt is tried again (a 429, a 5xx, a refused connection): for the event log and the part. */
  readonly onRetry?: ((retry: ModelRetry) => Effect.Effect<void>) | undefined
  /** When the step must be done (epoch ms, Effect's Clock): a retry whose wait would end later is not begun. */
  readonly deadlineAt?: number | undefined
}

/** One retry of a model call, as opencode's `retry` status shows it. */
export interface ModelRetry {
  /** 1 for the first retry. */
  readonly attempt: number
  /** Why the previous attempt failed. */
  readonly reason: string
  readonly delayMillis: number
  /** When the next attempt starts (epoch ms). */
  readonly nextAt: number
}

export interface ModelResponse {
  readonly text: string
  readonly toolCalls: ReadonlyArray<ToolCall>
}

export class ModelError extends Data.TaggedError("ModelError")<{ readonly message: string }> {}

export interface LanguageModelShape {
  readonly name: string
  readonly generate: (request: ModelRequest) => Effect.Effect<ModelResponse, ModelError>
}

/** The models a prompt can name; a port, so a provider (or a test's recording model) plugs in. */
export class LanguageModels extends Context.Tag("vigil/LanguageModels")<LanguageModels, {
  readonly defaultModel: string
  readonly models: ReadonlyMap<string, LanguageModelShape>
}>() {}
