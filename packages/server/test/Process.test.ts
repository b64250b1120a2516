import { assert, describe, it } from "@effect/vitest"
import { PartId } from "@vigil/domain"
import { InstanceRepo, PartRepo } from "@vigil/store"
import { Effect, Option } from "effect"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, afterEach } from "vitest"
import {
  eventually,
  isAlive,
  killChildren,
  openEvents,
  removeDirs,
  repoRoot,
  request,
  serveProcess,
  tempDir,
  vigilRun,
  withStore
} from "./support.js"

const dirs: Array<string> = []
const strayPids = new Set<number>()

afterEach(() => {
  killChildren()
  for (const pid of strayPids) {
    try {
      process.kill(-pid, "SIGKILL")
    } catch {
      // already gone
    }
  }
  strayPids.clear()
})
afterAll(() => removeDirs(dirs))

/** Starts a `sleep 300` bash part on a fresh session and waits until its process is recorded. */
const startSleep = async (url: string) => {
  const session = (await request(`${url}/session`, { body: {} })).body
  const started = await request(`${url}/session/${session.id}/tool`, { body: { tool: "bash", input: { command: "sleep 300" } } })
  assert.strictEqual(started.status, 202, JSON.stringify(started.body))
  const partId = started.body.partId as string
  const part = await eventually(async () => {
    const current = (await request(`${url}/part/${partId}`)).body
    return current.pid !== null ? current : undefined
  }, 10_000, "the shell's pid")
  strayPids.add(part.pid)
  return { sessionId: session.id as string, partId, pid: part.pid as number }
}

const readPart = (db: string, id: string) =>
  withStore(db, Effect.flatMap(PartRepo, (parts) => parts.get(PartId.make(id))).pipe(Effect.map(Option.getOrThrow)))

describe("vigil serve, as a process", () => {
  it("stops cleanly on SIGTERM: exit 0, the running part recorded as error, its process gone", async () => {
    const dir = tempDir(dirs)
    const db = join(dir, "vigil.db")
    const server = await serveProcess(["--db", db], { cwd: dir })
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.match(server.stdout(), /recovery: 0 orphaned parts, 0 sessions freed, 0 processes killed, 0 dead owners \(took [\d.]+ ms\)/)
    const { partId, pid } = await startSleep(server.url)
    assert.isTrue(isAlive(pid))
    // A client on /event that never hangs up must not hold the shutdown.
    const events = await openEvents(server.url)

    const sent = Date.now()
    server.child.kill("SIGTERM")
    const exit = await server.exited
    const tookMs = Date.now() - sent
    assert.strictEqual(exit.code, 0, `${server.stdout()}\n${server.stderr()}`)
    assert.isBelow(tookMs, 5_000)
    console.log(`SIGTERM to exit: ${tookMs} ms`)
    await events.close()

    const part = await readPart(db, partId)
    assert.strictEqual(part.status, "error")
    assert.deepStrictEqual(part.error?._tag, "SessionCancelled")
    assert.isFalse(isAlive(pid), "the sleep is gone")
    const instances = await withStore(db, Effect.flatMap(InstanceRepo, (repo) => repo.listRunning()))
    assert.deepStrictEqual(instances, [], "the lease was released")
  })

  it("reads VIGIL_* from the environment (a flag wins), and VIGIL_SERVER_PASSWORD turns on basic auth", async () => {
    const dir = tempDir(dirs)
    const db = join(dir, "env.db")
    const password = "pw-from-env"
    // VIGIL_PORT=1 would fail to bind: the --port flag must win over it.
    const server = await serveProcess([], {
      cwd: dir,
      env: { VIGIL_PORT: "1", VIGIL_DB: db, VIGIL_HOST: "127.0.0.1", VIGIL_SERVER_PASSWORD: password }
    })
    assert.isTrue(existsSync(db), "the database is where VIGIL_DB says")
    const basic = (pass: string) => ({ authorization: `Basic ${Buffer.from(`vigil:${pass}`).toString("base64")}` })
    const none = await request(`${server.url}/health`)
    assert.strictEqual(none.status, 401)
    assert.strictEqual(none.headers.get("www-authenticate"), `Basic realm="vigil"`)
    assert.strictEqual((await request(`${server.url}/health`, { headers: basic("wrong") })).status, 401)
    assert.strictEqual((await request(`${server.url}/health`, { headers: basic(password) })).status, 200)
    server.child.kill("SIGTERM")
    assert.strictEqual((await server.exited).code, 0)
    assert.notInclude(server.stdout() + server.stderr(), password, "the password is never printed")
  })

  it("a bad config value stops start-up with one line naming the key and the value, and writes nothing", async () => {
    const dir = tempDir(dirs)
    const config = join(dir, "vigil.json")
    writeFileSync(config, JSON.stringify({ experimental: { tool_timeout: -5 } }))
    const db = join(dir, "data", "vigil.db")
    const result = await vigilRun(["serve", "--port", "0", "--db", db, "--config", config], { cwd: dir })
    assert.notStrictEqual(result.code, 0)
    const lines = result.stderr.split("\n").filter((line) => line.trim() !== "")
    assert.strictEqual(lines.length, 1, result.stderr)
    assert.include(lines[0], "experimental.tool_timeout")
    assert.include(lines[0], "-5")
    assert.notInclude(result.stdout, "listening")
    assert.isFalse(existsSync(db), "no database file")
    assert.isFalse(existsSync(join(dir, "data")), "not even its folder")

    // The same through the environment.
    const viaEnv = await vigilRun(["serve", "--port", "0", "--db", db], { cwd: dir, env: { VIGIL_CONFIG: config } })
    assert.notStrictEqual(viaEnv.code, 0)
    assert.strictEqual(viaEnv.stderr.trim().split("\n").length, 1, viaEnv.stderr)
    assert.include(viaEnv.stderr, "experimental.tool_timeout = -5")
    assert.isFalse(existsSync(db))

    // And the default file, `vigil.json` in the working directory.
    const viaDefault = await vigilRun(["serve", "--port", "0", "--db", db], { cwd: dir })
    assert.notStrictEqual(viaDefault.code, 0)
    assert.strictEqual(viaDefault.stderr.trim().split("\n").length, 1, viaDefault.stderr)
    assert.include(viaDefault.stderr, "experimental.tool_timeout = -5")
    assert.isFalse(existsSync(db))
  })

  it("a bad or unreachable VIGIL_DATABASE_URL stops start-up with one line that never shows the password", async () => {
    const dir = tempDir(dirs)
    const db = join(dir, "vigil.db")
    const password = "s3cret-Pa55"
    const serve = ["serve", "--port", "0", "--db", db]
    const cases = [
      {
        url: `mysql://root:${password}@db.example/vigil`,
        says: "VIGIL_DATABASE_URL must be a postgres:// or postgresql:// URL (got mysql:)",
        commands: [serve]
      },
      // Port 1 on loopback: nothing listens, the connection is refused at once.
      {
        url: `postgres://vigil:${password}@127.0.0.1:1/vigil`,
        says: "cannot connect to PostgreSQL at 127.0.0.1:1/vigil: connect ECONNREFUSED",
        commands: [serve, ["status", "--db", db], ["recover", "--db", db]]
      }
    ]
    for (const { commands, says, url } of cases) {
      for (const args of commands) {
        const result = await vigilRun(args, { cwd: dir, env: { VIGIL_DATABASE_URL: url } })
        assert.strictEqual(result.code, 1, `${args[0]}: ${result.stderr}`)
        const lines = result.stderr.split("\n").filter((line) => line.trim() !== "")
        assert.strictEqual(lines.length, 1, result.stderr)
        assert.include(lines[0], says)
        assert.notInclude(result.stdout + result.stderr, password, "the password is never printed")
        assert.notInclude(result.stdout, "listening")
      }
    }
    assert.isFalse(existsSync(db), "the SQLite file is not used when a database URL is given")
  })

  it("status and recover show what a crashed server left; a dry run writes nothing, a real one ends it", async () => {
    const dir = tempDir(dirs)
    const db = join(dir, "vigil.db")
    const server = await serveProcess(["--db", db], { cwd: dir })
    const { partId, pid, sessionId } = await startSleep(server.url)
    server.child.kill("SIGKILL")
    await server.exited

    const status = await vigilRun(["status", "--db", db], { cwd: dir })
    assert.strictEqual(status.code, 0, status.stderr)
    assert.match(status.stdout, /SESSION\s+STATUS\s+AGE\s+IDLE\s+OWNER\s+TITLE/)
    assert.match(status.stdout, /PART\s+SESSION\s+KIND\s+TOOL\s+STATUS\s+AGE\s+PID\s+OWNER/)
    assert.include(status.stdout, sessionId)
    const partLine = status.stdout.split("\n").find((line) => line.startsWith(partId))
    assert.isDefined(partLine, status.stdout)
    assert.match(partLine!, /bash\s+running\s+\d+s\s+\d+\s+ins_\w+ \(pid \d+ on .+, process-gone\)/)
    assert.include(partLine!, String(pid))

    const dryRun = await vigilRun(["recover", "--db", db, "--dry-run"], { cwd: dir })
    assert.strictEqual(dryRun.code, 0, dryRun.stderr)
    assert.include(dryRun.stdout, "recovery (dry run): 1 orphaned part")
    assert.include(dryRun.stdout, partId)
    assert.match(dryRun.stdout, /dead owner ins_\w+: process-gone/)
    assert.strictEqual((await readPart(db, partId)).status, "running", "a dry run writes nothing")
    assert.isTrue(isAlive(pid), "nor kills anything")
    const instances = await withStore(db, Effect.flatMap(InstanceRepo, (repo) => repo.listRunning()))
    assert.strictEqual(instances.length, 1, "and registers no instance (only the crashed one is there)")

    const real = await vigilRun(["recover", "--db", db], { cwd: dir, env: { VIGIL_KILL_GRACE: "300" } })
    assert.strictEqual(real.code, 0, real.stderr)
    const killed = /recovery: 1 orphaned part, 1 session freed, (\d+) process(?:es)? killed/.exec(real.stdout)
    assert.isNotNull(killed, real.stdout)
    assert.isAtLeast(Number(killed![1]), 1, "the shell and its sleep were ended")
    const part = await readPart(db, partId)
    assert.strictEqual(part.status, "error")
    assert.strictEqual(part.error?._tag, "OrphanedByCrash")
    await eventually(async () => (isAlive(pid) ? undefined : true), 3_000, "the orphaned sleep to be gone")

    const after = await vigilRun(["status", "--db", db], { cwd: dir })
    assert.include(after.stdout, "no running parts")
  })

  it("--help lists the commands; status on a missing database creates nothing", async () => {
    const dir = tempDir(dirs)
    const db = join(dir, "none", "vigil.db")
    const [help, serveHelp, status] = await Promise.all([
      vigilRun(["--help"], { cwd: dir }),
      vigilRun(["serve", "--help"], { cwd: dir }),
      vigilRun(["status", "--db", db], { cwd: dir })
    ])
    assert.strictEqual(help.code, 0, help.stderr)
    for (const command of ["serve", "status", "recover"]) assert.include(help.stdout, command)
    for (const flag of ["--port", "--host", "--db", "--config"]) assert.include(serveHelp.stdout, flag)
    assert.strictEqual(status.code, 0)
    assert.include(status.stdout, "no database")
    assert.isFalse(existsSync(db))
  })
})

describe("the built server", () => {
  it("serves the dashboard's script and stylesheet from dist, bundled by the build (no esbuild at run time)", async () => {
    const dir = tempDir(dirs)
    const server = await serveProcess(["--db", join(dir, "vigil.db")], { cwd: dir })
    const built = join(repoRoot, "packages/server/dist/dashboard")
    for (const [path, file, type] of [["/dashboard/app.js", "app.js", "text/javascript"], ["/dashboard/app.css", "app.css", "text/css"]] as const) {
      const response = await fetch(`${server.url}${path}`)
      assert.strictEqual(response.status, 200, path)
      assert.include(response.headers.get("content-type") ?? "", type)
      assert.strictEqual(await response.text(), readFileSync(join(built, file), "utf8"), path)
    }
  })
})
