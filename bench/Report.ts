/**
 * A target: the value must stay at or below (`max`) or reach (`min`) the limit. A `max` target
 * that asks for "well under" the limit names the share of it that still counts as well under.
 */
export type Target =
  | { readonly kind: "max"; readonly limit: number; readonly text?: string; readonly wellUnder?: number }
  | { readonly kind: "min"; readonly limit: number; readonly text?: string }

/**
 * What a figure is set against, measured in the same run (on a shared machine only a figure and
 * its floor measured side by side say anything): the same work done the bare way (bare
 * better-sqlite3, bare `pg`, a bare `spawn`, `node -e 0`), in the row's unit; or, where no bare
 * way of the same work exists, why not (`none`).
 */
export type Floor =
  | { readonly value: number; readonly what: string }
  | { readonly none: string }

/** Another system doing the same work on this machine, in this run, in the row's unit. */
export interface Peer {
  readonly name: string
  readonly value: number
}

export interface Row {
  readonly figure: number
  readonly name: string
  readonly value: number
  readonly unit: string
  /** The floor as printed: its value and what it is, or `—: no floor (why)`. */
  readonly floor: string
  readonly floorValue: number | null
  /**
   * The figure's cost over the floor's: value ÷ floor for a time or a size, floor ÷ value for a
   * rate (`/s`), so 1 is at the floor and 3 is three times its cost, whichever the unit.
   */
  readonly ratio: number | null
  readonly peer?: { readonly name: string; readonly value: number; readonly ratio: number }
  readonly target: string
  readonly verdict: string
  /** How far a missed target is off, in the row's unit (0 when met, absent without a target). */
  readonly missedBy?: number
  readonly note?: string
}

const round = (value: number): number =>
  Math.abs(value) >= 100 ? Math.round(value) : Math.abs(value) >= 10 ? Math.round(value * 10) / 10 : Math.round(value * 100) / 100

export const show = (value: number): string => round(value).toLocaleString("en-US")

/** `3,472/s`, `236 ms`, `15.5 KiB`: a value in a unit, as a cell reads it. */
export const withUnit = (value: number, unit: string): string =>
  Number.isNaN(value) ? "—" : unit === "" ? show(value) : unit.startsWith("/") || unit === "×" ? `${show(value)}${unit}` : `${show(value)} ${unit}`

/** A rate is better higher; everything else here (times, sizes, counts) lower. */
const isRate = (unit: string) => unit.endsWith("/s")

/** The cost of `value` over the cost of `reference`, both in `unit` (see `Row.ratio`). */
export const costRatio = (value: number, reference: number, unit: string): number =>
  isRate(unit) ? reference / value : value / reference

const verdictOf = (value: number, unit: string, target: Target): { readonly verdict: string; readonly missedBy: number } => {
  const missedBy = target.kind === "max" ? value - target.limit : target.limit - value
  if (missedBy <= 0) {
    const share = value / target.limit
    const verdict = target.kind === "max" && target.wellUnder !== undefined && share > target.wellUnder
      ? `met, not well under (${Math.round(share * 100)}% of it)`
      : "met"
    return { verdict, missedBy: 0 }
  }
  // A target of 0 (no stall at all) has no share to miss it by.
  const percent = target.limit === 0 ? "" : ` (${Math.round((missedBy / target.limit) * 100)}%)`
  return { verdict: `MISSED by ${withUnit(missedBy, unit)}${percent}`, missedBy }
}

const targetText = (target: Target, unit: string) => target.text ?? `${target.kind === "max" ? "≤" : "≥"} ${withUnit(target.limit, unit)}`

export const row = (options: {
  readonly figure: number
  readonly name: string
  readonly value: number
  readonly unit: string
  readonly floor: Floor
  /** A bound on `ratio`: the figure within this many times its floor's cost. */
  readonly ratioTarget?: number
  readonly peer?: Peer
  readonly target?: Target
  readonly note?: string
}): Row => {
  const { floor, ratioTarget, target, unit, value } = options
  const measured = "value" in floor && Number.isFinite(floor.value) ? floor : undefined
  // A floor of 0 (none of the bare calls failed either) has no ratio.
  const ratio = measured === undefined || measured.value === 0 ? null : costRatio(value, measured.value, unit)
  const base = {
    figure: options.figure,
    name: options.name,
    value: round(value),
    unit,
    floor: "value" in floor ? `${withUnit(floor.value, unit)} ${floor.what}` : `—: no floor (${floor.none})`,
    floorValue: measured === undefined ? null : round(measured.value),
    ratio: ratio === null ? null : round(ratio),
    ...(options.peer !== undefined
      ? { peer: { ...options.peer, value: round(options.peer.value), ratio: round(costRatio(value, options.peer.value, unit)) } }
      : {}),
    ...(options.note !== undefined ? { note: options.note } : {})
  }
  const targets: Array<{ readonly text: string; readonly verdict: string; readonly missedBy?: number }> = []
  if (target !== undefined) targets.push({ text: targetText(target, unit), ...verdictOf(value, unit, target) })
  if (ratioTarget !== undefined) {
    const text = `within ${show(ratioTarget)}× the floor`
    // No floor measured (it failed) is no proof of the bound.
    targets.push(ratio === null ? { text, verdict: "MISSED: no floor measured" } : { text, verdict: verdictOf(ratio, "×", { kind: "max", limit: ratioTarget }).verdict })
  }
  if (targets.length === 0) return { ...base, target: "", verdict: "info" }
  const missed = targets.filter((t) => t.verdict.startsWith("MISSED"))
  const valueMissedBy = targets[0]!.missedBy
  return {
    ...base,
    target: targets.map((t) => t.text).join(", "),
    verdict: missed.length === 0 ? targets.map((t) => t.verdict).find((v) => v !== "met") ?? "met" : missed.map((t) => t.verdict).join("; "),
    ...(valueMissedBy !== undefined ? { missedBy: round(valueMissedBy) } : {})
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

/** The rows as a plain-text table, the figure number first, each figure beside its floor and the ratio. */
export const table = (rows: ReadonlyArray<Row>): string => {
  const header = ["#", "name", "value", "floor (same run)", "× floor", "peer (same run)", "target", "verdict"]
  const cells = rows.map((r) => [
    String(r.figure),
    r.name,
    withUnit(r.value, r.unit),
    r.floor,
    r.ratio === null ? "—" : `${show(r.ratio)}×`,
    r.peer === undefined ? "" : `${r.peer.name}: ${withUnit(r.peer.value, r.unit)} (${show(r.peer.ratio)}×)`,
    r.target,
    r.verdict
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const right = new Set([2, 4])
  const line = (c: ReadonlyArray<string>) =>
    c.map((cell, i) => (right.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join("  ").trimEnd()
  const rule = widths.map((w) => "-".repeat(w)).join("  ")
  const notes = rows.flatMap((r) => (r.note === undefined ? [] : [`  [${r.figure}] ${r.name}: ${r.note}`]))
  const legend = "× floor: the figure's cost over its floor's (time ÷ time, or floor rate ÷ rate): 1 is at the floor; " +
    "a peer's × is the figure's cost over the peer's"
  return [line(header), rule, ...cells.map(line), "", legend, ...(notes.length > 0 ? ["", "notes:", ...notes] : [])].join("\n")
}
