import { HttpServer } from "@effect/platform"
import { RecoveryComplete } from "@vigil/runtime"
import { Console, Effect, Layer } from "effect"
import { formatRecoverySummary } from "./RecoveryReport.js"

/** The URL a client reaches the server at. */
export const urlOf = (address: HttpServer.Address): string =>
  address._tag === "UnixAddress"
    ? `unix://${address.path}`
    : `http://${address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname}:${address.port}`

/** What `vigil serve` prints on stdout: where it listens and what startup recovery did; then that it stops. */
export const Announce = Layer.scopedDiscard(
  Effect.gen(function*() {
    const server = yield* HttpServer.HttpServer
    const { report } = yield* RecoveryComplete
    // One write: whoever reads the URL line finds the report beside it (fibers may yield between
    // two writes, see FairScheduler).
    yield* Console.log(`vigil listening on ${urlOf(server.address)}\n${formatRecoverySummary(report)}`)
    yield* Effect.addFinalizer(() => Console.log("vigil stopping: interrupting turns and tools, releasing the lease"))
  })
)
