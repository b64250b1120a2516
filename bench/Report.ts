/**
 * A target: the value must stay at or below (`max`) or reach (`min`) the limit. A `max` target
 * that asks for "well under" the limit names the share of it that still counts as well under.
 */
export type Target =
  | { readonly kind: "max"; readonly limit: number; readonly text?: string; readonly wellUnder?: number }
  | { readonly kind: "min"; readonly limit: number; readonly text?: string }

export interface Row {
  readonly figure: number
  readonly name: string
  readonly value: number
  readonly unit: string
  /** The same work done the bare way, where one exists. */
  readonly baseline: string
  readonly target: string
  readonly verdict: string
  /** How far a missed target is off, in the row's unit (0 when met, absent without a target). */
  readonly missedBy?: number
  readonly note?: string
}

const round = (value: number): number =>
  Math.abs(value) >= 100 ? Math.round(value) : Math.abs(value) >= 10 ? Math.round(value * 10) / 10 : Math.round(value * 100) / 100

export const show = (value: number): string => round(value).toLocaleString("en-US")

export const row = (options: {
  readonly figure: number
  readonly name: string
  readonly value: number
  readonly unit: string
  readonly baseline?: string
  readonly target?: Target
  readonly note?: string
}): Row => {
  const { target } = options
  const base = {
    figure: options.figure,
    name: options.name,
    value: round(options.value),
    unit: options.unit,
    baseline: options.baseline ?? "",
    ...(options.note !== undefined ? { note: options.note } : {})
  }
  if (target === undefined) return { ...base, target: "", verdict: "info" }
  const targetText = target.text ?? `${target.kind === "max" ? "≤" : "≥"} ${show(target.limit)} ${options.unit}`
  const missedBy = target.kind === "max" ? options.value - target.limit : target.limit - options.value
  if (missedBy <= 0) {
    const share = options.value / target.limit
    const verdict = target.kind === "max" && target.wellUnder !== undefined && share > target.wellUnder
      ? `met, not well under (${Math.round(share * 100)}% of it)`
      : "met"
    return { ...base, target: targetText, verdict, missedBy: 0 }
  }
  // A target of 0 (no stall at all) has no share to miss it by.
  const percent = target.limit === 0 ? "" : ` (${Math.round((missedBy / target.limit) * 100)}%)`
  return {
    ...base,
    target: targetText,
    verdict: `MISSED by ${show(missedBy)} ${options.unit}${percent}`,
    missedBy: round(missedBy)
  }
}

export const median = (values: ReadonlyArray<number>): number => percentile(values, 50)

/** Nearest-rank percentile. */
export const percentile = (values: ReadonlyArray<number>, p: number): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1]!
}

export const max = (values: ReadonlyArray<number>): number => values.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY)

/** The rows as a plain-text table, the figure number first. */
export const table = (rows: ReadonlyArray<Row>): string => {
  const header = ["#", "name", "value", "unit", "baseline", "target", "verdict"]
  const cells = rows.map((r) => [String(r.figure), r.name, show(r.value), r.unit, r.baseline, r.target, r.verdict])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const line = (c: ReadonlyArray<string>) =>
    c.map((cell, i) => (i === 2 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join("  ").trimEnd()
  const rule = widths.map((w) => "-".repeat(w)).join("  ")
  const notes = rows.flatMap((r) => (r.note === undefined ? [] : [`  [${r.figure}] ${r.name}: ${r.note}`]))
  return [line(header), rule, ...cells.map(line), ...(notes.length > 0 ? ["", "notes:", ...notes] : [])].join("\n")
}
