import { assert, describe, it } from "@effect/vitest"
import { CappedOutput, capText, outputCapBytes } from "../src/internal/CappedOutput.js"

const marker = /\n… \[output truncated: (\d+) bytes omitted(?:; full output: ([^\]]+))?\] …\n/

describe("CappedOutput", () => {
  it("keeps everything under the cap, whatever the chunking", () => {
    const output = new CappedOutput(100)
    for (const chunk of ["ab", "", "cd\n", "é"]) output.add(chunk)
    assert.strictEqual(output.text(), "abcd\né")
    assert.strictEqual(output.text({ footer: "\n[exit code 1]" }), "abcd\né\n[exit code 1]")
    assert.isFalse(output.truncated)
  })

  it("keeps the head and the tail around a marker counting the bytes dropped, all within the cap", () => {
    const output = new CappedOutput(200)
    for (const chunk of ["HEAD-", "middle-".repeat(100), "-TAIL"]) output.add(chunk)
    const text = output.text()
    assert.isAtMost(Buffer.byteLength(text), 200)
    const [head, tail] = text.split(marker)
    assert.isTrue(text.startsWith("HEAD-"), text)
    assert.isTrue(text.endsWith("-TAIL"), text)
    const omitted = Number(text.match(marker)![1])
    assert.strictEqual(Buffer.byteLength(head!) + omitted + Buffer.byteLength(text.slice(text.lastIndexOf("\n") + 1)), 710)
    assert.isDefined(tail)
    assert.isTrue(output.truncated)
    assert.strictEqual(output.totalBytes, 710)
  })

  it("the footer (the exit line) and the last line survive whole after the tail, within the cap", () => {
    const output = new CappedOutput(outputCapBytes)
    output.add("x".repeat(300_000))
    output.add("\nfatal: the last stderr line\n")
    const text = output.text({ footer: "\n[exit code 3]", fullOutput: "/data/output/p1.log" })
    assert.isAtMost(Buffer.byteLength(text), outputCapBytes)
    assert.isTrue(text.endsWith("\nfatal: the last stderr line\n\n[exit code 3]"), text.slice(-80))
    assert.strictEqual(text.match(marker)![2], "/data/output/p1.log")
  })

  it("a footer that pushes output just under the cap over it cuts the middle, not the footer", () => {
    const output = new CappedOutput(100)
    output.add("a".repeat(95))
    const text = output.text({ footer: "\n[exit code 3]" })
    assert.isAtMost(Buffer.byteLength(text), 100)
    assert.match(text, marker)
    assert.isTrue(text.endsWith("a\n[exit code 3]"), text)
  })

  it("never splits a multi-byte character at either cut", () => {
    const output = new CappedOutput(120)
    output.add("aé".repeat(40))
    output.add("xxxxxxxxxx".repeat(20))
    output.add("€".repeat(40))
    const text = output.text()
    assert.notInclude(text, "\uFFFD")
    assert.isTrue(text.startsWith("aé"), text)
    assert.isTrue(text.endsWith("€"), text)
    assert.isAtMost(Buffer.byteLength(text), 120)
  })

  it("holds at most the cap in bytes under a flood of small chunks", () => {
    const output = new CappedOutput(1_000)
    for (let i = 0; i < 50_000; i++) output.add("line\n")
    const text = output.text()
    assert.isAtMost(Buffer.byteLength(text), 1_000)
    assert.isAbove(Buffer.byteLength(text), 900)
    assert.strictEqual(output.totalBytes, 250_000)
    const omitted = Number(text.match(marker)![1])
    assert.strictEqual(omitted + Buffer.byteLength(text.replace(marker, "")), 250_000)
  })

  it("capText: whole under the cap, head and tail over it", () => {
    assert.strictEqual(capText("short", 100), "short")
    const cut = capText("H" + "m".repeat(1_000) + "T", 100)
    assert.isAtMost(Buffer.byteLength(cut), 100)
    assert.isTrue(cut.startsWith("H") && cut.endsWith("T"), cut)
    // What the shell already capped is not cut again by a later guard.
    assert.strictEqual(capText(cut, 100), cut)
  })
})
