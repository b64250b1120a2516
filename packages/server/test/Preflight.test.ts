import { assert, describe, it } from "@effect/vitest"
import { HttpServerError } from "@effect/platform"
import { Cause, Effect } from "effect"
import { execFileSync } from "node:child_process"
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs"
import type { Server } from "node:net"
import { createServer } from "node:net"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import { afterAll, afterEach, vi } from "vitest"
import { reportFailure } from "../src/Cli.js"
import { killChildren, removeDirs, tempDir, vigil } from "./support.js"
import type { ChildOptions } from "./support.js"

/**
 * Odd configs and operations (issue 15 §9): each is one clear line on stderr and a non-zero
 * exit, before the database is opened or startup recovery runs (so nothing is written). Real
 * `vigil` processes (the built CLI under node); generous timeouts, as a process start is slow on a
 * loaded machine.
 */

const dirs: Array<string> = []
afterEach(() => killChildren())
afterAll(() => removeDirs(dirs))

/** Runs `vigil …` to its end; a process still running after `limitMs` is killed and said so. */
const run = async (args: ReadonlyArray<string>, options: ChildOptions, limitMs = 45_000) => {
  const child = vigil(args, options)
  let killed = false
  const timer = setTimeout(() => {
    killed = true
    child.child.kill("SIGKILL")
  }, limitMs)
  const { code } = await child.exited
  clearTimeout(timer)
  return { code, killed, stdout: child.stdout(), stderr: child.stderr() }
}

/** Exactly one non-empty stderr line, a non-zero exit, nothing served. */
const oneLine = (result: Awaited<ReturnType<typeof run>>, ...mentions: Array<string>) => {
  assert.isFalse(result.killed, `still running: ${result.stdout}\n${result.stderr}`)
  assert.notStrictEqual(result.code, 0, result.stderr)
  const lines = result.stderr.split("\n").filter((line) => line.trim() !== "")
  assert.strictEqual(lines.length, 1, result.stderr)
  for (const word of mentions) assert.include(lines[0], word)
  assert.notInclude(result.stdout, "listening")
  assert.notInclude(result.stdout, "recovery")
  return lines[0]!
}

const serveArgs = (db: string, ...more: Array<string>) => ["serve", "--port", "0", "--db", db, ...more]

describe("vigil serve refuses odd settings before it starts", () => {
  it("instance_lease: 1 is refused (it cost 39% of a core idle); the 2 s floor is named", async () => {
    const dir = tempDir(dirs)
    const db = join(dir, "data", "vigil.db")
    writeFileSync(join(dir, "vigil.json"), JSON.stringify({ experimental: { instance_lease: 1 } }))
    oneLine(await run(serveArgs(db), { cwd: dir }), "experimental.instance_lease = 1", "at least 2s")
    oneLine(await run(serveArgs(db), { cwd: tempDir(dirs), env: { VIGIL_INSTANCE_LEASE: "500ms" } }), `VIGIL_INSTANCE_LEASE = "500ms"`, "at least 2s")
    assert.isFalse(existsSync(join(dir, "data")), "nothing was created")
  }, 120_000)

  it("1e309 is said as Infinity, not a finite number (it was reported as `= null`)", async () => {
    const dir = tempDir(dirs)
    const db = join(dir, "vigil.db")
    writeFileSync(join(dir, "vigil.json"), `{ "experimental": { "tool_timeout": 1e309 } }`)
    const line = oneLine(await run(serveArgs(db), { cwd: dir }), "experimental.tool_timeout = Infinity", "not a finite number")
    assert.notInclude(line, "null")
    assert.isFalse(existsSync(db))
  }, 60_000)

  it("a bad VIGIL_ALLOWED_ORIGINS or VIGIL_ALLOWED_HOSTS entry is one line naming it", async () => {
    const dir = tempDir(dirs)
    const db = join(dir, "vigil.db")
    oneLine(await run(serveArgs(db), { cwd: dir, env: { VIGIL_ALLOWED_ORIGINS: "http://ok.example, not an origin" } }), "VIGIL_ALLOWED_ORIGINS", `"not an origin"`)
    oneLine(await run(serveArgs(db), { cwd: dir, env: { VIGIL_ALLOWED_HOSTS: "a/b" } }), "VIGIL_ALLOWED_HOSTS", `"a/b"`)
    assert.isFalse(existsSync(db))
  }, 90_000)
})

describe("vigil serve refuses a database path it cannot use, in one line", () => {
  it("under /proc (it spun at 90% CPU, deaf to SIGTERM), on /sys, a directory, a file as a folder, not SQLite", async () => {
    const dir = tempDir(dirs)
    mkdirSync(join(dir, "a-folder"))
    writeFileSync(join(dir, "a-file"), "not a folder")
    writeFileSync(join(dir, "notes.txt"), "hello, not a database")
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["/proc/x/v.db", "/proc is on proc, a kernel filesystem"],
      ["/proc/self/v.db", "/proc/self is on proc"],
      ["/sys/v.db", "/sys is on sysfs"],
      [join(dir, "a-folder"), "it is a directory"],
      [join(dir, "a-file", "v.db"), `${join(dir, "a-file")} is not a folder`],
      [join(dir, "notes.txt"), "it is not a SQLite database"]
    ]
    for (const [db, says] of cases) {
      const line = oneLine(await run(serveArgs(db), { cwd: dir }), `cannot use the database ${db}: ${says}`)
      assert.notInclude(line, "    at ")
    }
    assert.deepStrictEqual(readdirSync(dir).sort(), ["a-file", "a-folder", "notes.txt"], "nothing was written")
    assert.deepStrictEqual(readdirSync(join(dir, "a-folder")), [])
  }, 180_000)

  // Root writes through any mode bits, so as root the folder is a read-only filesystem instead (a
  // CLI run as another user would need the checkout itself readable by that user, which a clone
  // in a private temp folder is not).
  it("a folder it cannot write (read-only as root, which writes through any mode; no write bit otherwise)", async () => {
    const dir = tempDir(dirs)
    const locked = join(dir, "locked")
    mkdirSync(locked)
    const asRoot = process.getuid?.() === 0
    if (asRoot) execFileSync("mount", ["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", locked])
    else chmodSync(locked, 0o555)
    try {
      const db = join(locked, "sub", "vigil.db")
      oneLine(
        await run(serveArgs(db), { cwd: dir }),
        `cannot use the database ${db}: nothing can be created in ${locked} (${asRoot ? "EROFS" : "EACCES"})`
      )
      assert.deepStrictEqual(readdirSync(locked), [])
    } finally {
      if (asRoot) execFileSync("umount", ["-l", locked])
    }
  }, 60_000)

  it("status and recover on a directory say so in one line; on an empty file, that nothing ran there", async () => {
    const dir = tempDir(dirs)
    for (const command of ["status", "recover"]) {
      oneLine(await run([command, "--db", dir], { cwd: dir }), `cannot use the database ${dir}: it is a directory`)
    }
    // An empty file was made a database by `status` (4 KiB written), and then failed with a stack.
    const empty = join(dir, "empty.db")
    writeFileSync(empty, "")
    const status = await run(["status", "--db", empty], { cwd: dir })
    assert.strictEqual(status.code, 0, status.stderr)
    assert.include(status.stdout, `no database at ${empty}`)
    assert.strictEqual(statSync(empty).size, 0)
  }, 120_000)
})

describe("vigil serve on a busy port", () => {
  let holder: Server | undefined
  afterAll(() => holder?.close())

  it("says the port is in use, in one line, before the database is opened or recovered", async () => {
    holder = createServer()
    await new Promise<void>((resolve) => holder!.listen(0, "127.0.0.1", resolve))
    const port = (holder.address() as AddressInfo).port
    const dir = tempDir(dirs)
    const db = join(dir, "data", "vigil.db")
    const result = await run(["serve", "--port", String(port), "--db", db], { cwd: dir })
    const line = oneLine(result, `port ${port} on 127.0.0.1 is in use`)
    assert.notInclude(line, "ServeError")
    assert.isFalse(existsSync(join(dir, "data")), "no database was made, so no recovery ran")
  }, 60_000)

  it.effect("a port taken between the check and the listen is said the same way", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const cause = Object.assign(new Error("listen EADDRINUSE: address already in use 127.0.0.1:4096"), {
        code: "EADDRINUSE",
        address: "127.0.0.1",
        port: 4096
      })
      // Effect's default console writes through the global one.
      const spy = vi.spyOn(console, "error").mockImplementation((...args: Array<unknown>) => void lines.push(args.join(" ")))
      yield* reportFailure(Cause.fail(new HttpServerError.ServeError({ cause }))).pipe(Effect.ensuring(Effect.sync(() => spy.mockRestore())))
      assert.deepStrictEqual(lines, ["port 4096 on 127.0.0.1 is in use (another vigil, or another program): stop it or choose another with --port"])
    }))
})
