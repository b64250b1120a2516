import { Effect } from "effect"

/**
 * A value told once to whoever waits for it: what a `Deferred` that only ever succeeds does, made
 * for every part (its end), so lighter: making a `Deferred` copies Effect's whole prototype, and
 * awaiting one masks interruption around the wait. A waiter may be interrupted; it is then
 * dropped when the value is told (the wait of a part's end lasts at most its abort grace).
 */
export class OneShot<A> {
  private told = false
  private value: A | undefined = undefined
  private waiters: Array<(told: Effect.Effect<A>) => void> = []

  /** Waits for the value (at once when it was told). */
  readonly await: Effect.Effect<A> = Effect.async<A>((resume) => {
    if (this.told) resume(Effect.succeed(this.value as A))
    else this.waiters.push(resume)
  })

  /** Tells the value and wakes every waiter; false (and nothing changes) when one was told already. */
  unsafeTell(value: A): boolean {
    if (this.told) return false
    this.told = true
    this.value = value
    const waiters = this.waiters
    this.waiters = []
    const told = Effect.succeed(value)
    for (const resume of waiters) resume(told)
    return true
  }

  tell(value: A): Effect.Effect<boolean> {
    return Effect.sync(() => this.unsafeTell(value))
  }
}
