import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as ProcessTable from "./ProcessTable.js"

/**
 * Where a tool's processes are held so a hard stop finds them without their cooperation: a
 * cgroup per part. A process is placed in its part's group before it can fork, and every child it
 * forks starts in the same group whatever it does to its environment, session or parent
 * (`setsid -f env -u VIGIL_PART_ID …`, `env -i …`); only a write to another group's
 * `cgroup.procs`, which needs privileges over both groups, moves it out. The group outlives the
 * server that made it, so a restart's recovery still finds what a crash left.
 *
 * - `cgroup-v2`: a unified hierarchy with `cgroup.kill` (Linux 5.14+), which kills every member,
 *   forks in flight included, in one write.
 * - `cgroup-v1-freezer`: the v1 freezer: freeze (no member can fork any more), SIGKILL every
 *   member, thaw.
 * - `marker`: no usable cgroup (not root, no cgroupfs, not Linux): the environment marker alone,
 *   which a process that drops it escapes.
 *
 * Detected once per process (a probe: make a group, move a short-lived shell into it, remove it);
 * `VIGIL_PROCESS_CONTAINMENT` (`auto`, `cgroup-v2`, `cgroup-v1-freezer`, `marker`) picks one, and
 * a picked cgroup kind that does not work falls back to `marker`, with the reason.
 */

export type Mechanism = "cgroup-v2" | "cgroup-v1-freezer" | "marker"

export const mechanisms: ReadonlyArray<Mechanism> = ["cgroup-v2", "cgroup-v1-freezer", "marker"]

export interface Containment {
  readonly mechanism: Mechanism
  /** The directory holding the part groups (`<cgroup mount>/vigil`); none for `marker`. */
  readonly base: string | undefined
  /** Why this one (what was probed and what failed), for the startup log. */
  readonly detail: string
}

/** One part's group. */
export interface PartGroup {
  readonly mechanism: Exclude<Mechanism, "marker">
  readonly path: string
  readonly key: string
}

const baseName = "vigil"

interface Mount {
  readonly point: string
  readonly fsType: string
  readonly superOptions: ReadonlyArray<string>
}

const unescapeMount = (field: string) => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))

const mounts = (): ReadonlyArray<Mount> => {
  let text: string
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8")
  } catch {
    return []
  }
  return text.split("\n").flatMap((line) => {
    // `id parent major:minor root point options [optional…] - fstype source superoptions`
    const [left, right] = line.split(" - ")
    if (left === undefined || right === undefined) return []
    const point = left.split(" ")[4]
    const [fsType, , superOptions] = right.split(" ")
    if (point === undefined || fsType === undefined) return []
    return [{ point: unescapeMount(point), fsType, superOptions: (superOptions ?? "").split(",") }]
  })
}

const errorText = (error: unknown) => (error as NodeJS.ErrnoException).code ?? String(error)

/**
 * Makes a group under `base`, moves a real short-lived shell into it (the same way tool shells
 * enter theirs), and removes it: what answers "usable" is the kernel, not a guess from the mounts.
 */
const probe = (base: string, required: ReadonlyArray<string>): string | undefined => {
  const dir = join(base, `probe-${process.pid}-${Math.random().toString(36).slice(2, 10)}`)
  try {
    mkdirSync(base, { recursive: true })
    mkdirSync(dir)
  } catch (error) {
    return `cannot create ${dir}: ${errorText(error)}`
  }
  try {
    for (const file of required) if (!existsSync(join(dir, file))) return `${dir} has no ${file}`
    const moved = spawnSync("/bin/sh", ["-c", enterScript, "vigil-probe", join(dir, "cgroup.procs"), "/bin/true"], {
      stdio: ["ignore", "ignore", "pipe"],
      timeout: 5_000
    })
    if (moved.status !== 0) return `cannot move a process into ${dir}: ${String(moved.stderr ?? "").trim() || `exit ${moved.status}`}`
    return undefined
  } finally {
    removeDir(dir)
  }
}

const removeDir = (dir: string): boolean => {
  try {
    rmdirSync(dir)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT"
  }
}

const detectAuto = (): Containment => {
  const tried: Array<string> = []
  if (process.platform !== "linux") return { mechanism: "marker", base: undefined, detail: `no cgroups on ${process.platform}` }
  const all = mounts()
  const v2 = tryV2(all)
  if (v2.mechanism !== "marker") return v2
  tried.push(v2.detail)
  const v1 = tryV1(all)
  if (v1.mechanism !== "marker") return v1
  tried.push(v1.detail)
  return { mechanism: "marker", base: undefined, detail: tried.join("; ") }
}

const tryV2 = (all: ReadonlyArray<Mount>): Containment => {
  const mount = all.find((candidate) => candidate.fsType === "cgroup2")
  if (mount === undefined) return { mechanism: "marker", base: undefined, detail: "cgroup2: not mounted" }
  const base = join(mount.point, baseName)
  const failed = probe(base, ["cgroup.kill", "cgroup.procs"])
  return failed === undefined
    ? { mechanism: "cgroup-v2", base, detail: `cgroup2 at ${mount.point}` }
    : { mechanism: "marker", base: undefined, detail: `cgroup2: ${failed}` }
}

const tryV1 = (all: ReadonlyArray<Mount>): Containment => {
  const mount = all.find((candidate) => candidate.fsType === "cgroup" && candidate.superOptions.includes("freezer"))
  if (mount === undefined) return { mechanism: "marker", base: undefined, detail: "cgroup v1 freezer: not mounted" }
  const base = join(mount.point, baseName)
  const failed = probe(base, ["freezer.state", "cgroup.procs"])
  return failed === undefined
    ? { mechanism: "cgroup-v1-freezer", base, detail: `cgroup v1 freezer at ${mount.point}` }
    : { mechanism: "marker", base: undefined, detail: `cgroup v1 freezer: ${failed}` }
}

/** Detects the mechanism, or the one asked for (falling back to `marker` when it does not work). */
export const detect = (wanted: Mechanism | "auto" = "auto"): Containment => {
  switch (wanted) {
    case "auto":
      return detectAuto()
    case "marker":
      return { mechanism: "marker", base: undefined, detail: "chosen by VIGIL_PROCESS_CONTAINMENT" }
    case "cgroup-v2":
      return process.platform === "linux" ? tryV2(mounts()) : detectAuto()
    case "cgroup-v1-freezer":
      return process.platform === "linux" ? tryV1(mounts()) : detectAuto()
  }
}

let detected: Containment | undefined

/** The mechanism in force in this process (detected on first use, then fixed). */
export const current = (): Containment => {
  if (detected === undefined) {
    const asked = process.env["VIGIL_PROCESS_CONTAINMENT"]
    const wanted = asked === undefined || asked === "" ? "auto" : asked
    detected = wanted === "auto" || (mechanisms as ReadonlyArray<string>).includes(wanted)
      ? detect(wanted as Mechanism | "auto")
      : { ...detect("auto"), detail: `VIGIL_PROCESS_CONTAINMENT=${asked} is not one of auto, ${mechanisms.join(", ")}` }
  }
  return detected
}

/** Part ids are plain (`prt_…`); anything else is encoded, reversibly, into a safe directory name. */
const plainKey = /^[A-Za-z0-9_-]{1,200}$/
const encodeKey = (key: string) => (plainKey.test(key) ? key : `b64.${Buffer.from(key, "utf8").toString("base64url")}`)
const decodeKey = (name: string): string | undefined =>
  name.startsWith("b64.") ? Buffer.from(name.slice(4), "base64url").toString("utf8") : plainKey.test(name) ? name : undefined

/** The group of the part `key` (whether or not it exists yet); none under `marker`. */
export const groupOf = (key: string, containment: Containment = current()): PartGroup | undefined =>
  containment.mechanism === "marker" || containment.base === undefined
    ? undefined
    : { mechanism: containment.mechanism, path: join(containment.base, encodeKey(key)), key }

/**
 * The entry step: the shell writes its own pid into the group and only then execs the command, so
 * nothing the command starts can run outside it. If it cannot enter, the command does not run:
 * a tool that cannot be stopped is worse than a tool that failed to start. The command arrives as
 * arguments, never interpolated into the script.
 */
const enterScript = `echo $$ > "$1" || { echo "vigil: cannot enter the process group $1" >&2; exit 126; }; shift; exec "$@"`

/**
 * How to spawn `file args` inside the part's group: the group is made here, and the returned
 * command enters it before running `file`. Under `marker`, or when the group cannot be made (then
 * the marker is all that finds the tree), the command is returned as it is.
 */
export const spawnCommand = (
  key: string,
  file: string,
  args: ReadonlyArray<string>,
  containment: Containment = current()
): { readonly file: string; readonly args: ReadonlyArray<string>; readonly group: PartGroup | undefined } => {
  const group = groupOf(key, containment)
  if (group === undefined) return { file, args, group }
  try {
    mkdirSync(group.path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") return { file, args, group: undefined }
  }
  return { file: "/bin/sh", args: ["-c", enterScript, "vigil-enter", join(group.path, "cgroup.procs"), file, ...args], group }
}

/** The group's members now (a missing group has none). */
export const membersOf = (group: PartGroup): Set<number> => {
  try {
    const text = readFileSync(join(group.path, "cgroup.procs"), "utf8")
    return new Set(text.split("\n").flatMap((line) => (line === "" ? [] : [Number(line)])))
  } catch {
    return new Set()
  }
}

const writeControl = (group: PartGroup, file: string, value: string): boolean => {
  try {
    writeFileSync(join(group.path, file), value)
    return true
  } catch {
    return false
  }
}

const sigkill = (pid: number) => {
  try {
    process.kill(pid, "SIGKILL")
  } catch {
    // gone already
  }
}

/** How long a v1 freeze may take before members are killed anyway (a task in uninterruptible sleep freezes late). */
const freezeWaitMillis = 100

/**
 * SIGKILL to every member, including what is forking right now. v2: one write to `cgroup.kill`.
 * v1: freeze first, so no member can fork a child the kill misses, then kill each, then thaw
 * (a frozen process dies of its SIGKILL once thawed). Runs on the caller's clock: callers that
 * wait on real processes run it on the live clock.
 */
export const killGroup = (group: PartGroup): Effect.Effect<void> => {
  if (group.mechanism === "cgroup-v2") {
    return Effect.sync(() => {
      if (!writeControl(group, "cgroup.kill", "1")) for (const pid of membersOf(group)) sigkill(pid)
    })
  }
  return Effect.gen(function*() {
    if (!existsSync(group.path)) return
    writeControl(group, "freezer.state", "FROZEN")
    const deadline = performance.now() + freezeWaitMillis
    while (readState(group) === "FREEZING" && performance.now() < deadline) yield* Effect.sleep("1 millis")
    for (const pid of membersOf(group)) sigkill(pid)
  }).pipe(Effect.ensuring(Effect.sync(() => writeControl(group, "freezer.state", "THAWED"))))
}

const readState = (group: PartGroup): string | undefined => {
  try {
    return readFileSync(join(group.path, "freezer.state"), "utf8").trim()
  } catch {
    return undefined
  }
}

/** Removes the group if it is empty; true when it is gone (or never existed). */
export const removeGroup = (group: PartGroup): boolean => removeDir(group.path)

/**
 * The part keys that have a group under the mechanism in force: what startup recovery checks
 * against the database (a group of a part whose owner is dead is ended and removed; groups of
 * parts it does not know, another database's, are left alone). Probe groups are skipped.
 */
export const listGroups = (containment: Containment = current()): ReadonlyArray<PartGroup> => {
  if (containment.base === undefined || containment.mechanism === "marker") return []
  let names: Array<string>
  try {
    names = readdirSync(containment.base, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name)
  } catch {
    return []
  }
  return names.flatMap((name) => {
    const key = name.startsWith("probe-") ? undefined : decodeKey(name)
    return key === undefined ? [] : [{ mechanism: containment.mechanism as PartGroup["mechanism"], path: join(containment.base!, name), key }]
  })
}

/**
 * Every live process of the part's tree: the marker's holders and its group's members (which
 * include those that dropped the marker). What a shell's drain asks: is anything it started left?
 */
export const treeMembers = (
  marker: { readonly name: string; readonly value: string },
  containment: Containment = current()
): Effect.Effect<Set<number>> =>
  Effect.gen(function*() {
    const found = yield* ProcessTable.withEnvMarker(marker.name, marker.value)
    const group = groupOf(marker.value, containment)
    if (group !== undefined) {
      for (const pid of membersOf(group)) if (yield* ProcessTable.isAlive(pid)) found.add(pid)
    }
    return found
  })

/**
 * Removes the empty groups made more than `olderThanMillis` ago, whoever's part they were: a shell
 * enters its group milliseconds after it is made, so an old empty group is one nobody will use
 * (a server died between making it and removing it, or its database is gone). Groups with
 * members are not touched here: only a database can say whether their owner is dead.
 */
export const removeStaleEmptyGroups = (olderThanMillis: number, containment: Containment = current()): number => {
  let removed = 0
  const now = Date.now()
  for (const group of listGroups(containment)) {
    let made: number
    try {
      made = statSync(group.path).ctimeMs
    } catch {
      continue
    }
    if (now - made < olderThanMillis || membersOf(group).size > 0) continue
    if (removeDir(group.path)) removed++
  }
  return removed
}
