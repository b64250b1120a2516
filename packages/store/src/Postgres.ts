import { PgClient } from "@effect/sql-pg"
import { Data, Layer, Redacted, String } from "effect"
import { SqlStoreLive } from "./Store.js"
import type { StoreOptions } from "./Tables.js"

/**
 * `@vigil/store/pg`: vigil's own PostgreSQL client, the one entry that needs `pg` (an optional
 * peer: an app on SQLite never installs it).
 */

/** The PostgreSQL server could not be reached or refused us: one line, never the password. */
export class StoreConnectError extends Data.TaggedError("StoreConnectError")<{ readonly message: string }> {}

/** `host:port/database` of a URL, for messages: no user, no password, no options. */
const whereOf = (url: string): string => {
  if (!URL.canParse(url)) return "the given URL"
  const parsed = new URL(url)
  return `${parsed.hostname}${parsed.port === "" ? "" : `:${parsed.port}`}${parsed.pathname}`
}

const causeText = (cause: unknown): string => {
  const text = cause instanceof Error ? cause.message : typeof cause === "string" ? cause : "no answer"
  return text.split("\n")[0]!.trim() || "no answer"
}

/**
 * The shared store's connection for several instances on several machines: one PostgreSQL
 * database. The store maps its rows on the raw client (BIGINT columns come back as strings here;
 * the row schemas read both); the name transforms are for what else reads this client, the same
 * as on the SQLite file.
 *
 * Session-level advisory locks (how a peer tells at once that an instance died) need a direct
 * connection or a session-mode pooler, not a transaction-mode one.
 */
export const PgLive = (url: string | Redacted.Redacted<string>) => {
  const redacted = Redacted.isRedacted(url) ? url : Redacted.make(url)
  return PgClient.layer({
    url: redacted,
    applicationName: "vigil",
    transformQueryNames: String.camelToSnake,
    transformResultNames: String.snakeToCamel
  }).pipe(
    Layer.mapError((error) =>
      error._tag === "SqlError"
        ? new StoreConnectError({
          message: `cannot connect to PostgreSQL at ${whereOf(Redacted.value(redacted))}: ${causeText(error.cause)}`
        })
        : error
    )
  )
}

/** The same store on a PostgreSQL database shared by instances on several machines. */
export const PgStoreLive = (url: string | Redacted.Redacted<string>, options: StoreOptions = {}) =>
  SqlStoreLive(options).pipe(Layer.provideMerge(PgLive(url)))
