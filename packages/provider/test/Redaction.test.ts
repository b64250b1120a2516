import { assert, describe, it } from "@effect/vitest"
import { makeRedactor } from "../src/Redaction.js"

const key = "sk-abcdefgh0123456789ijklmnop"

describe("makeRedactor", () => {
  const redact = makeRedactor([key, "second-key-ZYXWVUT"])

  it("hides the whole key, and any fragment of 8 characters or more, wherever it is", () => {
    assert.strictEqual(redact(`bad key ${key}!`), "bad key <redacted>!")
    assert.strictEqual(redact("provided: sk-abcdefgh****mnop."), "provided: <redacted>****mnop.")
    assert.strictEqual(redact("x0123456789ijy"), "x<redacted>y")
    assert.strictEqual(redact("both sk-abcdef and -key-ZYXW"), "both <redacted> and <redacted>")
  })

  it("leaves shorter runs and other text alone", () => {
    assert.strictEqual(redact("sk-abcd and mnop, 0123456"), "sk-abcd and mnop, 0123456")
    assert.strictEqual(redact("nothing secret here"), "nothing secret here")
    assert.strictEqual(makeRedactor([])("sk-abcdefgh0123456789"), "sk-abcdefgh0123456789")
  })
})
