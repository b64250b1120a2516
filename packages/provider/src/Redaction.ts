/**
 * Hiding secrets in text that may be stored, logged or streamed (a provider's error, a model's
 * text). A provider that echoes a key rarely echoes it whole: OpenAI answers a bad key with
 * `Incorrect API key provided: sk-abcdefgh****wxyz`, and the shown prefix alone narrows the key.
 * So any run of at least `minFragment` characters that also occurs in a secret is hidden.
 */

/** Shorter runs are too common to hide (and too short to help anyone guess a key). */
const minFragment = 8

const redactedMark = "<redacted>"

/**
 * Replaces every run of `text` that is a fragment (of `min` or more characters) of one of
 * `secrets` with `<redacted>`. Each window of `min` characters is looked up among the secrets'
 * windows; overlapping hits merge into one run, so a whole key becomes one mark.
 */
export const makeRedactor = (secrets: ReadonlyArray<string>, min = minFragment): ((text: string) => string) => {
  const windows = new Set<string>()
  for (const secret of secrets) {
    // A secret shorter than a window is hidden whole, where it occurs.
    if (secret.length > 0 && secret.length < min) windows.add(secret)
    for (let start = 0; start + min <= secret.length; start++) windows.add(secret.slice(start, start + min))
  }
  if (windows.size === 0) return (text) => text
  const short = [...windows].filter((window) => window.length < min)
  return (text) => {
    const hidden = new Uint8Array(text.length)
    let any = false
    for (let start = 0; start + min <= text.length; start++) {
      if (windows.has(text.slice(start, start + min))) {
        hidden.fill(1, start, start + min)
        any = true
      }
    }
    for (const secret of short) {
      for (let at = text.indexOf(secret); at >= 0; at = text.indexOf(secret, at + 1)) {
        hidden.fill(1, at, at + secret.length)
        any = true
      }
    }
    if (!any) return text
    let result = ""
    let start = 0
    while (start < text.length) {
      if (hidden[start] === 1) {
        while (start < text.length && hidden[start] === 1) start++
        result += redactedMark
      } else {
        const end = hidden.indexOf(1, start)
        const stop = end < 0 ? text.length : end
        result += text.slice(start, stop)
        start = stop
      }
    }
    return result
  }
}
