/**
 * How something ends, decided once, by whoever claims it first; every later claim loses. A plain
 * field, not a race of fibers or a `Deferred`: every claim is one synchronous step of the claiming
 * fiber, so two claims can never both win, and the hot path (the first claim is the only one)
 * costs an assignment.
 */
export class Verdict<D> {
  #decided: D | undefined = undefined

  /** Decides `by` unless it is decided already; true when this claim decided it. */
  win(by: D): boolean {
    if (this.#decided !== undefined) return false
    this.#decided = by
    return true
  }

  /** What it was decided as; undefined until someone claims. */
  get decided(): D | undefined {
    return this.#decided
  }
}
