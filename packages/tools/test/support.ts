import { PartId, SessionId } from "@vigil/domain"
import { Duration, Effect } from "effect"
import { randomUUID } from "node:crypto"
import { afterAll, afterEach } from "vitest"
import * as ProcessTable from "../src/ProcessTable.js"
import type { ToolContext } from "../src/Tool.js"

/** Every process these tests start carries this marker; whatever a failed test leaves is killed. */
export const testRun = { name: "VIGIL_TOOLS_TEST", value: randomUUID() }

export const killNow = (pid: number) => {
  try {
    process.kill(pid, "SIGKILL")
  } catch {
    // gone
  }
}

const sweep = () => {
  for (const pid of Effect.runSync(ProcessTable.withEnvMarker(testRun.name, testRun.value))) killNow(pid)
}

// After each test, so one failing test's leftovers cannot confuse the next; after all, for good measure.
afterEach(sweep)
afterAll(sweep)

export const alive = (pid: number) => Effect.runSync(ProcessTable.isAlive(pid))

export const pidsIn = (output: string, label: string): Array<number> =>
  [...output.matchAll(new RegExp(`${label}=(\\d+)`, "g"))].map((match) => Number(match[1]))

/** A real-time pause that ignores the fiber's clock, so tests under `TestClock` can wait for processes too. */
export const realSleep = (millis: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, millis)))

/** Polls (real time, 10 ms) until `condition` holds; dies after `within`. */
export const waitFor = (condition: () => boolean, within: Duration.DurationInput = "3 seconds") =>
  Effect.gen(function*() {
    const limit = Duration.decode(within)
    const deadline = performance.now() + Duration.toMillis(limit)
    while (!safely(condition)) {
      if (performance.now() > deadline) return yield* Effect.die(new Error(`condition not met within ${Duration.format(limit)}`))
      yield* realSleep(10)
    }
  })

const safely = (condition: () => boolean) => {
  try {
    return condition()
  } catch {
    return false
  }
}

/** A tool's context rooted at `root`, recording nothing: for the file tools, which only need the root. */
export const contextIn = (root: string, partId = PartId.make(`prt_test_${randomUUID()}`)): ToolContext => ({
  partId,
  sessionId: SessionId.make("ses_test"),
  root,
  output: () => Effect.void,
  recordProcess: () => Effect.void,
  event: () => Effect.void
})
