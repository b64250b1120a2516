import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ReadTool, WriteTool } from "../src/Files.js"
import type { ToolContext } from "../src/Tool.js"

const contextIn = (root: string): ToolContext => ({
  partId: "prt_test",
  sessionId: "ses_test",
  root,
  output: () => Effect.void,
  recordProcess: () => Effect.void,
  event: () => Effect.void
})

const sandbox = () => {
  const base = mkdtempSync(join(tmpdir(), "vigil-files-"))
  const root = join(base, "root")
  mkdirSync(root)
  writeFileSync(join(base, "secret.txt"), "outside")
  return { base, root }
}

describe("read / write", () => {
  it.effect("write then read inside the root, creating folders", () =>
    Effect.gen(function*() {
      const { root } = sandbox()
      const wrote = yield* WriteTool.run({ path: "a/b/note.txt", content: "héllo" }, contextIn(root))
      assert.strictEqual(wrote, "wrote 6 bytes to a/b/note.txt")
      assert.strictEqual(yield* ReadTool.run({ path: "a/b/note.txt" }, contextIn(root)), "héllo")
    }))

  it.effect("paths that escape the root are refused, naming the path", () =>
    Effect.gen(function*() {
      const { base, root } = sandbox()
      symlinkSync(base, join(root, "link"))
      for (const path of ["../secret.txt", join(base, "secret.txt"), "/etc/passwd", "link/secret.txt"]) {
        const error = yield* Effect.flip(ReadTool.run({ path }, contextIn(root)))
        assert.include(error.message, JSON.stringify(path))
        assert.include(error.message, "outside the working directory")
      }
      const write = yield* Effect.flip(WriteTool.run({ path: "link/new.txt", content: "x" }, contextIn(root)))
      assert.include(write.message, "outside the working directory")
    }))

  it.effect("a missing file is a clear error", () =>
    Effect.gen(function*() {
      const { root } = sandbox()
      const error = yield* Effect.flip(ReadTool.run({ path: "nope.txt" }, contextIn(root)))
      assert.strictEqual(error.message, "no such file: nope.txt")
    }))
})
