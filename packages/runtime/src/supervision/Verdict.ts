/**
 * How something ends, decided once, by whoever claims it first; every later claim loses and reads
 * the verdict instead. A plain field, not a race of fibers or a `Deferred`: every claim is one
 * synchronous step of the claiming fiber, so two claims can never both win, and the hot path (the
 * first claim is the only one) costs an assignment.
 */
export class Verdict<D> {
  #decided: D | undefined = undefined

  /** Decides `by` unless it is decided already; either way, returns what it was decided as. */
  claim(by: D): D {
    if (this.#decided === undefined) this.#decided = by
    return this.#decided
  }

  /** Whether someone has decided yet. */
  get claimed(): boolean {
    return this.#decided !== undefined
  }
}
