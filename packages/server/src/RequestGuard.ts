import type { HttpApp } from "@effect/platform"
import { HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { SettingsError } from "@vigil/domain"
import { Config, Effect, Option } from "effect"
import { isIP } from "node:net"

/**
 * The rules that keep a web page from driving the server: it runs shell commands for whoever
 * reaches it, and a browser reaches loopback for any page it shows. A page could
 * - rebind its own name to 127.0.0.1 (DNS rebinding): the browser then sends `Host: evil.example`,
 *   and treats the answers as the page's own;
 * - POST across sites: a form, or a `no-cors` fetch, sends `text/plain` or a form body, with the
 *   page's `Origin`, and needs no answer to do harm.
 * So: a `Host` must name this server (its bound address or a loopback name, with its port); an
 * `Origin`, when sent, must be the server's own (or one configured); a body must be JSON, which a
 * cross-site form cannot send and a cross-site fetch cannot send without asking first (CORS,
 * which this server never grants).
 */

export interface RequestRules {
  /** The address the server was asked to listen on (`--host`). */
  readonly host: string
  /** `VIGIL_ALLOWED_ORIGINS`: origins (`scheme://host[:port]`) besides the server's own. */
  readonly allowedOrigins?: ReadonlyArray<string>
  /** `VIGIL_ALLOWED_HOSTS`: more names the server is reached by (a proxy, a DNS name); `name` or `name:port`. */
  readonly allowedHosts?: ReadonlyArray<string>
}

export interface Refusal {
  readonly status: number
  readonly tag: string
  readonly message: string
}

/** What the rules look at: no body is read. */
export interface RequestHead {
  readonly method: string
  readonly headers: Readonly<Record<string, string | undefined>>
}

const loopbackNames = ["localhost", "127.0.0.1", "[::1]"]
const wildcards = new Set(["0.0.0.0", "::", "[::]", ""])

/** A host name as a URL writes it: lower case, IPv6 in brackets. */
const hostName = (name: string): string => {
  const bare = name.toLowerCase()
  return isIP(bare) === 6 ? `[${bare}]` : bare
}

/** `Host`/`Origin` authority, parsed the way a browser wrote it; undefined if it is not one. */
const authority = (text: string): { readonly hostname: string; readonly port: number } | undefined => {
  if (/[/@?#\\\s]/.test(text)) return undefined
  try {
    const url = new URL(`http://${text}`)
    return { hostname: url.hostname, port: url.port === "" ? 80 : Number(url.port) }
  } catch {
    return undefined
  }
}

/** An origin normalized (`http://LocalHost:80` → `http://localhost`); undefined if it is not one. */
const originOf = (text: string): string | undefined => {
  try {
    const url = new URL(text)
    if (url.protocol !== "http:" && url.protocol !== "https:") return undefined
    if (url.username !== "" || url.password !== "" || (url.pathname !== "/" && url.pathname !== "") || url.search !== "") {
      return undefined
    }
    return url.origin
  } catch {
    return undefined
  }
}

/** A `VIGIL_ALLOWED_HOSTS` entry: a name, with a port or for any port. */
const hostEntry = (entry: string): { readonly hostname: string; readonly port: number | undefined } | undefined => {
  const parsed = authority(entry.trim())
  if (parsed === undefined) return undefined
  return { hostname: parsed.hostname, port: /:\d+$/.test(entry.trim()) ? parsed.port : undefined }
}

const hasBody = (head: RequestHead): boolean => {
  const length = head.headers["content-length"]
  return head.headers["transfer-encoding"] !== undefined || (length !== undefined && length.trim() !== "0")
}

/** `application/json`, with no charset or `utf-8` (JSON is UTF-8: RFC 8259). */
const isJson = (contentType: string): boolean => {
  const [type, ...parameters] = contentType.split(";").map((part) => part.trim().toLowerCase())
  if (type !== "application/json") return false
  return parameters.every((parameter) => {
    const [name, value] = parameter.split("=").map((part) => part.trim())
    return name !== "charset" || value === "utf-8" || value === "\"utf-8\"" || value === "utf8"
  })
}

const safeMethods = new Set(["GET", "HEAD", "OPTIONS"])

/**
 * The verdict on one request, from its method and headers and the port the server listens on:
 * `None` to serve it, or the refusal to answer with.
 */
export const checkRequest = (head: RequestHead, rules: RequestRules, port: number): Option.Option<Refusal> => {
  const hostHeader = head.headers["host"]
  const host = hostHeader === undefined ? undefined : authority(hostHeader)
  const bound = hostName(rules.host)
  const hostAllowed = host !== undefined && (
    (host.port === port && (
      loopbackNames.includes(host.hostname) ||
      host.hostname === bound ||
      // Bound to every address: any IP literal reaches this server by its address, and a page
      // cannot rebind a literal; a name is still refused.
      (wildcards.has(bound) && isIP(host.hostname.replace(/^\[|\]$/g, "")) !== 0)
    )) ||
    (rules.allowedHosts ?? []).map(hostEntry).some((entry) =>
      entry !== undefined && entry.hostname === host.hostname && (entry.port === undefined || entry.port === host.port)
    )
  )
  if (!hostAllowed) {
    return Option.some({
      status: 421,
      tag: "MisdirectedRequest",
      message: `Host ${JSON.stringify(hostHeader ?? "")} is not this server: use ${
        [...new Set([...loopbackNames, bound])].filter((name) => !wildcards.has(name)).map((name) => `${name}:${port}`).join(", ")
      } (or add the name to VIGIL_ALLOWED_HOSTS)`
    })
  }
  const origin = head.headers["origin"]
  if (origin !== undefined) {
    const own = originOf(`http://${hostHeader}`)
    const normalized = originOf(origin)
    const allowed = new Set((rules.allowedOrigins ?? []).map((entry) => originOf(entry.trim())))
    if (normalized === undefined || (normalized !== own && !allowed.has(normalized))) {
      return Option.some({
        status: 403,
        tag: "ForbiddenOrigin",
        message: `Origin ${JSON.stringify(origin)} is not this server (${own}): cross-site requests are refused (allow an origin with VIGIL_ALLOWED_ORIGINS)`
      })
    }
  }
  if (!safeMethods.has(head.method.toUpperCase())) {
    const contentType = head.headers["content-type"]
    if (contentType !== undefined ? !isJson(contentType) : hasBody(head)) {
      return Option.some({
        status: 415,
        tag: "UnsupportedMediaType",
        message: `a request body must be sent as content-type: application/json (got ${
          contentType === undefined ? "none" : JSON.stringify(contentType)
        }; with curl: -H 'content-type: application/json')`
      })
    }
  }
  return Option.none()
}

const refuse = (refusal: Refusal) =>
  HttpServerResponse.unsafeJson({ _tag: refusal.tag, message: refusal.message }, { status: refusal.status })

/**
 * The rules around the whole app (the API, `/event`, `/doc`, the dashboard), outside auth, so
 * a route added later cannot forget them and a refused request never reaches a handler.
 */
export const requestGuard = (rules: RequestRules) =>
<E, R>(
  app: HttpApp.Default<E, R>
): HttpApp.Default<E, R | HttpServerRequest.HttpServerRequest | HttpServer.HttpServer> =>
  Effect.flatMap(HttpServer.HttpServer, (server) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const port = server.address._tag === "TcpAddress" ? server.address.port : 0
      // A Unix socket is reached by its path, not by a name a page could rebind.
      if (server.address._tag === "UnixAddress") return app
      return Option.match(checkRequest(request, rules, port), { onNone: () => app, onSome: (refusal) => Effect.succeed(refuse(refusal)) })
    }))

/** A comma-separated list from the environment, each entry checked; unset or empty: none. */
const listFrom = (name: string, check: (entry: string) => boolean, expected: string) =>
  Config.option(Config.string(name)).pipe(
    Effect.orElseSucceed(() => Option.none<string>()),
    Effect.flatMap((value) => {
      const entries = Option.getOrElse(value, () => "").split(",").map((entry) => entry.trim()).filter((entry) => entry !== "")
      const bad = entries.find((entry) => !check(entry))
      return bad === undefined
        ? Effect.succeed(entries)
        : Effect.fail(new SettingsError({ key: name, value: bad, problem: `is not ${expected}` }))
    })
  )

/**
 * `VIGIL_ALLOWED_ORIGINS` (e.g. `https://ide.example.com,http://localhost:3000`) and
 * `VIGIL_ALLOWED_HOSTS` (e.g. `vigil.internal,build-box:4096`), read at start: a bad entry stops
 * it with one line naming the variable and the entry.
 */
export const allowedFromEnv = Effect.all({
  allowedOrigins: listFrom("VIGIL_ALLOWED_ORIGINS", (entry) => originOf(entry) !== undefined, "an origin such as http://localhost:3000"),
  allowedHosts: listFrom("VIGIL_ALLOWED_HOSTS", (entry) => hostEntry(entry) !== undefined, "a host name, or name:port")
})
