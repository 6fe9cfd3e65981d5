/** Full-jitter exponential backoff with the reset-after-stable rule (same as `shared.backoff`). */
export class Backoff {
  failures = 0;
  connectedAt: number | null = null;

  /**
   * @param base first ceiling, ms
   * @param cap largest ceiling, ms
   * @param stableAfter a connection up this long resets the sequence, ms
   */
  constructor(
    readonly base = 500,
    readonly cap = 30000,
    readonly stableAfter = 30000,
    readonly random: () => number = Math.random,
  ) {}

  /** A connection was accepted at `now` (ms). */
  connected(now: number): void {
    this.connectedAt = now;
  }

  /** A connection failed or dropped at `now`: how long to wait before the next attempt, ms. */
  next(now: number): number {
    if (this.connectedAt !== null && now - this.connectedAt >= this.stableAfter) this.failures = 0;
    this.connectedAt = null;
    const ceiling = Math.min(this.cap, this.base * 2 ** Math.min(this.failures, 30));
    this.failures += 1;
    return this.random() * ceiling;
  }

  reset(): void {
    this.failures = 0;
  }
}
