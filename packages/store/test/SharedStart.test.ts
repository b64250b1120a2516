import { assert, describe, it } from "@effect/vitest"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect } from "effect"
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { migrations } from "@vigil/store"
import { tempDir } from "./fixtures.js"

const here = dirname(fileURLToPath(import.meta.url))
const processes = 6

interface Started {
  readonly child: ChildProcess
  readonly ready: Promise<void>
  readonly exited: Promise<{ readonly code: number | null; readonly out: string }>
}

const start = (file: string, go: string): Started => {
  const child = spawn(process.execPath, ["--conditions=@vigil/source", "--import", "tsx", join(here, "fixtures/migrate-at-go.ts"), file, go], {
    stdio: ["ignore", "pipe", "pipe"]
  })
  let out = ""
  // On `close`, not `exit`: the pipes may still hold the last lines (the migration log, `ok`) at exit.
  const exited = new Promise<{ code: number | null; out: string }>((resolve) => child.on("close", (code) => resolve({ code, out })))
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      if (out.startsWith("ready\n")) resolve()
    })
    // One that dies while loading fails the test with what it said, not a timeout.
    void exited.then(({ code, out }) => reject(new Error(`exited (${code}) before it was ready:\n${out}`)))
  })
  child.stderr!.on("data", (chunk: Buffer) => (out += chunk.toString()))
  return { child, ready, exited }
}

/**
 * SQLite has no advisory lock for the migrations (PostgreSQL's run under one, InstanceLocks
 * test): the file's own write lock and the busy timeout serialize them. Proven here with real
 * processes that all open one fresh file at the same moment, as instances started together do.
 */
describe("instances started together on one fresh SQLite file", () => {
  it.live(`${processes} processes opening it at the same moment: every one starts, the migrations apply once`, () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = join(dir, "vigil.db")
      const go = join(dir, "go")
      const started = Array.from({ length: processes }, () => start(file, go))
      yield* Effect.addFinalizer(() => Effect.sync(() => started.forEach(({ child }) => child.kill("SIGKILL"))))
      // No timeout of our own on the loading (a busy machine may take long): the test's bounds it.
      yield* Effect.promise(() => Promise.all(started.map(({ ready }) => ready)))
      writeFileSync(go, "")
      const exits = yield* Effect.promise(() => Promise.all(started.map(({ exited }) => exited)))
      for (const { code, out } of exits) assert.strictEqual(code, 0, out)
      const applied = exits.filter(({ out }) => out.includes("applied migrations"))
      assert.strictEqual(applied.length, 1, "one process applied the migrations, the others found them applied")
      const rows = yield* Effect.gen(function*() {
        const sql = yield* SqliteClient.SqliteClient
        return yield* sql<{ migration_id: number }>`SELECT migration_id FROM vigil_migrations ORDER BY migration_id`
      }).pipe(Effect.provide(SqliteClient.layer({ filename: file })))
      assert.deepStrictEqual(rows.map((row) => Number(row.migration_id)), (yield* migrations).map(([id]) => id))
    }).pipe(Effect.scoped), 120_000)
})
