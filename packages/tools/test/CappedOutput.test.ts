import { assert, describe, it } from "@effect/vitest"
import { CappedOutput } from "../src/CappedOutput.js"

describe("CappedOutput", () => {
  it("keeps everything under the cap, whatever the chunking", () => {
    const output = new CappedOutput(100)
    for (const chunk of ["ab", "", "cd\n", "é"]) output.add(chunk)
    assert.strictEqual(output.text(), "abcd\né")
    assert.isFalse(output.truncated)
  })

  it("keeps the head and the tail around a marker counting the bytes dropped", () => {
    const output = new CappedOutput(10)
    for (const chunk of ["HEAD-", "middle-".repeat(100), "-TAIL"]) output.add(chunk)
    const dropped = 5 + 700 + 5 - 10
    assert.strictEqual(output.text(), `HEAD-\n… [output truncated: ${dropped} bytes omitted] …\n-TAIL`)
    assert.isTrue(output.truncated)
  })

  it("never splits a multi-byte character at either cut", () => {
    const output = new CappedOutput(9)
    // 4 bytes of head room: "a" + "é"(2) fits, the next "é" would straddle the cut.
    output.add("aéé")
    output.add("xxxxxxxxxx")
    output.add("€€")
    const text = output.text()
    assert.notInclude(text, "\uFFFD")
    assert.isTrue(text.startsWith("aé\n"), text)
    assert.isTrue(text.endsWith("\n€"), text)
  })

  it("stays within the cap in bytes under a flood of small chunks", () => {
    const output = new CappedOutput(1_000)
    for (let i = 0; i < 50_000; i++) output.add("line\n")
    const [head, tail] = output.text().split(/\n… \[output truncated: \d+ bytes omitted\] …\n/)
    assert.strictEqual(Buffer.byteLength(head!) + Buffer.byteLength(tail!), 1_000)
    assert.match(output.text(), /\[output truncated: 249000 bytes omitted\]/)
  })
})
