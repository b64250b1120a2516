import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as ProcessTable from "../src/ProcessTable.js"
import { killNow, testRun, waitFor } from "./support.js"

const startSleeper = (env: Record<string, string> = {}) =>
  spawn("sleep", ["30"], { env: { ...process.env, ...env, [testRun.name]: testRun.value }, stdio: "ignore" })

/** Runs `body` with a child process that is killed however the body ends. */
const withChild = <A>(child: ChildProcess, body: (pid: number) => Effect.Effect<A>) =>
  body(child.pid!).pipe(Effect.ensuring(Effect.sync(() => killNow(child.pid!))))

describe("ProcessTable", () => {
  it.live("start time identifies a process: a pid with another start time is not alive", () =>
    withChild(startSleeper(), (pid) =>
      Effect.gen(function*() {
        const start = Option.getOrThrow(yield* ProcessTable.startTime(pid))
        assert.match(start, /^\d+$/)
        assert.isTrue(yield* ProcessTable.isAlive(pid))
        assert.isTrue(yield* ProcessTable.isAlive(pid, start))
        assert.isFalse(yield* ProcessTable.isAlive(pid, String(Number(start) + 1)))
        assert.isFalse(yield* ProcessTable.isAlive(pid, "wrong start time"))
        const self = yield* ProcessTable.selfStartTime()
        assert.isDefined(self)
        assert.isBelow(Number(self), Number(start) + 1, "this process started before its child")
      })))

  it.live("the command name may hold spaces and parentheses: fields are read after the last `)`", () =>
    Effect.gen(function*() {
      // comm is the name the program was exec'd by: a symlink to sleep gives it any name.
      const dir = mkdtempSync(join(tmpdir(), "vigil-comm-"))
      const weird = join(dir, "a) (b c")
      symlinkSync("/bin/sleep", weird)
      yield* withChild(
        spawn(weird, ["30"], { env: { ...process.env, [testRun.name]: testRun.value }, stdio: "ignore" }),
        (pid) =>
          Effect.gen(function*() {
            yield* waitFor(() => readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "a) (b c")
            const info = Option.getOrThrow(yield* ProcessTable.info(pid))
            assert.strictEqual(info.ppid, process.pid)
            // Not detached: it stays in our process group.
            assert.strictEqual(info.pgid, Option.getOrThrow(yield* ProcessTable.info(process.pid)).pgid)
            assert.include(["S", "R"], info.state)
            assert.match(info.startTime, /^\d+$/)
            assert.strictEqual(Option.getOrThrow(yield* ProcessTable.startTime(pid)), info.startTime)
            assert.isTrue(yield* ProcessTable.isAlive(pid, info.startTime))
          })
      ).pipe(Effect.ensuring(Effect.sync(() => rmSync(dir, { recursive: true, force: true }))))
    }))

  it.live("a dead pid and a zombie are not alive", () =>
    Effect.gen(function*() {
      // `sleep 0` exits at once, and its parent execs into a `sleep` that never waits for it: a real zombie.
      let output = ""
      const parent = spawn("/bin/sh", ["-c", "sleep 0 & echo $!; exec sleep 30"], {
        env: { ...process.env, [testRun.name]: testRun.value },
        stdio: ["ignore", "pipe", "ignore"]
      })
      parent.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()))
      yield* withChild(parent, () =>
        Effect.gen(function*() {
          yield* waitFor(() => /^\d+\n/.test(output))
          const zombie = Number(output.trim())
          yield* waitFor(() => Option.getOrUndefined(Effect.runSync(ProcessTable.info(zombie)))?.state === "Z")
          assert.isFalse(yield* ProcessTable.isAlive(zombie))
          assert.isFalse(yield* ProcessTable.isAlive(999_999_999))
          assert.isTrue(Option.isNone(yield* ProcessTable.startTime(999_999_999)))
        }))
    }))

  it.live("finds processes by their environment marker, and descendants by parent", () =>
    withChild(startSleeper({ VIGIL_PART_ID: "prt_marker_tést" }), (pid) =>
      Effect.gen(function*() {
        const found = yield* ProcessTable.withEnvMarker("VIGIL_PART_ID", "prt_marker_tést")
        assert.deepStrictEqual([...found], [pid])
        assert.strictEqual((yield* ProcessTable.withEnvMarker("VIGIL_PART_ID", "prt_marker_t")).size, 0)
        const batch = yield* ProcessTable.withEnvMarkers("VIGIL_PART_ID", new Set(["prt_marker_tést", "prt_other"]))
        assert.deepStrictEqual([...(batch.get("prt_marker_tést") ?? [])], [pid])
        assert.isFalse(batch.has("prt_other"))
        const mine = yield* ProcessTable.descendants([process.pid])
        assert.isTrue(mine.has(pid))
        assert.isFalse(mine.has(process.pid))
      })))
})
