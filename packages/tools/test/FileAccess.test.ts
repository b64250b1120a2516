import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn, spawnSync } from "node:child_process"
import { closeSync, constants, existsSync, linkSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BashTool } from "../src/Bash.js"
import type { ProtectedPaths } from "../src/FileAccess.js"
import { makeFileTools, ReadTool, WriteTool } from "../src/Files.js"
import { contextIn, testRun } from "./support.js"

const sandbox = () => {
  const base = mkdtempSync(join(tmpdir(), "vigil-access-"))
  const root = join(base, "root")
  mkdirSync(root)
  mkdirSync(join(base, "outside"))
  writeFileSync(join(base, "outside", "secret.txt"), "outside")
  return { base, root, outside: join(base, "outside") }
}

/** A read or write that must answer well within this, whatever the file is. */
const prompt = <A, E>(effect: Effect.Effect<A, E>) => Effect.timeoutFail(effect, { duration: "10 seconds", onTimeout: () => "timed out" as const })

describe("file tools and special files", () => {
  it.live("reads and writes of a FIFO are refused at once; the file threads stay free for reads, writes and bash", () =>
    Effect.gen(function*() {
      const { root } = sandbox()
      const fifo = join(root, "pipe")
      assert.strictEqual(spawnSync("mkfifo", [fifo]).status, 0)
      try {
        // More than libuv's four file threads: a blocking open in each would starve the process.
        const attempts = yield* Effect.all(
          Array.from({ length: 8 }, (_, index) =>
            prompt(index % 2 === 0 ? ReadTool.run({ path: "pipe" }, contextIn(root)) : WriteTool.run({ path: "pipe", content: "x" }, contextIn(root)))
              .pipe(Effect.flip)),
          { concurrency: "unbounded" }
        )
        for (const error of attempts) {
          assert.notStrictEqual(error, "timed out")
          assert.include((error as { message: string }).message, "not a regular file")
        }
        yield* prompt(WriteTool.run({ path: "after.txt", content: "still works" }, contextIn(root)))
        assert.strictEqual(yield* prompt(ReadTool.run({ path: "after.txt" }, contextIn(root))), "still works")
        const output = yield* Effect.timeout(BashTool.run({ command: `echo bash-ok; cat after.txt` }, { ...contextIn(root) }), "30 seconds")
        assert.include(output, "bash-ok")
        assert.include(output, "still works")
      } finally {
        // Without the fix, reads wait in file threads for a writer: give them one, so the worker recovers.
        for (let i = 0; i < 8; i++) {
          try {
            closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK))
          } catch {
            // no reader left
          }
        }
      }
    }), 60_000)
})

describe("hard links", () => {
  it.effect("a hard link to a file outside is neither read nor written through", () =>
    Effect.gen(function*() {
      const { outside, root } = sandbox()
      linkSync(join(outside, "secret.txt"), join(root, "linked.txt"))
      const read = yield* Effect.flip(ReadTool.run({ path: "linked.txt" }, contextIn(root)))
      assert.include(read.message, "linked.txt has 2 hard links")
      const write = yield* Effect.flip(WriteTool.run({ path: "linked.txt", content: "overwritten" }, contextIn(root)))
      assert.include(write.message, "linked.txt has 2 hard links")
      assert.strictEqual(readFileSync(join(outside, "secret.txt"), "utf8"), "outside")
    }))
})

describe("a symlink swapped in while writes run", () => {
  it.live("never lets a write land outside, nor a read return what is outside", () =>
    Effect.gen(function*() {
      const { outside, root } = sandbox()
      mkdirSync(join(root, "dir"))
      writeFileSync(join(root, "file"), "inside")
      // A separate process swaps, as fast as it can: `dir` is a folder or a link to `outside`,
      // `file` a file or a link to `outside/secret.txt`.
      const swapper = spawn("/bin/sh", [
        "-c",
        `cd "${root}"; while :; do rm -rf dir; ln -s "${outside}" dir; rm -f dir; mkdir dir; rm -f file; ln -s "${outside}/secret.txt" file; rm -f file; echo inside > file; done`
      ], { stdio: "ignore", env: { ...process.env, [testRun.name]: testRun.value } })
      let wrote = 0
      let refused = 0
      try {
        for (let attempt = 0; attempt < 300; attempt++) {
          const results = yield* Effect.all([
            Effect.either(WriteTool.run({ path: "dir/new.txt", content: "escaped" }, contextIn(root))),
            Effect.either(WriteTool.run({ path: "file", content: "escaped" }, contextIn(root))),
            Effect.either(ReadTool.run({ path: "file" }, contextIn(root)))
          ], { concurrency: "unbounded" })
          for (const [index, result] of results.entries()) {
            if (result._tag === "Right") {
              if (index < 2) wrote++
              else assert.notStrictEqual(result.right, "outside", "a read returned the file outside")
            } else refused++
          }
        }
      } finally {
        swapper.kill("SIGKILL")
      }
      assert.deepStrictEqual(readdirSync(outside), ["secret.txt"], "nothing was created outside")
      assert.strictEqual(readFileSync(join(outside, "secret.txt"), "utf8"), "outside")
      // The race really ran: some writes got through inside, some met a link and were refused.
      assert.isAbove(wrote, 0)
      assert.isAbove(refused, 0)
      console.log(`symlink swap race: ${wrote} writes inside, ${refused} calls refused, 0 landed outside (600 writes, 300 reads)`)
    }), 120_000)
})

describe("the server's own state", () => {
  const serverState = () => {
    const { base, outside, root } = sandbox()
    const data = join(root, ".vigil")
    mkdirSync(data)
    writeFileSync(join(data, "vigil.db"), "DATABASE")
    writeFileSync(join(data, "vigil.db-wal"), "WAL")
    mkdirSync(join(data, "output"))
    writeFileSync(join(data, "output", "prt_1.log"), "OUTPUT")
    writeFileSync(join(root, "vigil.json"), "{}")
    const protect: ProtectedPaths = {
      files: [join(data, "vigil.db"), join(data, "vigil.db-wal"), join(data, "vigil.db-shm"), join(root, "vigil.json")],
      folders: [data]
    }
    return { base, outside, root, data, protect, tools: makeFileTools({ protect }) }
  }

  it.effect("the database, its wal and shm, the config file and the data folder are refused, and left intact", () =>
    Effect.gen(function*() {
      const { data, root, tools } = serverState()
      for (const path of [".vigil/vigil.db", ".vigil/vigil.db-wal", ".vigil/vigil.db-shm", "vigil.json", ".vigil/output/prt_1.log", ".vigil/new.txt", ".vigil/sub/new.txt", join(data, "vigil.db")]) {
        const read = yield* Effect.flip(tools.read.run({ path }, contextIn(root)))
        assert.include(read.message, "part of the server's own state", path)
        const write = yield* Effect.flip(tools.write.run({ path, content: "wiped" }, contextIn(root)))
        assert.include(write.message, "part of the server's own state", path)
      }
      assert.strictEqual(readFileSync(join(data, "vigil.db"), "utf8"), "DATABASE")
      assert.strictEqual(readFileSync(join(data, "vigil.db-wal"), "utf8"), "WAL")
      assert.strictEqual(readFileSync(join(root, "vigil.json"), "utf8"), "{}")
      assert.isFalse(existsSync(join(data, "vigil.db-shm")), "a protected file that did not exist is not created")
      assert.isFalse(existsSync(join(data, "new.txt")))
      assert.isFalse(existsSync(join(data, "sub")))
    }))

  it.effect("a symlink to the database or into the data folder is refused", () =>
    Effect.gen(function*() {
      const { data, root, tools } = serverState()
      symlinkSync(join(data, "vigil.db"), join(root, "db-link"))
      symlinkSync(data, join(root, "data-link"))
      for (const path of ["db-link", "data-link/vigil.db", "data-link/output/prt_1.log"]) {
        const write = yield* Effect.flip(tools.write.run({ path, content: "wiped" }, contextIn(root)))
        assert.include(write.message, "part of the server's own state", path)
        const read = yield* Effect.flip(tools.read.run({ path }, contextIn(root)))
        assert.include(read.message, "part of the server's own state", path)
      }
      assert.strictEqual(readFileSync(join(data, "vigil.db"), "utf8"), "DATABASE")
    }))

  it.effect("a config file or a data folder not made yet cannot be created by a write", () =>
    Effect.gen(function*() {
      const { root } = sandbox()
      const tools = makeFileTools({ protect: { files: [join(root, "vigil.json")], folders: [join(root, ".vigil")] } })
      const write = yield* Effect.flip(tools.write.run({ path: "vigil.json", content: `{"provider":{}}` }, contextIn(root)))
      assert.include(write.message, "part of the server's own state")
      assert.isFalse(existsSync(join(root, "vigil.json")))
      const inData = yield* Effect.flip(tools.write.run({ path: ".vigil/output/x.log", content: "x" }, contextIn(root)))
      assert.include(inData.message, "part of the server's own state")
      assert.isFalse(existsSync(join(root, ".vigil")), "a data folder not made yet is not made by a write")
      // Everything else is as before.
      yield* tools.write.run({ path: "notes.txt", content: "fine" }, contextIn(root))
      assert.strictEqual(yield* tools.read.run({ path: "notes.txt" }, contextIn(root)), "fine")
    }))
})
