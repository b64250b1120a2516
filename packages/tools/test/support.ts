import { Effect } from "effect"
import { randomUUID } from "node:crypto"
import { afterAll } from "vitest"
import * as ProcessTable from "../src/ProcessTable.js"

/** Every process these tests start carries this marker; whatever a failed test leaves is killed. */
export const testRun = { name: "VIGIL_TOOLS_TEST", value: randomUUID() }

afterAll(() => {
  for (const pid of Effect.runSync(ProcessTable.withEnvMarker(testRun.name, testRun.value))) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // gone
    }
  }
})

export const alive = (pid: number) => Effect.runSync(ProcessTable.isAlive(pid))

export const pidsIn = (output: string, label: string): Array<number> =>
  [...output.matchAll(new RegExp(`${label}=(\\d+)`, "g"))].map((match) => Number(match[1]))
