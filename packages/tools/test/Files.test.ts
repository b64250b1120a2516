import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { readCapBytes, ReadTool, WriteTool } from "../src/Files.js"
import { contextIn } from "./support.js"

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

  it.effect("a dangling symlink pointing outside is refused, and nothing is created through it", () =>
    Effect.gen(function*() {
      const { base, root } = sandbox()
      symlinkSync(join(base, "escaped.txt"), join(root, "dangling"))
      symlinkSync(join(base, "nowhere"), join(root, "dangling-dir"))
      symlinkSync("dangling", join(root, "chain"))
      for (const path of ["dangling", "dangling-dir/x.txt", "chain"]) {
        const error = yield* Effect.flip(WriteTool.run({ path, content: "x" }, contextIn(root)))
        assert.include(error.message, `path ${JSON.stringify(path)} is outside the working directory`)
      }
      assert.isFalse(existsSync(join(base, "escaped.txt")))
      assert.isFalse(existsSync(join(base, "nowhere")))
    }))

  it.effect("symlinks and odd names that stay inside the root are fine", () =>
    Effect.gen(function*() {
      const { root } = sandbox()
      mkdirSync(join(root, "real"))
      symlinkSync(join(root, "real"), join(root, "alias"))
      symlinkSync("real/later.txt", join(root, "pending"))
      yield* WriteTool.run({ path: "alias/a.txt", content: "via alias" }, contextIn(root))
      assert.strictEqual(yield* ReadTool.run({ path: "real/a.txt" }, contextIn(root)), "via alias")
      yield* WriteTool.run({ path: "pending", content: "through a dangling link inside" }, contextIn(root))
      assert.strictEqual(yield* ReadTool.run({ path: "real/later.txt" }, contextIn(root)), "through a dangling link inside")
      yield* WriteTool.run({ path: "..notes", content: "dots" }, contextIn(root))
      assert.strictEqual(yield* ReadTool.run({ path: join(root, "..notes") }, contextIn(root)), "dots")
    }))

  it.effect("a large file is read up to the cap, saying so; a folder is a clear error", () =>
    Effect.gen(function*() {
      const { root } = sandbox()
      writeFileSync(join(root, "big.txt"), "y".repeat(readCapBytes + 10))
      const text = yield* ReadTool.run({ path: "big.txt" }, contextIn(root))
      assert.isTrue(text.startsWith("y".repeat(readCapBytes) + "\n…"))
      assert.isTrue(text.endsWith(`[file truncated at ${readCapBytes} bytes of ${readCapBytes + 10}]`))
      mkdirSync(join(root, "folder"))
      const error = yield* Effect.flip(ReadTool.run({ path: "folder" }, contextIn(root)))
      assert.strictEqual(error.message, "is a directory, not a file: folder")
    }))
})
