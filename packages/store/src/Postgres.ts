import { PgClient } from "@effect/sql-pg"
import { Data, Layer, Redacted, String } from "effect"

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
 * The shared store for several instances on several machines: one PostgreSQL database, with the
 * same snake_case ↔ camelCase transforms as the SQLite file, so the repositories and migrations
 * are the same code on both. BIGINT columns come back as strings here; the row schemas read both.
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
