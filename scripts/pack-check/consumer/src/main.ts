import { HttpServer } from "@effect/platform"
import { defaultSettings } from "@vigil/domain"
import { ServerLive, urlOf } from "@vigil/server"
import { Effect, Logger, LogLevel, Option } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

// The smallest app on the installed tarballs: vigil's server layer on a loopback port over a temp
// SQLite file, asked for /health through the app's own `HttpServer` tag (one @effect/platform, one
// effect: with two copies the tag would not be found).
const dir = mkdtempSync(join(tmpdir(), "vigil-consumer-"))

const program = Effect.gen(function*() {
  const server = yield* HttpServer.HttpServer
  const response = yield* Effect.promise(() => fetch(`${urlOf(server.address)}/health`))
  const health = (yield* Effect.promise(() => response.json())) as { readonly status?: string }
  if (response.status !== 200) return yield* Effect.dieMessage(`/health answered ${response.status}`)
  yield* Effect.sync(() => console.log(`/health: ${JSON.stringify(health)}`))
})

await program.pipe(
  Effect.provide(ServerLive({
    port: 0,
    host: "127.0.0.1",
    db: join(dir, "vigil.db"),
    settings: Effect.succeed(defaultSettings),
    password: Option.none(),
    announce: false
  })),
  Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)),
  Effect.runPromise
)
rmSync(dir, { recursive: true, force: true })
console.log("consumer ok")
