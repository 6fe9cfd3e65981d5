/** What the client checks before anything goes on the wire: subscribe arguments, the URL. */
import { isOffset } from './offsets.js';
import type { ConnectOptions, SubscribeOptions } from './types.js';

const EVENT_TYPE_RE = /^[a-z][a-z0-9_]{0,63}$/;
const SYMBOL_RE = /^[A-Z0-9][A-Z0-9._:/-]{0,63}$/;
const MAX_LAST = 100000;
const MAX_SYMBOLS = 1000;

/** Validate the arguments of `subscribe()` (one-line TypeErrors). */
export function checkSubscribe(eventType: unknown, callback: unknown, options: SubscribeOptions): void {
  if (typeof eventType !== 'string' || !EVENT_TYPE_RE.test(eventType)) {
    throw new TypeError(`invalid event type ${JSON.stringify(eventType)}`);
  }
  if (typeof callback !== 'function') throw new TypeError('callback must be a function');
  const { symbols, since, last, conflateMs } = options;
  if (since != null && last != null) throw new TypeError("give 'since' or 'last', not both");
  if (since != null && !isOffset(since)) throw new TypeError(`invalid offset ${JSON.stringify(since)}`);
  if (last != null && !(Number.isInteger(last) && last >= 0 && last <= MAX_LAST)) {
    throw new TypeError(`'last' must be an integer from 0 to ${MAX_LAST}`);
  }
  if (conflateMs != null && !(Number.isInteger(conflateMs) && conflateMs >= 10 && conflateMs <= 60000)) {
    throw new TypeError("'conflateMs' must be an integer from 10 to 60000");
  }
  if (symbols != null) {
    if (!Array.isArray(symbols) || symbols.length > MAX_SYMBOLS) {
      throw new TypeError(`'symbols' must be an array of at most ${MAX_SYMBOLS} symbols`);
    }
    for (const s of symbols) {
      if (typeof s !== 'string' || !SYMBOL_RE.test(s.toUpperCase())) throw new TypeError(`invalid symbol ${JSON.stringify(s)}`);
    }
  }
}

/** The WebSocket URL for `url`: http(s) -> ws(s), relative to the page, batch and token query. */
export function wsUrl(url: string, options: ConnectOptions, token: string | null): string {
  const base = typeof location !== 'undefined' ? location.href : undefined;
  const u = new URL(url, base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  u.searchParams.delete('batch');
  u.searchParams.delete('batch_ms');
  if (options.batch ?? true) {
    u.searchParams.set('batch', '1');
    if (options.batchMs != null) u.searchParams.set('batch_ms', String(options.batchMs));
  }
  if (token) u.searchParams.set('token', token);
  return u.toString();
}
