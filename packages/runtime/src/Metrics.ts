import { Metric, MetricBoundaries, MetricKey, MetricLabel } from "effect"

/**
 * What the supervision layer did on its own, counted where it acts (Effect's global metric
 * registry; the server renders them for Prometheus at `GET /metrics`). Counters only go up, per
 * process: a restart starts them at 0, which Prometheus' `rate()` expects.
 */

/** A tool call ended by its own deadline (`ToolTimeout`). */
export const timeouts = Metric.counter("vigil_timeouts_total", {
  description: "tool calls ended by their deadline (ToolTimeout)"
})

/** A dead owner's parts and sessions ended by a rescue; `trigger`: startup, watchdog or cli. */
export const rescues = Metric.counter("vigil_rescues_total", {
  description: "dead owners rescued (their parts ended OrphanedByCrash, their sessions freed)"
})
export const rescuedParts = Metric.counter("vigil_rescued_parts_total", {
  description: "parts of dead owners ended by a rescue (OrphanedByCrash)"
})

/** The watchdog force-erred a stuck part (`action="stuck_part"`) or killed its processes (`processes_killed`). */
export const watchdogActions = Metric.counter("vigil_watchdog_actions_total", {
  description: "watchdog actions: stuck parts force-erred, their processes killed"
})

/** A session cancelled for silence (`IdleCancelled`). */
export const idleCancels = Metric.counter("vigil_idle_cancels_total", {
  description: "sessions cancelled by the idle monitor (IdleCancelled)"
})

/** A held write tried again against a store that refused it (`PendingWrites`). */
export const retries = Metric.counter("vigil_store_write_retries_total", {
  description: "held writes tried again after the store refused them"
})

/** A model call tried again by its provider (429, 5xx, a connection lost before the first byte). */
export const modelRetries = Metric.counter("vigil_model_retries_total", {
  description: "model calls retried by their provider before any output"
})

/** A tool's result that arrived after someone else ended its part: logged, never written. */
export const lateCompletions = Metric.counter("vigil_late_completions_total", {
  description: "tool results that arrived after the part was ended by someone else"
})

/** A tool's fiber abandoned because its interruption did not finish within the grace (`AbortIncomplete`). */
export const leakedFibers = Metric.counter("vigil_leaked_fibers_total", {
  description: "tool fibers abandoned after an abort did not finish within the grace (AbortIncomplete)"
})

/** How long a tool call ran, by `tool` and `outcome` (completed or error), in seconds. */
const partDurationKey = MetricKey.histogram(
  "vigil_part_duration_seconds",
  MetricBoundaries.fromIterable([0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600]),
  "tool call durations, by tool and outcome"
)
export const partDuration = Metric.fromMetricKey(partDurationKey)

const partDurations = new Map<string, Metric.Metric.Histogram<number>>()

/**
 * `partDuration` for a tool and an outcome, made once per pair from its tagged key. Not
 * `Metric.tagged`: a tagged metric unions its tags anew at every update, so the registry is looked
 * up by a fresh key (allocated and hashed) each time; a metric made from the tagged key keeps its
 * registry entry, and this one is updated on every tool call's path.
 */
export const partDurationOf = (tool: string, outcome: "completed" | "error"): Metric.Metric.Histogram<number> => {
  const key = `${outcome} ${tool}`
  let metric = partDurations.get(key)
  if (metric === undefined) {
    metric = Metric.fromMetricKey(
      MetricKey.taggedWithLabels(partDurationKey, [MetricLabel.make("tool", tool), MetricLabel.make("outcome", outcome)])
    )
    partDurations.set(key, metric)
  }
  return metric
}

/** Set when scraped, from the store: this instance's running parts and busy sessions, and the live instances it sees. */
export const runningParts = Metric.gauge("vigil_running_parts", { description: "this instance's running parts" })
export const busySessions = Metric.gauge("vigil_busy_sessions", {
  description: "this instance's busy or waiting sessions"
})
export const liveInstances = Metric.gauge("vigil_live_instances", {
  description: "instances alive on this store, as this one sees them"
})
