import { NodeHttpClient } from "@effect/platform-node"
import { Config, Effect, Layer, Option } from "effect"

/**
 * OpenTelemetry traces, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
 * is set: every `Effect.fn` span of the supervision layer (sessions, tool runs, the watchdog's and
 * the idle monitor's scans, the repositories) and HttpApi's request spans, sent as OTLP/HTTP JSON.
 * `@effect/opentelemetry`'s own OTLP exporter is used, over the platform's HTTP client: it needs none
 * of the OpenTelemetry SDK packages. Unset: no tracer, nothing sent. The exporter batches every 5 s
 * and flushes what is left at shutdown (bounded by 3 s); a collector that is down costs a logged
 * warning, never a request. The exporter's package is imported only when traces are on: it is
 * 18 MB of heap and a share of start-up that a server without a collector need not pay.
 */

/** `k=v,k2=v2` (values URL-encoded), as the OpenTelemetry environment spells headers. */
const parseOtlpHeaders = (text: string): Record<string, string> =>
  Object.fromEntries(
    text.split(",").map((entry) => entry.trim()).filter((entry) => entry.includes("=")).map((entry) => {
      const at = entry.indexOf("=")
      return [entry.slice(0, at).trim(), decodeURIComponent(entry.slice(at + 1).trim())]
    })
  )

const tracingConfig = Config.all({
  endpoint: Config.option(Config.string("OTEL_EXPORTER_OTLP_ENDPOINT")),
  tracesEndpoint: Config.option(Config.string("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
  headers: Config.option(Config.string("OTEL_EXPORTER_OTLP_HEADERS"))
})

/** The traces URL: the traces endpoint as given, or `<endpoint>/v1/traces` (the OTLP/HTTP rule). */
const tracesUrl = (config: {
  readonly endpoint: Option.Option<string>
  readonly tracesEndpoint: Option.Option<string>
}): Option.Option<string> =>
  Option.orElse(
    Option.filter(config.tracesEndpoint, (url) => url.trim() !== ""),
    () => Option.map(Option.filter(config.endpoint, (url) => url.trim() !== ""), (url) => `${url.replace(/\/+$/, "")}/v1/traces`)
  )

export const TracingLive: Layer.Layer<never> = Layer.unwrapEffect(
  Effect.gen(function*() {
    const config = yield* Effect.orElseSucceed(tracingConfig, () => ({
      endpoint: Option.none<string>(),
      tracesEndpoint: Option.none<string>(),
      headers: Option.none<string>()
    }))
    const url = tracesUrl(config)
    if (Option.isNone(url)) return Layer.empty
    yield* Effect.logInfo(`traces exported to ${url.value} (OTLP/HTTP)`)
    const { OtlpSerialization, OtlpTracer } = yield* Effect.promise(() => import("@effect/opentelemetry"))
    return OtlpTracer.layer({
      url: url.value,
      // `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` win over this.
      resource: { serviceName: "vigil" },
      headers: Option.match(config.headers, { onNone: () => ({}), onSome: parseOtlpHeaders })
    }).pipe(Layer.provide(OtlpSerialization.layerJson), Layer.provide(NodeHttpClient.layerUndici))
  })
)
