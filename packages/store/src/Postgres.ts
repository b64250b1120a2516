import { PgClient } from "@effect/sql-pg"
import { Redacted, String } from "effect"

/**
 * The shared store for several instances on several machines: one PostgreSQL database, with the
 * same snake_case ↔ camelCase transforms as the SQLite file, so the repositories and migrations
 * are the same code on both. BIGINT columns come back as strings here; the row schemas read both.
 *
 * Session-level advisory locks (how a peer tells at once that an instance died) need a direct
 * connection or a session-mode pooler, not a transaction-mode one.
 */
export const PgLive = (url: string | Redacted.Redacted<string>) =>
  PgClient.layer({
    url: Redacted.isRedacted(url) ? url : Redacted.make(url),
    applicationName: "vigil",
    transformQueryNames: String.camelToSnake,
    transformResultNames: String.snakeToCamel
  })
