/**
 * Tickstream client: one connection to a Tickstream gateway that stays up, resumes every
 * subscription after any disconnect (`since` + `epoch`), and delivers each event once, in
 * offset order (CONTRACT sections 3 and 4).
 *
 *     import { connect } from '@tickstream/client';     // or '/static/tickstream.js'
 *     const ts = connect('/ws', { token: () => fetch('/my-token').then((r) => r.text()) });
 *     ts.subscribe('price_update', (event) => show(event), { symbols: ['BTCUSDT'] });
 *     ts.onStatus((s) => console.log(s.state, s.latency, s.node));
 *     ts.onReset((r) => rebuildStateOf(r.eventType));
 */
import { TickstreamClient } from './client.js';
import type { ConnectOptions } from './types.js';

export { Backoff } from './backoff.js';
export { TickstreamClient } from './client.js';
export { jsonCodec, type Codec } from './codec.js';
export { compareOffsets, isOffset } from './offsets.js';
export * as protocol from './protocol.js';
export { tokenClaims, type TokenSource } from './auth.js';
export type * from './types.js';

/**
 * Open a client that stays connected until `close()`.
 * @param url the gateway's `/ws` (`ws:`, `wss:`, `http:`, `https:` or relative to the page;
 *   default `/ws` of the page's origin), or several: each reconnect tries the next
 */
export function connect(url?: string | string[], options: ConnectOptions = {}): TickstreamClient {
  return new TickstreamClient(url, options);
}
