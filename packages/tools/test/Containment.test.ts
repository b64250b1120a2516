import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach } from "vitest"
import * as Containment from "../src/Containment.js"
import { hardStop } from "../src/HardStop.js"
import { runShell } from "../src/Shell.js"
import { alive, killNow, testRun, waitFor } from "./support.js"

/**
 * The escapees here drop every marker, the test run's too: only the part's cgroup can find them.
 * Their pids are kept so a failing test still kills them.
 */
const escapees = new Set<number>()
const groups = new Set<Containment.PartGroup>()
afterEach(async () => {
  for (const pid of escapees) killNow(pid)
  escapees.clear()
  // A failed test leaves no group behind either (a killed member may take a moment to leave it).
  for (const group of groups) {
    for (let tries = 0; tries < 100 && !Containment.removeGroup(group); tries++) {
      for (const pid of Containment.membersOf(group)) killNow(pid)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  groups.clear()
})

const isRoot = process.getuid?.() === 0
const ci = ["true", "1"].includes((process.env["CI"] ?? "").toLowerCase())
const inForce = Containment.current()
// In CI (root, cgroupfs mounted) the cgroup path is the one under test: a fallback there fails, not skips.
const cgroupsExpected = ci && isRoot && process.platform === "linux"
const contained = inForce.mechanism !== "marker"
const killGraceMillis = 300

const pidFile = () => join(mkdtempSync(join(tmpdir(), "vigil-escapee-")), "pid")

/** Reads the escapee's pid once it wrote it, and keeps it for the cleanup. */
const escapeeFrom = (file: string) =>
  Effect.gen(function*() {
    yield* waitFor(() => /^\d+\n$/.test(readFileSync(file, "utf8")))
    const pid = Number(readFileSync(file, "utf8").trim())
    escapees.add(pid)
    return pid
  })

/**
 * A TERM-ignoring `sleep 600` that leaves the session, the process group, the ancestry (`setsid
 * -f` forks and its parent exits) and the marker, then writes its pid to `$file`.
 */
const escapee = (how: "unset" | "env -i", file: string) => {
  const body = `'trap "" TERM; echo $$ > "$0"; exec sleep 600' '${file}'`
  return how === "unset"
    ? `setsid -f env -u VIGIL_PART_ID -u ${testRun.name} /bin/sh -c ${body}`
    : `env -i setsid -f /bin/sh -c ${body}`
}

const shell = (command: string) => {
  const marker = { name: "VIGIL_PART_ID", value: `prt_containment_${Math.random().toString(36).slice(2)}` }
  const group = Containment.groupOf(marker.value)
  if (group !== undefined) groups.add(group)
  const effect = runShell({
    command,
    cwd: tmpdir(),
    env: { [testRun.name]: testRun.value },
    marker,
    killGrace: Duration.millis(killGraceMillis)
  })
  return { effect, marker }
}

const groupGone = (key: string) => {
  const group = Containment.groupOf(key)
  return group === undefined || !existsSync(group.path)
}

describe("containment", () => {
  it("is a cgroup as root in CI, and says which one", () => {
    console.log(`process containment: ${inForce.mechanism} (${inForce.detail})`)
    if (cgroupsExpected) assert.notStrictEqual(inForce.mechanism, "marker", `CI runs as root, yet: ${inForce.detail}`)
    assert.include(Containment.mechanisms, inForce.mechanism)
  })

  for (const how of ["unset", "env -i"] as const) {
    it.live.skipIf(!contained && !cgroupsExpected)(`a \`${how}\` setsid escapee is gone after the command completes`, () =>
      Effect.gen(function*() {
        const file = pidFile()
        const { effect, marker } = shell(`${escapee(how, file)}; echo started`)
        const startedAt = performance.now()
        const result = yield* effect
        const tookMs = performance.now() - startedAt
        assert.include(result.output, "started")
        // The escapee holds the output pipes: the drain knows it is there (its group says so) and
        // reads only briefly, instead of waiting up to 5 s for pipes that nothing would close.
        assert.isBelow(tookMs, 4_000)
        const pid = yield* escapeeFrom(file)
        assert.isFalse(alive(pid), `the escapee ${pid} outlived its finished command`)
        assert.isTrue(groupGone(marker.value), "the part's group is removed")
      }))

    it.live.skipIf(!contained && !cgroupsExpected)(`a \`${how}\` setsid escapee is gone after a timeout, within the kill grace and a little`, () =>
      Effect.gen(function*() {
        const file = pidFile()
        const { effect, marker } = shell(`trap '' TERM; ${escapee(how, file)}; sleep 300`)
        const fiber = yield* Effect.fork(effect.pipe(Effect.timeout(Duration.seconds(60))))
        const pid = yield* escapeeFrom(file)
        assert.isTrue(alive(pid))
        const stopAt = performance.now()
        // What a deadline does: interrupt the tool and wait for its release (the hard stop).
        const exit = yield* Fiber.interrupt(fiber)
        const tookMs = performance.now() - stopAt
        assert.isTrue(Exit.isInterrupted(exit))
        assert.isFalse(alive(pid), `the escapee ${pid} survived the hard stop`)
        assert.isTrue(groupGone(marker.value), "the part's group is removed")
        // The target is kill grace + 100 ms; a loaded CI machine gets a wider margin here.
        assert.isBelow(tookMs, killGraceMillis + 1_000)
        console.log(`hard stop with a ${how} escapee (${inForce.mechanism}, kill grace ${killGraceMillis} ms): ${tookMs.toFixed(0)} ms`)
      }))
  }

  // Each cgroup kind directly, whichever is in force: a machine offering both tests both.
  for (const mechanism of ["cgroup-v2", "cgroup-v1-freezer"] as const) {
    const containment = Containment.detect(mechanism)
    const usable = containment.mechanism === mechanism
    it.live.skipIf(!usable && !cgroupsExpected)(`${mechanism}: hardStop ends a TERM-ignoring tree whose escapee dropped every marker`, () =>
      Effect.gen(function*() {
        assert.strictEqual(containment.mechanism, mechanism, containment.detail)
        const key = `prt_${mechanism}_${Math.random().toString(36).slice(2)}`
        const file = pidFile()
        const command = Containment.spawnCommand(key, "/bin/sh", [
          "-c",
          `trap '' TERM; ${escapee("env -i", file)}; (trap '' TERM; sleep 300) & sleep 300`
        ], containment)
        assert.isDefined(command.group)
        const group = command.group!
        groups.add(group)
        const child = spawn(command.file, [...command.args], { stdio: "ignore", detached: true })
        const pid = yield* escapeeFrom(file)
        yield* waitFor(() => Containment.membersOf(group).size >= 4)
        assert.isTrue(Containment.membersOf(group).has(pid), "the escapee is still in its part's group")
        assert.isTrue(Containment.membersOf(group).has(child.pid!))
        const members = [...Containment.membersOf(group)]
        const report = yield* hardStop({ group, termGrace: Duration.millis(killGraceMillis) })
        for (const member of members) assert.isFalse(alive(member), `${member} survived`)
        assert.includeMembers([...report.killed], [pid])
        assert.deepStrictEqual(report.survivors, [])
        assert.isFalse(existsSync(group.path), "the emptied group is removed")
        assert.isBelow(report.tookMs, killGraceMillis + 1_000)
        console.log(`${mechanism}: hard stop of ${members.length} processes: ${report.tookMs} ms`)
      }))
  }

  it.live.skipIf(!contained && !cgroupsExpected)("the groups left behind are listed by part, and an empty one is removed", () =>
    Effect.gen(function*() {
      const key = `prt_listed_${Math.random().toString(36).slice(2)}`
      const command = Containment.spawnCommand(key, "/bin/true", [])
      const group = command.group!
      groups.add(group)
      assert.isTrue(existsSync(group.path))
      assert.isTrue(Containment.listGroups().some((listed) => listed.key === key && listed.path === group.path))
      const odd = "part id/with odd characters"
      const oddGroup = Containment.spawnCommand(odd, "/bin/true", []).group!
      groups.add(oddGroup)
      assert.isTrue(Containment.listGroups().some((listed) => listed.key === odd))
      assert.isTrue(Containment.removeGroup(group))
      assert.isTrue(Containment.removeGroup(oddGroup))
      assert.isFalse(Containment.listGroups().some((listed) => listed.key === key || listed.key === odd))
    }))

  it.live.skipIf(!contained && !cgroupsExpected)("stale empty groups are removed, a fresh or occupied one is not", () =>
    Effect.gen(function*() {
      const empty = Containment.spawnCommand(`prt_stale_${Math.random().toString(36).slice(2)}`, "/bin/true", []).group!
      groups.add(empty)
      const occupied = Containment.spawnCommand(`prt_busy_${Math.random().toString(36).slice(2)}`, "/bin/sh", ["-c", "exec sleep 600"])
      groups.add(occupied.group!)
      const child = spawn(occupied.file, [...occupied.args], { stdio: "ignore", env: {} })
      escapees.add(child.pid!)
      yield* waitFor(() => Containment.membersOf(occupied.group!).has(child.pid!))
      Containment.removeStaleEmptyGroups(60_000)
      assert.isTrue(existsSync(empty.path), "a group made just now may be about to be entered")
      // Not 0: other test files' shells, on this host, may be entering groups made a moment ago.
      yield* Effect.sleep("1500 millis")
      Containment.removeStaleEmptyGroups(1_000)
      assert.isFalse(existsSync(empty.path), "an old empty group goes")
      assert.isTrue(existsSync(occupied.group!.path), "a group with members stays: only its database can judge it")
      assert.isTrue(alive(child.pid!))
    }))
})
