import { assert, describe, it } from "@effect/vitest"
import { ToolTimeout } from "@vigil/domain"
import { Containment, ProcessTable } from "@vigil/tools"
import { Duration, Effect, Layer } from "effect"
import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach } from "vitest"
import { ProcessControl } from "../src/supervision/ProcessControl.js"
import { SessionService } from "../src/agent/SessionService.js"
import { Settings } from "../src/Settings.js"
import { getPart, testRuntime, testSettings } from "./support.js"

/** The escapee drops every marker: its pid is kept so a failed test still ends it. */
const escapees = new Set<number>()
afterEach(() => {
  for (const pid of escapees) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // gone
    }
  }
  escapees.clear()
})

// In CI (root, cgroupfs mounted) the cgroup path is the one under test: a fallback there fails, not skips.
const cgroupsExpected = ["true", "1"].includes((process.env["CI"] ?? "").toLowerCase()) && process.getuid?.() === 0
const contained = Containment.current().mechanism !== "marker"

const waitFor = (condition: () => boolean, what: string) =>
  Effect.gen(function*() {
    const deadline = performance.now() + 15_000
    while (!condition()) {
      if (performance.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for ${what}`)
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))
    }
  })

describe("the bash tool's deadline (real processes)", () => {
  it.live.skipIf(!contained && !cgroupsExpected)("a part that times out takes its marker-less, TERM-ignoring escapee with it", () =>
    Effect.gen(function*() {
      const pidFile = join(mkdtempSync(join(tmpdir(), "vigil-escapee-")), "pid")
      const command = `env -i setsid -f /bin/sh -c 'trap "" TERM; echo $$ > "$0"; exec sleep 600' '${pidFile}'; sleep 300`
      const sessions = yield* SessionService
      const session = yield* sessions.create({ title: "escapee" })
      const run = yield* sessions.runTool(session.id, { tool: "bash", input: { command }, timeout: Duration.seconds(3) })
      yield* waitFor(() => existsSync(pidFile) && /^\d+\n$/.test(readFileSync(pidFile, "utf8")), "the escapee's pid")
      const escapee = Number(readFileSync(pidFile, "utf8").trim())
      escapees.add(escapee)
      assert.isTrue(yield* ProcessTable.isAlive(escapee))
      yield* run.done
      const part = yield* getPart(run.partId)
      assert.deepStrictEqual(part.error, new ToolTimeout({ timeout: 3_000 }))
      // The part is recorded after its hard stop finished (kill grace 300 ms, within the abort
      // grace of 1 s): nothing of its tree is left by then.
      assert.isFalse(yield* ProcessTable.isAlive(escapee), "the escapee outlived its part's deadline")
      const group = Containment.groupOf(run.partId)
      assert.isTrue(group === undefined || !existsSync(group.path), "the part's group is removed")
    }).pipe(Effect.provide(testRuntime({ processes: ProcessControl.Live.pipe(Layer.provide(Settings.layer(testSettings()))) }))), 30_000)
})
