import { randomBytes } from "node:crypto"
import { Schema } from "effect"

export const SessionId = Schema.String.pipe(Schema.brand("SessionId"))
export type SessionId = typeof SessionId.Type
export const PartId = Schema.String.pipe(Schema.brand("PartId"))
export type PartId = typeof PartId.Type
export const InstanceId = Schema.String.pipe(Schema.brand("InstanceId"))
export type InstanceId = typeof InstanceId.Type

let lastMillis = 0
let counter = 0

// Random bytes drawn in blocks: a synchronous CSPRNG call per id was ~1.5% of a tool call's CPU.
const randomBlock = 5 * 1024
let random = Buffer.alloc(0)
let randomAt = randomBlock

const randomHex = (bytes: number): string => {
  if (randomAt + bytes > random.length) {
    random = randomBytes(randomBlock)
    randomAt = 0
  }
  const hex = random.toString("hex", randomAt, randomAt + bytes)
  randomAt += bytes
  return hex
}

/**
 * Ids sort in creation order within a process (time, then a counter), so a session's parts can be
 * read back in the order its owner made them without a separate sequence column.
 */
const makeId = (prefix: string): string => {
  const now = Date.now()
  if (now === lastMillis) counter++
  else {
    lastMillis = now
    counter = 0
  }
  return `${prefix}_${now.toString(36).padStart(9, "0")}${counter.toString(36).padStart(4, "0")}${
    randomHex(5)
  }`
}

export const makeSessionId = (): SessionId => SessionId.make(makeId("ses"))
export const makePartId = (): PartId => PartId.make(makeId("prt"))
export const makeInstanceId = (): InstanceId => InstanceId.make(makeId("ins"))
