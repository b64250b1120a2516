import { assert, describe, it } from "@effect/vitest"
import { fairScheduler, SessionService } from "@vigil/runtime"
import { Effect, Fiber, FiberRef, Layer, Logger, LogLevel, Option } from "effect"
import { join } from "node:path"
import { afterAll } from "vitest"
import { ServerLive } from "../src/Server.js"
import { removeDirs, tempDir, testSettings } from "./support.js"

const dirs: Array<string> = []
afterAll(() => removeDirs(dirs))

describe("the server's runtime", () => {
  // A burst of supervised work must leave the event loop its turns (timers, HTTP, the lease
  // heartbeat): runtime/test/FairScheduler.test.ts shows the burst; this, that the server uses it.
  it.live("runs its fibers, and the fibers it forks, on the fair scheduler", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* FiberRef.get(FiberRef.currentScheduler), fairScheduler)
      const sessions = yield* SessionService
      const forked = yield* Effect.fork(sessions.list().pipe(Effect.zipRight(FiberRef.get(FiberRef.currentScheduler))))
      assert.strictEqual(yield* Fiber.join(forked), fairScheduler)
    }).pipe(
      Effect.provide(
        ServerLive({
          port: 0,
          host: "127.0.0.1",
          db: join(tempDir(dirs), "vigil.db"),
          settings: Effect.succeed(testSettings),
          password: Option.none(),
          announce: false
        }).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Error)))
      )
    ))
})
