import type { HttpApp } from "@effect/platform"
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Config, Effect, Option, Redacted } from "effect"
import { timingSafeEqual } from "node:crypto"

/** The one user name basic auth accepts. */
const authUser = "vigil"

/**
 * `VIGIL_SERVER_PASSWORD`, redacted so it never reaches a log line; unset or empty means auth off.
 */
export const ServerPassword: Config.Config<Option.Option<Redacted.Redacted<string>>> = Config.option(
  Config.redacted("VIGIL_SERVER_PASSWORD")
).pipe(Config.map(Option.filter((password) => Redacted.value(password) !== "")))

const sameBytes = (a: string, b: string): boolean => {
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  // Compared in constant time so a wrong guess does not tell how much of it was right.
  return left.length === right.length && timingSafeEqual(left, right)
}

/** Whether an `Authorization` header carries `vigil:<password>` as HTTP basic credentials. */
export const isAuthorized = (header: string | undefined, password: Redacted.Redacted<string>): boolean => {
  const match = header === undefined ? null : /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header)
  if (match === null) return false
  const decoded = Buffer.from(match[1]!, "base64").toString("utf8")
  const colon = decoded.indexOf(":")
  if (colon < 0) return false
  const userOk = sameBytes(decoded.slice(0, colon), authUser)
  const passwordOk = sameBytes(decoded.slice(colon + 1), Redacted.value(password))
  return userOk && passwordOk
}

const unauthorized = HttpServerResponse.unsafeJson(
  { _tag: "Unauthorized", message: `authentication required: HTTP basic auth, user "${authUser}"` },
  { status: 401, headers: { "www-authenticate": `Basic realm="vigil"` } }
)

/**
 * HTTP basic auth on every route (the API, `/event`, `/doc`): applied around the whole app, not
 * per endpoint, so a route added later cannot forget it.
 */
export const basicAuth = (password: Option.Option<Redacted.Redacted<string>>) =>
<E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R | HttpServerRequest.HttpServerRequest> =>
  Option.match(password, {
    onNone: () => app,
    onSome: (password) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
        isAuthorized(request.headers["authorization"], password) ? app : Effect.succeed(unauthorized))
  })
