/**
 * A tool's output, kept within `cap` bytes: the first half and the last half, with a line saying
 * how much was dropped between them. The head shows what the command started doing, the tail how
 * it ended (the error, the summary); the middle of a huge log is the part nobody reads.
 *
 * Counted in UTF-8 bytes, because the cap bounds what is stored on the part row; and cut only on
 * character boundaries, so a multi-byte character is never split into garbage.
 */
export class CappedOutput {
  private readonly half: number
  private readonly head: Array<Buffer> = []
  private headBytes = 0
  private tail: Array<Buffer> = []
  private tailBytes = 0
  private dropped = 0

  constructor(cap: number) {
    this.half = Math.max(0, Math.floor(cap / 2))
  }

  add(chunk: string): void {
    let bytes = Buffer.from(chunk, "utf8")
    if (this.dropped === 0 && this.tailBytes === 0 && this.headBytes < this.half) {
      const cut = charBoundaryAtOrBefore(bytes, this.half - this.headBytes)
      if (cut > 0) {
        this.head.push(bytes.subarray(0, cut))
        this.headBytes += cut
      }
      bytes = bytes.subarray(cut)
      if (bytes.length === 0) return
    }
    this.tail.push(bytes)
    this.tailBytes += bytes.length
    this.trimTail()
  }

  get truncated(): boolean {
    return this.dropped > 0
  }

  text(): string {
    const head = Buffer.concat(this.head).toString("utf8")
    const tail = Buffer.concat(this.tail).toString("utf8")
    return this.dropped > 0 ? `${head}\n… [output truncated: ${this.dropped} bytes omitted] …\n${tail}` : head + tail
  }

  private trimTail(): void {
    if (this.tailBytes <= this.half) return
    // Joined once per overflow rather than trimmed chunk by chunk: a flood of tiny chunks stays linear.
    const joined = Buffer.concat(this.tail)
    const cut = charBoundaryAtOrAfter(joined, joined.length - this.half)
    this.dropped += cut
    const kept = joined.subarray(cut)
    this.tail = kept.length > 0 ? [kept] : []
    this.tailBytes = kept.length
  }
}

/** A UTF-8 continuation byte is 10xxxxxx: a character starts at any other byte. */
const isContinuation = (byte: number | undefined) => byte !== undefined && (byte & 0xc0) === 0x80

const charBoundaryAtOrBefore = (bytes: Buffer, index: number): number => {
  let at = Math.min(index, bytes.length)
  while (at > 0 && at < bytes.length && isContinuation(bytes[at])) at--
  return at
}

const charBoundaryAtOrAfter = (bytes: Buffer, index: number): number => {
  let at = Math.max(index, 0)
  while (at < bytes.length && isContinuation(bytes[at])) at++
  return at
}
