import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { leaseExpired } from "@vigil/domain"
import { InstanceLease, Metrics } from "@vigil/runtime"
import { InstanceRepo, PartRepo, SessionRepo } from "@vigil/store"
import type { MetricPair } from "effect"
import { Clock, Effect, Metric, MetricState, Option } from "effect"

/**
 * `GET /metrics`: Effect's metric registry in the Prometheus text format (0.0.4). Rendered here
 * rather than through an exporter package: the format is a few lines of text, and the counters are
 * already Effect metrics incremented where the supervision acts (runtime's `Metrics`). Behind basic
 * auth and the request rules like every route (they wrap the whole app).
 */

const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")
const escapeHelp = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
const number = (value: number | bigint) =>
  typeof value === "bigint"
    ? value.toString()
    : Number.isNaN(value)
    ? "NaN"
    : value === Infinity
    ? "+Inf"
    : value === -Infinity
    ? "-Inf"
    : String(value)

const labels = (tags: ReadonlyArray<readonly [string, string]>) =>
  tags.length === 0 ? "" : `{${tags.map(([key, value]) => `${key}="${escapeLabel(value)}"`).join(",")}}`

/** The registry's metrics, one family per name (its tagged series together), counters, gauges and histograms. */
const renderPrometheus = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, { type: string; help: string; lines: Array<string> }>()
  for (const pair of pairs) {
    const key = pair.metricKey
    const state = pair.metricState
    const tags = key.tags.map((tag) => [tag.key, tag.value] as const).sort(([a], [b]) => a.localeCompare(b))
    const type = MetricState.isCounterState(state)
      ? "counter"
      : MetricState.isGaugeState(state)
      ? "gauge"
      : MetricState.isHistogramState(state)
      ? "histogram"
      : undefined
    if (type === undefined) continue // frequencies and summaries: none here
    const family = families.get(key.name) ?? { type, help: Option.getOrElse(key.description, () => key.name), lines: [] }
    families.set(key.name, family)
    if (MetricState.isCounterState(state)) family.lines.push(`${key.name}${labels(tags)} ${number(state.count)}`)
    else if (MetricState.isGaugeState(state)) family.lines.push(`${key.name}${labels(tags)} ${number(state.value)}`)
    else if (MetricState.isHistogramState(state)) {
      // Effect's buckets are cumulative already, as Prometheus wants them; `+Inf` is the count.
      for (const [bound, count] of state.buckets) {
        if (Number.isFinite(bound)) family.lines.push(`${key.name}_bucket${labels([...tags, ["le", number(bound)]])} ${count}`)
      }
      family.lines.push(`${key.name}_bucket${labels([...tags, ["le", "+Inf"]])} ${state.count}`)
      family.lines.push(`${key.name}_sum${labels(tags)} ${number(state.sum)}`)
      family.lines.push(`${key.name}_count${labels(tags)} ${state.count}`)
    }
  }
  return [...families].sort(([a], [b]) => a.localeCompare(b)).map(([name, family]) =>
    `# HELP ${name} ${escapeHelp(family.help)}\n# TYPE ${name} ${family.type}\n${family.lines.join("\n")}\n`
  ).join("")
}

/** The counters a scrape shows from the start, at 0, so a rate over a fresh process is defined. */
const counters = [
  Metrics.timeouts,
  Metrics.idleCancels,
  Metrics.retries,
  Metrics.modelRetries,
  Metrics.lateCompletions,
  Metrics.leakedFibers,
  Metric.tagged(Metrics.watchdogActions, "action", "stuck_part"),
  Metric.tagged(Metrics.watchdogActions, "action", "processes_killed"),
  ...(["startup", "watchdog", "cli"] as const).flatMap((trigger) => [
    Metric.tagged(Metrics.rescues, "trigger", trigger),
    Metric.tagged(Metrics.rescuedParts, "trigger", trigger)
  ])
]

export const MetricsLive = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const parts = yield* PartRepo
    const sessions = yield* SessionRepo
    const instances = yield* InstanceRepo
    const lease = yield* InstanceLease
    yield* Effect.forEach(counters, (counter) => Metric.incrementBy(counter, 0), { discard: true })
    // The gauges are read from the store when scraped: what is true now, not a running tally that
    // a missed decrement would leave wrong forever.
    const setGauges = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* Metric.set(Metrics.runningParts, yield* parts.countRunningOfOwner(lease.id))
      const active = yield* sessions.countActiveOfOwner(lease.id)
      yield* Metric.set(Metric.tagged(Metrics.busySessions, "status", "busy"), active.busy)
      yield* Metric.set(Metric.tagged(Metrics.busySessions, "status", "waiting"), active.waiting)
      const running = yield* instances.listRunning()
      yield* Metric.set(Metrics.liveInstances, running.filter((instance) => !leaseExpired(instance, now)).length)
    })
    yield* router.get(
      "/metrics",
      Effect.gen(function*() {
        yield* setGauges
        return HttpServerResponse.text(renderPrometheus(yield* Metric.snapshot), {
          contentType: "text/plain; version=0.0.4; charset=utf-8"
        })
      })
    )
  })
)
