/**
 * Messages waiting to be sent on one connection, paced below the gateway's per-connection rate
 * limit (CLIENT_RATE_LIMIT, 50/s by default), so a resume of many subscriptions is not dropped.
 *
 * Bounded: a subscribe or unsubscribe replaces a not yet sent subscribe of the same type (the
 * later request decides), an unsubscribe already queued for a type is not queued twice, and
 * at most one ping waits; anything else past MAX_QUEUED is refused.
 */

export const SEND_BURST = 40; // client messages sent back to back ...
export const SEND_RATE = 20; // ... then per second, under the server's default limit of 50/s
const MAX_QUEUED = 10000;

export interface Queued {
  id: number;
  message: Record<string, unknown>;
}

export class Outbox {
  private queue: Queued[] = [];
  private tokens = SEND_BURST;
  private refilled: number;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.refilled = now();
  }

  get length(): number {
    return this.queue.length;
  }

  /** Queue `item`; returns the ids of queued messages it made obsolete (never to be sent). */
  push(item: Queued): number[] {
    const { op, event_type: type } = item.message;
    const dropped: number[] = [];
    if (op === 'subscribe' || op === 'unsubscribe') {
      this.queue = this.queue.filter((q) => {
        const stale = q.message.event_type === type && q.message.op === 'subscribe';
        if (stale) dropped.push(q.id);
        return !stale;
      });
      if (op === 'unsubscribe' && this.queue.some((q) => q.message.op === 'unsubscribe' && q.message.event_type === type)) {
        dropped.push(item.id);
        return dropped;
      }
    } else if (op === 'ping' && this.queue.some((q) => q.message.op === 'ping')) {
      dropped.push(item.id);
      return dropped;
    }
    if (this.queue.length >= MAX_QUEUED) throw new RangeError(`more than ${MAX_QUEUED} messages waiting to be sent`);
    this.queue.push(item);
    return dropped;
  }

  /** The messages that may go now (taking their send tokens). */
  take(): Queued[] {
    const now = this.now();
    this.tokens = Math.min(SEND_BURST, this.tokens + ((now - this.refilled) * SEND_RATE) / 1000);
    this.refilled = now;
    const n = Math.min(this.queue.length, Math.floor(this.tokens));
    this.tokens -= n;
    return this.queue.splice(0, n);
  }

  /** Milliseconds until the next message may go, when some wait; null when none does. */
  wait(): number | null {
    if (this.queue.length === 0) return null;
    return Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / SEND_RATE));
  }
}
