import { Context } from "effect"

/** Options of every store layer. */
export interface StoreOptions {
  /**
   * Put before each of vigil's table and index names (default `vigil_`), so vigil lives in an
   * app's database beside its own tables: `vigil_sessions` next to the app's `sessions`. Its
   * migrations table is `<prefix>migrations`. Lower-case letters, digits and `_`, starting with
   * a letter (an identifier on every dialect without quoting), at most 32 characters (the longest
   * index name then stays under PostgreSQL's 63).
   */
  readonly prefix?: string | undefined
}

export const defaultPrefix = "vigil_"

const validPrefix = /^[a-z][a-z0-9_]{0,31}$/

/** The names of vigil's tables under one prefix. */
export interface TableNames {
  readonly prefix: string
  readonly sessions: string
  readonly parts: string
  readonly events: string
  readonly instances: string
  readonly migrations: string
}

/**
 * The tables under `prefix`. A prefix that is not a plain identifier is a programming error in
 * the app that composes the store (a constant, not data), so it is a defect with the reason.
 */
export const tableNames = (prefix: string = defaultPrefix): TableNames => {
  if (!validPrefix.test(prefix)) {
    throw new Error(
      `the store's table prefix must be lower-case letters, digits and _, starting with a letter, at most 32 characters (got ${
        JSON.stringify(prefix)
      })`
    )
  }
  return {
    prefix,
    sessions: `${prefix}sessions`,
    parts: `${prefix}parts`,
    events: `${prefix}events`,
    instances: `${prefix}instances`,
    migrations: `${prefix}migrations`
  }
}

/**
 * The tables the repositories and migrations of one store work on. A reference with the default
 * prefix, so a repository built without a store layer (a test's override) reads vigil's default
 * tables; the store layers provide it from their `prefix` option.
 */
export class StoreTables extends Context.Reference<StoreTables>()("vigil/StoreTables", {
  defaultValue: (): TableNames => tableNames(defaultPrefix)
}) {}
