import { assert, describe, it } from "@effect/vitest"
import { makeInstanceId, makePartId, makeSessionId } from "@vigil/domain"

describe("ids", () => {
  it("sort in creation order", () => {
    const ids = Array.from({ length: 1000 }, () => makePartId())
    const sorted = [...ids].sort()
    assert.deepStrictEqual(sorted, ids)
  })

  it("sort in creation order across milliseconds", async () => {
    const ids: Array<string> = []
    for (let i = 0; i < 5; i++) {
      ids.push(makeSessionId(), makeSessionId())
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
    assert.deepStrictEqual([...ids].sort(), ids)
  })

  it("are unique", () => {
    const ids = Array.from({ length: 1000 }, () => makePartId())
    assert.strictEqual(new Set(ids).size, 1000)
  })

  it("carry their kind as a prefix and have a fixed length", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      [makeSessionId(), "ses_"],
      [makePartId(), "prt_"],
      [makeInstanceId(), "ins_"]
    ]
    for (const [id, prefix] of cases) {
      assert.isTrue(id.startsWith(prefix), id)
      assert.match(id, /^[a-z]{3}_[0-9a-z]{13}[0-9a-f]{10}$/)
    }
  })
})
