/**
 * How much of a tool's output a part keeps: the one definition, used by the shell while it runs, by
 * the runner for what a stopped part had printed, and by the store as its last guard.
 */
export const outputCapBytes = 64 * 1024

export interface OutputTextOptions {
  /** A line that must survive whole after the tail: the exit code or the signal. */
  readonly footer?: string
  /** Where the whole output was written, named in the truncation marker. */
  readonly fullOutput?: string | undefined
}

const markerFor = (omitted: number, fullOutput: string | undefined) =>
  `\n… [output truncated: ${omitted} bytes omitted${fullOutput === undefined ? "" : `; full output: ${fullOutput}`}] …\n`

/**
 * A tool's output, kept within `cap` bytes: the first half and the last half, with a line saying
 * how much was dropped between them. The head shows what the command started doing, the tail how
 * it ended (the error, the summary); the middle of a huge log is the part nobody reads.
 *
 * `text()` fits the cap *including* the marker and the footer (the exit line), so nothing
 * downstream cuts again: a second cut that keeps only a head is what used to lose `[exit code 3]`.
 *
 * Counted in UTF-8 bytes, because the cap bounds what is stored on the part row; and cut only on
 * character boundaries, so a multi-byte character is never split into garbage. What it holds is
 * bounded by `cap` whatever is added: a flood costs time, not memory.
 */
export class CappedOutput {
  private readonly half: number
  private readonly head: Array<Buffer> = []
  private headBytes = 0
  private tail: Array<Buffer> = []
  private tailBytes = 0
  private dropped = 0

  constructor(readonly cap: number = outputCapBytes) {
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

  /** True once bytes were dropped from the middle. */
  get truncated(): boolean {
    return this.dropped > 0
  }

  /** Every byte added so far, kept or not. */
  get totalBytes(): number {
    return this.headBytes + this.dropped + this.tailBytes
  }

  /** The kept output (with the footer after it), within `cap` bytes in all. */
  text(options: OutputTextOptions = {}): string {
    const footer = options.footer ?? ""
    const head = Buffer.concat(this.head)
    const tail = Buffer.concat(this.tail)
    const footerBytes = Buffer.byteLength(footer)
    if (this.dropped === 0 && head.length + tail.length + footerBytes <= this.cap) {
      return head.toString("utf8") + tail.toString("utf8") + footer
    }
    // The longest marker this output can need (omitted ≤ total): its room is reserved first.
    const reserved = Buffer.byteLength(markerFor(this.totalBytes, options.fullOutput)) + footerBytes
    const budget = Math.max(0, this.cap - reserved)
    const keptHead = head.subarray(0, charBoundaryAtOrBefore(head, Math.min(head.length, Math.floor(budget / 2))))
    const tailRoom = budget - keptHead.length
    const keptTail = tail.subarray(charBoundaryAtOrAfter(tail, tail.length - Math.min(tail.length, tailRoom)))
    const omitted = this.totalBytes - keptHead.length - keptTail.length
    return keptHead.toString("utf8") + markerFor(omitted, options.fullOutput) + keptTail.toString("utf8") + footer
  }

  private trimTail(): void {
    if (this.tailBytes <= this.cap - this.half) return
    // Joined once per overflow rather than trimmed chunk by chunk: a flood of tiny chunks stays linear.
    const joined = Buffer.concat(this.tail)
    const cut = charBoundaryAtOrAfter(joined, joined.length - (this.cap - this.half))
    this.dropped += cut
    const kept = joined.subarray(cut)
    this.tail = kept.length > 0 ? [kept] : []
    this.tailBytes = kept.length
  }
}

/** `text` within `cap` bytes, head and tail kept: what a writer that holds a whole string uses. */
export const capText = (text: string, cap: number = outputCapBytes): string => {
  if (Buffer.byteLength(text) <= cap) return text
  const output = new CappedOutput(cap)
  output.add(text)
  return output.text()
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
