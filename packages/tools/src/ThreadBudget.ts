/**
 * A bound on how many of node's file threads (libuv's pool: 4 by default, shared with DNS
 * lookups and every other `fs` call of the process) the file tools may hold at once.
 *
 * The file tools open nothing that can block (see `FileAccess`), but a file on a hung network
 * or FUSE mount can still stall a read inside its thread. A slot is therefore held until the
 * operation really ends, not until the tool call is interrupted (the thread stays taken either
 * way); a call still waiting for a slot is dropped when it is interrupted. So however many calls
 * hang, they hold at most `size` threads, and the rest of the process keeps the others.
 */
export class ThreadBudget {
  private running = 0
  private readonly waiting: Array<() => void> = []

  constructor(readonly size: number) {}

  /** How many operations hold a slot now (for tests and metrics). */
  get inUse(): number {
    return this.running
  }

  run<A>(task: () => Promise<A>, signal?: AbortSignal): Promise<A> {
    return new Promise<A>((resolve, reject) => {
      const start = () => {
        this.running++
        task().then(resolve, reject).finally(() => {
          this.running--
          this.waiting.shift()?.()
        })
      }
      if (this.running < this.size) return start()
      if (signal?.aborted) return reject(signal.reason)
      const ready = () => {
        signal?.removeEventListener("abort", dropped)
        start()
      }
      const dropped = () => {
        const at = this.waiting.indexOf(ready)
        if (at >= 0) this.waiting.splice(at, 1)
        reject(signal?.reason)
      }
      signal?.addEventListener("abort", dropped, { once: true })
      this.waiting.push(ready)
    })
  }
}

/** Two of libuv's four: the server's other file calls (the shell's among them) and DNS lookups keep the rest. */
export const fileToolThreads = 2
