/**
 * One subscription's state: its filter, its position in the stream, its request in flight.
 *
 * The position is the offset of the last event delivered (or the start position the
 * `subscribed` reply gave) together with the stream's epoch; every (re)subscribe sends both as
 * `since`/`epoch`, and an event at or before the position is a duplicate and is not delivered
 * again. While a subscribe is in flight, events of the type still arriving under the previous
 * filter are neither delivered nor allowed to move the position: the replay that follows the
 * reply starts from the position the subscribe carried, so they come again if the new filter
 * wants them (the same rule as the Python client).
 */
import { compareOffsets, isOffset } from './offsets.js';
import type { ResetInfo, SubscribedReply, SubscribeOptions, TickstreamEvent } from './types.js';

export type EventCallback = (event: TickstreamEvent) => void;

export class Subscription {
  readonly symbols: ReadonlySet<string> | null;
  readonly conflateMs: number | null;
  /** requested start, until the first reply */
  since: string | null;
  last: number | null;
  epoch: string | null;
  /** last offset delivered, or the start position; null before the first reply */
  position: string | null;
  /** id of the subscribe in flight on the current connection */
  reqId: number | null = null;
  /** the request in flight resumes from a known position */
  resuming = false;
  /** `ready` was resolved or rejected */
  settled = false;
  duplicates = 0;
  readonly ready: Promise<SubscribedReply>;
  private resolveReady: (reply: SubscribedReply) => void = () => {};
  private rejectReady: (error: Error) => void = () => {};

  /**
   * @param previous the subscription of the same type this one replaces: without `since` or
   *   `last`, the new one carries on from where it stands (or from the start it asked for)
   */
  constructor(
    readonly eventType: string,
    public callback: EventCallback,
    options: SubscribeOptions,
    previous: Subscription | undefined,
  ) {
    const { symbols, since, epoch, last, conflateMs } = options;
    this.symbols = symbols ? new Set(symbols.map((s) => String(s).toUpperCase())) : null;
    this.conflateMs = conflateMs ?? null;
    const fresh = since != null || last != null || previous === undefined;
    if (fresh) {
      this.since = since ?? null;
      this.last = last ?? null;
      this.epoch = epoch ?? null;
      this.position = null;
    } else {
      this.since = previous.position === null ? previous.since : null;
      this.last = previous.position === null ? previous.last : null;
      this.epoch = previous.epoch;
      this.position = previous.position;
    }
    this.ready = new Promise<SubscribedReply>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // a refusal also goes to onError: never an unhandled rejection
    if (previous && !previous.settled) {
      // replaced before its reply: its `ready` follows the new subscription's
      previous.settled = true;
      this.ready.then(previous.resolveReady, previous.rejectReady);
    }
  }

  /** The subscribe op (without its id) for a first subscribe or a resume. */
  message(): Record<string, unknown> {
    const message: Record<string, unknown> = { op: 'subscribe', event_type: this.eventType };
    if (this.symbols) message.symbols = [...this.symbols].sort();
    this.resuming = this.position !== null;
    const since = this.position ?? this.since;
    if (since !== null) {
      message.since = since;
      if (this.epoch) message.epoch = this.epoch;
    } else if (this.last !== null) {
      message.last = this.last;
    }
    if (this.conflateMs !== null) message.conflate_ms = this.conflateMs;
    return message;
  }

  /**
   * An event of this type arrived: `deliver` it (new and wanted), or it is a `duplicate` (at or
   * before the position), or `stale` (from before the subscribe in flight, or unwanted).
   */
  accept(event: TickstreamEvent): 'deliver' | 'duplicate' | 'stale' {
    // In flight: the event belongs to the previous filter (or to the subscription this one
    // replaced); it must not move the position, or the replay would skip what it covers.
    if (this.reqId !== null || this.position === null) return 'stale';
    const offset = event.offset;
    if (!isOffset(offset)) return 'stale';
    if (compareOffsets(offset, this.position) <= 0) {
      this.duplicates += 1;
      return 'duplicate';
    }
    this.position = offset;
    const symbol = event.symbol;
    return this.symbols === null || symbol == null || this.symbols.has(symbol) ? 'deliver' : 'stale';
  }

  /** Apply the `subscribed` reply to the request in flight; a ResetInfo when `recovered:false`. */
  subscribed(reply: SubscribedReply): ResetInfo | null {
    this.reqId = null;
    const previousOffset = this.position;
    const previousEpoch = this.epoch;
    this.epoch = reply.epoch || null;
    this.position = reply.offset;
    this.since = null;
    this.last = null;
    if (!this.settled) {
      this.settled = true;
      this.resolveReady(reply);
    }
    if (reply.recovered !== false) return null;
    return {
      eventType: this.eventType, resumed: this.resuming, previousOffset, previousEpoch,
      offset: reply.offset, epoch: reply.epoch, earliest: reply.earliest ?? null,
    };
  }

  /** Reject `ready` if it is still waiting. */
  fail(error: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.rejectReady(error);
  }
}
