/**
 * Retrying a model call that failed before it gave anything: a 429, a 5xx, or a connection that
 * failed before the first byte. As opencode does: the wait the provider asks for (`retry-after-ms`,
 * `retry-after`), else 2 s × 2ⁿ, capped at 30 s. Bounded by a number of retries and by the step's
 * deadline: a wait that would end past it is not begun, the step fails at once with the last error.
 * Only the opening of a call is retried: once a stream gave output, its failure is the step's.
 */
import type { ModelRetry } from "@vigil/runtime"
import { ModelError } from "@vigil/runtime"
import { Clock, Duration, Effect } from "effect"

/** How many times a call is tried again, unless `provider.<id>.options.maxRetries` says otherwise. */
export const defaultMaxRetries = 4
const baseRetryDelayMillis = 2_000
const maxRetryDelayMillis = 30_000
/** A provider's own `retry-after` is honoured up to this (a step with no deadline must not wait a day). */
const maxAskedDelayMillis = 5 * 60_000

/** 429 (rate limited), 408 (request timeout) and every 5xx may pass if tried again; other statuses will not. */
export const isRetryableStatus = (status: number): boolean => status === 429 || status === 408 || status >= 500

/**
 * The wait before retry `retry` (1 for the first): the provider's `retry-after-ms` (milliseconds),
 * else its `retry-after` (seconds, or an HTTP date), else 2 s × 2^(retry-1) capped at 30 s.
 */
export const retryDelayMillis = (
  retry: number,
  headers: Readonly<Record<string, string | undefined>>,
  now: number
): number => {
  const millis = Number.parseFloat(headers["retry-after-ms"] ?? "")
  if (Number.isFinite(millis) && millis >= 0) return Math.min(Math.ceil(millis), maxAskedDelayMillis)
  const after = (headers["retry-after"] ?? "").trim()
  if (after !== "") {
    const seconds = Number(after)
    if (Number.isFinite(seconds) && seconds >= 0) return Math.min(Math.ceil(seconds * 1000), maxAskedDelayMillis)
    const date = Date.parse(after)
    if (Number.isFinite(date)) return Math.min(Math.max(0, date - now), maxAskedDelayMillis)
  }
  return Math.min(baseRetryDelayMillis * 2 ** (retry - 1), maxRetryDelayMillis)
}

/** A failed attempt to open a call: its error, and whether another attempt may succeed. */
export interface AttemptFailure {
  readonly error: ModelError
  readonly retryable: boolean
  /** The response's headers, for `retry-after`; none for a connection failure. */
  readonly headers?: Readonly<Record<string, string | undefined>>
}

const showMillis = (millis: number): string =>
  millis < 1000 ? `${millis} ms` : `${Number((millis / 1000).toFixed(3))} s`

/**
 * Runs `open` until it succeeds, fails for good, or runs out of retries or time. Each retry is
 * logged with its reason and reported through `onRetry` (the event log, the part) before its wait.
 */
export const withRetries = <A>(options: {
  readonly open: Effect.Effect<A, AttemptFailure>
  readonly maxRetries: number
  readonly model: string
  /** Epoch milliseconds (Effect's Clock) by which the step must be done, when it has a deadline. */
  readonly deadlineAt?: number | undefined
  readonly onRetry?: ((retry: ModelRetry) => Effect.Effect<void>) | undefined
}): Effect.Effect<A, ModelError> =>
  Effect.gen(function*() {
    for (let retry = 1;; retry++) {
      const outcome = yield* Effect.either(options.open)
      if (outcome._tag === "Right") return outcome.right
      const { error, headers, retryable } = outcome.left
      const tried = retry === 1 ? "" : ` (after ${retry - 1} ${retry === 2 ? "retry" : "retries"})`
      if (!retryable || retry > options.maxRetries) {
        return yield* new ModelError({ message: `${error.message}${tried}` })
      }
      const now = yield* Clock.currentTimeMillis
      const delay = retryDelayMillis(retry, headers ?? {}, now)
      if (options.deadlineAt !== undefined && now + delay >= options.deadlineAt) {
        return yield* new ModelError({
          message: `${error.message}${tried} (not retried: the wait of ${showMillis(delay)} would pass the step's deadline, ${
            showMillis(Math.max(0, options.deadlineAt - now))
          } away)`
        })
      }
      const report: ModelRetry = { attempt: retry, reason: error.message, delayMillis: delay, nextAt: now + delay }
      yield* Effect.logWarning(`model call retried: ${error.message}`).pipe(
        Effect.annotateLogs({ model: options.model, retry, of: options.maxRetries, delayMs: delay })
      )
      if (options.onRetry !== undefined) yield* options.onRetry(report)
      yield* Effect.sleep(Duration.millis(delay))
    }
  })
