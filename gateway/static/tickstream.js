// @ts-check
/**
 * Tickstream browser client: one dependency-free ES module (CONTRACT sections 3 and 4).
 *
 *     import { connect } from '/static/tickstream.js';
 *     const ws = connect('/ws', { token: () => fetch('/my-token').then(r => r.text()) });
 *     ws.subscribe('price_update', (event) => show(event), { symbols: ['BTCUSDT'] });
 *     ws.onStatus((s) => console.log(s.state, s.latency, s.node));
 *     ws.onReset((r) => rebuildStateOf(r.eventType));
 *
 * What it does for you, like the official Python client:
 * - reconnects with full-jitter exponential backoff (0.5 s doubling to a 30 s cap, reset once a
 *   connection has stayed up for 30 s), to the next URL when given several;
 * - resumes every subscription after any disconnect with `since` = the last offset it delivered
 *   (or the start position the `subscribed` reply gave) and the stream's `epoch`, and drops any
 *   event whose offset is not newer than the last one delivered: each event reaches your callback
 *   exactly once, in offset order, across reconnects and gateway restarts (within retention);
 * - tells you through `onReset` when a resume came back `recovered:false` (history was lost: the
 *   subscription goes on live, rebuild your state);
 * - asks for `?batch=1` (several events per frame) by default;
 * - takes the token as a string or as a function (sync or async) that returns a fresh one: the
 *   function is called before every connection attempt and again before the token's `exp`,
 *   when the fresh token is sent as an `auth` message (the connection stays up); on close code
 *   4401 it reconnects with a fresh token (a fixed string cannot get fresher: it stops);
 *   4403 (origin) and 1008 (policy) stop it for good;
 * - pings for latency and treats a connection silent for longer than the server's heartbeat
 *   interval + 10 s as dead (the server sends `{"type":"heartbeat"}` on idle connections).
 *
 * Offsets are `<ms>-<seq>` strings compared numerically (see {@link compareOffsets}), never as
 * strings.
 */

/**
 * An event as the gateway delivers it.
 * @typedef {object} TickstreamEvent
 * @property {string} event_type
 * @property {string} offset `<ms>-<seq>`, ordered within its event type
 * @property {string} [symbol]
 * @property {number} [ts] milliseconds since the epoch, when Redis accepted the event
 * @property {Record<string, any>} data
 */

/**
 * @typedef {'connecting'|'connected'|'reconnecting'|'disconnected'} ConnectionState
 * `connecting`: first attempt; `connected`: the server's welcome arrived; `reconnecting`: the
 * connection dropped and another attempt is scheduled or under way; `disconnected`: stopped for
 * good, by {@link TickstreamClient#close} (`error` null) or by a fatal refusal (`error` set).
 */

/**
 * A snapshot of the connection, given to every `onStatus` listener on each change.
 * @typedef {object} Status
 * @property {ConnectionState} state
 * @property {string|null} node the gateway node serving this connection (from `welcome`)
 * @property {string|null} session the server's session id
 * @property {string|null} user the authenticated user, null when anonymous
 * @property {number|null} latency round trip of the last ping/pong, in milliseconds
 * @property {number} attempt consecutive failed attempts (0 while connected)
 * @property {number|null} retryIn milliseconds until the next attempt, when reconnecting
 * @property {number|null} closeCode close code of the last connection that ended
 * @property {string|null} closeReason its reason
 * @property {{code: string|number, message: string}|null} error why it stopped, or the last
 *   problem while reconnecting
 */

/**
 * @typedef {string|null|(() => string|null|undefined|Promise<string|null|undefined>)} TokenSource
 */

/**
 * Options of {@link connect}.
 * @typedef {object} ConnectOptions
 * @property {TokenSource} [token] a JWT, or a function (plain or async) returning a fresh one;
 *   absent or null: anonymous
 * @property {boolean} [batch=true] ask for `?batch=1`: several messages per frame
 * @property {number} [batchMs] `&batch_ms=N`: how long the server may hold messages to fill a
 *   frame (server default 5, at most 50)
 * @property {number} [reconnectBase=500] backoff: first ceiling, milliseconds
 * @property {number} [reconnectCap=30000] backoff: largest ceiling, milliseconds
 * @property {number} [stableAfter=30000] the backoff starts over after a connection that stayed
 *   up this long, milliseconds
 * @property {number} [pingInterval=5000] latency probes, milliseconds (0: none)
 * @property {number} [heartbeatTimeout=10000] a connection silent for the server's heartbeat
 *   interval plus this long is dead, milliseconds
 * @property {number} [openTimeout=10000] give up on a handshake after this long, milliseconds
 * @property {typeof WebSocket} [WebSocket] the WebSocket class (for tests or other runtimes)
 */

/**
 * Options of {@link TickstreamClient#subscribe}.
 * @typedef {object} SubscribeOptions
 * @property {string[]} [symbols] only these symbols (absent: all)
 * @property {string} [since] deliver every event after this offset, then live
 * @property {string} [epoch] the epoch `since` belongs to (from an earlier `subscribed` reply)
 * @property {number} [last] deliver the last N retained events, then live
 * @property {number} [conflateMs] at most one event per symbol per this many ms (10 to 60000),
 *   always the newest (sent as `conflate_ms`, and again on every resume)
 */

/**
 * The server's `subscribed` reply.
 * @typedef {object} SubscribedReply
 * @property {string} event_type
 * @property {string} epoch
 * @property {string} offset the start position: events after it follow
 * @property {boolean} recovered
 * @property {string} [earliest] oldest retained offset, when `recovered` is false
 * @property {number} [conflate_ms] echoed for a conflated subscription
 */

/**
 * Given to `onReset` listeners: a subscription's history could not be replayed.
 * @typedef {object} ResetInfo
 * @property {string} eventType
 * @property {boolean} resumed true when the client was resuming after a disconnect
 * @property {string|null} previousOffset the last offset delivered before the reset
 * @property {string|null} previousEpoch
 * @property {string} offset where the subscription goes on from (live)
 * @property {string} epoch the stream's epoch now
 * @property {string|null} earliest the oldest offset still retained
 */

/**
 * A subscription, as returned by {@link TickstreamClient#subscribe}.
 * @typedef {object} SubscriptionHandle
 * @property {string} eventType
 * @property {Promise<SubscribedReply>} ready resolves on the first `subscribed` reply; rejects
 *   when the server refuses the subscription (`unauthorized`, `forbidden`, `invalid_offset`...)
 * @property {() => string|null} offset the last offset delivered (or the start position)
 * @property {() => string|null} epoch
 * @property {() => void} unsubscribe
 */

const SUBPROTOCOL = 'tickstream.json';
const OFFSET_RE = /^\d{1,20}-\d{1,20}$/;
const REFRESH_MARGIN = 60000; // re-authenticate at most this long before `exp` ...
const REFRESH_FRACTION = 0.5; // ... and at the latest after this fraction of the token's life
const MIN_REFRESH_DELAY = 200;
/** Close codes after which reconnecting cannot help. */
const FATAL = new Map([[4403, 'origin not allowed'], [1008, 'policy violation']]);
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_SILENT = 4000; // ours: the connection went silent
const MAX_TIMER = 2 ** 31 - 1;
const SEND_BURST = 40; // client messages sent back to back ...
const SEND_RATE = 20; // ... then per second, under the server's default limit of 50/s

/**
 * Compare two offsets `<ms>-<seq>` numerically: -1, 0 or 1. Exact for any size (no floats),
 * cheap enough for every event (no BigInt allocation).
 * @param {string} a
 * @param {string} b
 * @returns {-1|0|1}
 */
export function compareOffsets(a, b) {
  const i = a.indexOf('-');
  const j = b.indexOf('-');
  return compareDigits(a.slice(0, i), b.slice(0, j)) || compareDigits(a.slice(i + 1), b.slice(j + 1));
}

/**
 * @param {string} x
 * @param {string} y
 * @returns {-1|0|1}
 */
function compareDigits(x, y) {
  if (x.length > 1 && x.charCodeAt(0) === 48) x = x.replace(/^0+(?=\d)/, '');
  if (y.length > 1 && y.charCodeAt(0) === 48) y = y.replace(/^0+(?=\d)/, '');
  if (x.length !== y.length) return x.length < y.length ? -1 : 1;
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * True when `text` is an offset the gateway accepts.
 * @param {unknown} text
 * @returns {text is string}
 */
export function isOffset(text) {
  return typeof text === 'string' && OFFSET_RE.test(text);
}

/**
 * Full-jitter exponential backoff with the reset-after-stable rule (same as `shared.backoff`).
 */
export class Backoff {
  /**
   * @param {number} [base] first ceiling, ms
   * @param {number} [cap] largest ceiling, ms
   * @param {number} [stableAfter] a connection up this long resets the sequence, ms
   * @param {() => number} [random]
   */
  constructor(base = 500, cap = 30000, stableAfter = 30000, random = Math.random) {
    this.base = base;
    this.cap = cap;
    this.stableAfter = stableAfter;
    this.random = random;
    this.failures = 0;
    /** @type {number|null} */
    this.connectedAt = null;
  }

  /** @param {number} now */
  connected(now) {
    this.connectedAt = now;
  }

  /**
   * A connection failed or dropped at `now`: how long to wait before the next attempt.
   * @param {number} now
   * @returns {number}
   */
  next(now) {
    if (this.connectedAt !== null && now - this.connectedAt >= this.stableAfter) this.failures = 0;
    this.connectedAt = null;
    const ceiling = Math.min(this.cap, this.base * 2 ** Math.min(this.failures, 30));
    this.failures += 1;
    return this.random() * ceiling;
  }

  reset() {
    this.failures = 0;
  }
}

/**
 * The `exp` and `iat` claims of a JWT (seconds), without verifying it; nulls if unreadable.
 * @param {string} token
 * @returns {{exp: number|null, iat: number|null}}
 */
export function tokenClaims(token) {
  try {
    const part = token.split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const claims = JSON.parse(atob(b64));
    return {
      exp: typeof claims.exp === 'number' ? claims.exp : null,
      iat: typeof claims.iat === 'number' ? claims.iat : null,
    };
  } catch {
    return { exp: null, iat: null };
  }
}

/**
 * Open a client that stays connected until {@link TickstreamClient#close}.
 * @param {string|string[]} [url] the gateway's `/ws` (`ws:`, `wss:`, `http:`, `https:` or relative
 *   to the page; default: `/ws` of the page's origin), or several: each reconnect tries the next
 * @param {ConnectOptions} [options]
 * @returns {TickstreamClient}
 */
export function connect(url, options = {}) {
  return new TickstreamClient(url, options);
}

/**
 * @typedef {object} Sub
 * @property {string} eventType
 * @property {(event: TickstreamEvent) => void} callback
 * @property {Set<string>|null} symbols
 * @property {string|null} since requested start (before the first reply)
 * @property {string|null} epoch
 * @property {number|null} last requested `last: N` (before the first reply)
 * @property {number|null} conflateMs `conflate_ms`, sent with every (re)subscribe
 * @property {string|null} position last offset delivered, or the start position
 * @property {boolean} settled `ready` was resolved or rejected
 * @property {number|null} reqId id of the subscribe request in flight
 * @property {boolean} resuming the request in flight is a resume
 * @property {(reply: SubscribedReply) => void} resolve
 * @property {(error: Error) => void} reject
 */

export class TickstreamClient {
  /**
   * @param {string|string[]|undefined} url
   * @param {ConnectOptions} options
   */
  constructor(url, options) {
    /** @type {string[]} */
    this.urls = Array.isArray(url) ? [...url] : [url || '/ws'];
    if (this.urls.length === 0) throw new TypeError('no URL given');
    this._urlIndex = -1;
    this.options = options;
    /** @type {TokenSource} */
    this._tokenSource = options.token ?? null;
    /** @type {string|null} the token of the current connection */
    this._token = null;
    this._tokenObtained = 0;
    this._backoff = new Backoff(options.reconnectBase ?? 500, options.reconnectCap ?? 30000,
      options.stableAfter ?? 30000);
    /** @type {Map<string, Sub>} */
    this._subs = new Map();
    /** @type {Map<number, {kind: 'subscribe'|'auth'|'ping'|'unsubscribe', sub?: Sub, at?: number}>} */
    this._requests = new Map();
    /** @type {Set<(s: Status) => void>} */
    this._statusListeners = new Set();
    /** @type {Set<(r: ResetInfo) => void>} */
    this._resetListeners = new Set();
    /** @type {Set<(e: {code: string|number, message: string, id?: any, eventType?: string}) => void>} */
    this._errorListeners = new Set();
    /** @type {WebSocket|null} */
    this._ws = null;
    this._nextId = 1;
    /** @type {string[]} frames waiting for the send pacing */
    this._outbox = [];
    this._sendTokens = SEND_BURST;
    this._sendRefilled = 0;
    this._attemptSeq = 0;
    this._closed = false;
    this._everConnected = false;
    this._heartbeatMs = 30000;
    this._lastReceived = 0;
    /** @type {Record<string, any>} */
    this._timers = {};
    /** Counters, for dashboards and tests. */
    this.stats = { events: 0, duplicates: 0, frames: 0, connects: 0, resets: 0 };
    /** @type {Status} */
    this._status = {
      state: 'connecting', node: null, session: null, user: null, latency: null, attempt: 0,
      retryIn: null, closeCode: null, closeReason: null, error: null,
    };
    this._onOnline = () => {
      if (this._status.state === 'reconnecting' && this._timers.retry) this._retryNow();
    };
    if (typeof addEventListener === 'function') addEventListener('online', this._onOnline);
    this._open();
  }

  // --- public API -------------------------------------------------------------------------

  /** @returns {Status} the current status */
  get status() {
    return this._status;
  }

  /**
   * Subscribe to one event type; `callback` receives each event once, in offset order.
   * Subscribing again to the same type replaces the callback and the filter, continuing from the
   * last delivered offset unless `since` or `last` is given.
   * @param {string} eventType
   * @param {(event: TickstreamEvent) => void} callback
   * @param {SubscribeOptions} [options]
   * @returns {SubscriptionHandle}
   */
  subscribe(eventType, callback, options = {}) {
    if (typeof eventType !== 'string' || !/^[a-z][a-z0-9_]{0,63}$/.test(eventType)) {
      throw new TypeError(`invalid event type ${JSON.stringify(eventType)}`);
    }
    if (typeof callback !== 'function') throw new TypeError('callback must be a function');
    const { symbols, since, epoch, last, conflateMs } = options;
    if (since != null && last != null) throw new TypeError("give 'since' or 'last', not both");
    if (conflateMs != null && !(Number.isInteger(conflateMs) && conflateMs >= 10 && conflateMs <= 60000)) {
      throw new TypeError("'conflateMs' must be an integer from 10 to 60000");
    }
    if (since != null && !isOffset(since)) throw new TypeError(`invalid offset ${JSON.stringify(since)}`);
    if (last != null && !(Number.isInteger(last) && last >= 0)) {
      throw new TypeError("'last' must be a non-negative integer");
    }
    if (this._closed) {
      const error = Promise.reject(new Error('client closed'));
      error.catch(() => {});
      return { eventType, ready: error, offset: () => null, epoch: () => null, unsubscribe: () => {} };
    }
    const previous = this._subs.get(eventType);
    const fresh = since != null || last != null || !previous;
    /** @type {(reply: SubscribedReply) => void} */
    let resolve = () => {};
    /** @type {(error: Error) => void} */
    let reject = () => {};
    /** @type {Promise<SubscribedReply>} */
    const ready = new Promise((res, rej) => { resolve = res; reject = rej; });
    ready.catch(() => {}); // a refusal also goes to onError: never an unhandled rejection
    /** @type {Sub} */
    const sub = {
      eventType,
      callback,
      symbols: symbols ? new Set(symbols.map((s) => String(s).toUpperCase())) : null,
      // a replacement keeps the start its predecessor asked for if that was not answered yet
      since: fresh ? since ?? null : previous.position === null ? previous.since : null,
      epoch: fresh ? epoch ?? null : previous.epoch,
      last: fresh ? last ?? null : previous.position === null ? previous.last : null,
      conflateMs: conflateMs ?? null,
      position: fresh ? null : previous.position,
      settled: false,
      reqId: null,
      resuming: false,
      resolve,
      reject,
    };
    if (previous && !previous.settled) {
      // replaced before its reply: its `ready` follows the new subscription's
      previous.settled = true;
      ready.then(previous.resolve, previous.reject);
    }
    this._subs.set(eventType, sub);
    if (this._isOpen()) this._sendSubscribe(sub);
    return {
      eventType,
      ready,
      offset: () => sub.position,
      epoch: () => sub.epoch,
      unsubscribe: () => {
        if (this._subs.get(eventType) === sub) this.unsubscribe(eventType);
      },
    };
  }

  /**
   * Stop receiving `eventType`.
   * @param {string} eventType
   */
  unsubscribe(eventType) {
    const sub = this._subs.get(eventType);
    if (!sub) return;
    this._subs.delete(eventType);
    if (!sub.settled) {
      sub.settled = true;
      sub.reject(new Error('unsubscribed'));
    }
    if (this._isOpen()) this._send({ op: 'unsubscribe', event_type: eventType }, { kind: 'unsubscribe' });
  }

  /**
   * Listen to status changes; the listener is called at once with the current status.
   * @param {(status: Status) => void} listener
   * @returns {() => void} removes the listener
   */
  onStatus(listener) {
    this._statusListeners.add(listener);
    this._call(listener, this._status);
    return () => this._statusListeners.delete(listener);
  }

  /**
   * Listen to resets: a subscription came back `recovered:false` (its history was lost).
   * @param {(info: ResetInfo) => void} listener
   * @returns {() => void}
   */
  onReset(listener) {
    this._resetListeners.add(listener);
    return () => this._resetListeners.delete(listener);
  }

  /**
   * Listen to errors the server reported (refused subscriptions, rate limiting, failed
   * re-authentication) and to exceptions thrown by callbacks.
   * @param {(error: {code: string|number, message: string, id?: any, eventType?: string}) => void} listener
   * @returns {() => void}
   */
  onError(listener) {
    this._errorListeners.add(listener);
    return () => this._errorListeners.delete(listener);
  }

  /**
   * Replace the token (string, function or null) and reconnect with it at once; every
   * subscription resumes where it stood.
   * @param {ConnectOptions['token']} token
   */
  setToken(token) {
    this._tokenSource = token ?? null;
    this._token = null;
    if (this._closed) return;
    this._drop(1000, 'token changed');
    this._backoff.reset();
    this._open();
  }

  /** Drop the current connection (if any) and connect again now; subscriptions resume. */
  reconnect() {
    if (this._closed) return;
    this._drop(1000, 'reconnect requested');
    this._open();
  }

  /** Close for good. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._drop(1000, 'client closed');
    if (typeof removeEventListener === 'function') removeEventListener('online', this._onOnline);
    this._rejectAll('client closed');
    this._setStatus({ state: 'disconnected', retryIn: null, error: null });
  }

  // --- connection life cycle ----------------------------------------------------------------

  _isOpen() {
    return this._ws !== null && this._ws.readyState === 1;
  }

  async _open() {
    if (this._closed) return;
    const attempt = ++this._attemptSeq;
    this._clearTimer('retry');
    this._setStatus({ state: this._everConnected ? 'reconnecting' : 'connecting', retryIn: null });
    let token;
    try {
      token = await this._getToken();
    } catch (err) {
      if (attempt !== this._attemptSeq || this._closed) return;
      this._scheduleRetry({ error: { code: 'token', message: `token function failed: ${errorText(err)}` } });
      return;
    }
    if (attempt !== this._attemptSeq || this._closed) return;
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    /** @type {WebSocket} */
    let ws;
    this._urlIndex = (this._urlIndex + 1) % this.urls.length;
    try {
      ws = new WS(this._url(this.urls[this._urlIndex], token), [SUBPROTOCOL]);
    } catch (err) {
      // a malformed URL cannot get better by retrying
      this._stop('bad_url', errorText(err));
      return;
    }
    this._ws = ws;
    this._lastReceived = Date.now();
    this._setTimer('open', () => {
      if (this._ws === ws && ws.readyState === 0) this._lost(ws, CLOSE_SILENT, 'handshake timed out');
    }, this.options.openTimeout ?? 10000);
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (ev) => this._onMessage(ws, ev);
    ws.onclose = (ev) => this._onClose(ws, ev);
    ws.onerror = () => {}; // a close event follows
  }

  /**
   * @param {string} url
   * @param {string|null} token
   */
  _url(url, token) {
    const base = typeof location !== 'undefined' ? location.href : undefined;
    const u = new URL(url, base);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    else if (u.protocol === 'https:') u.protocol = 'wss:';
    if (this.options.batch ?? true) {
      u.searchParams.set('batch', '1');
      if (this.options.batchMs != null) u.searchParams.set('batch_ms', String(this.options.batchMs));
    }
    if (token) u.searchParams.set('token', token);
    return u.toString();
  }

  /** @param {WebSocket} ws */
  _onOpen(ws) {
    if (ws !== this._ws) return;
    this._clearTimer('open');
    this._lastReceived = Date.now();
    this.stats.connects += 1;
    this._requests.clear();
    this._outbox = [];
    this._sendTokens = SEND_BURST;
    this._sendRefilled = performance.now();
    for (const sub of this._subs.values()) this._sendSubscribe(sub);
    const ping = this.options.pingInterval ?? 5000;
    if (ping > 0) this._setInterval('ping', () => this._ping(), ping);
    this._setInterval('silence', () => this._checkSilence(ws), 1000);
  }

  /**
   * @param {WebSocket} ws
   * @param {CloseEvent} ev
   */
  _onClose(ws, ev) {
    if (ws !== this._ws) return;
    this._lost(ws, ev.code, ev.reason);
  }

  /**
   * The connection `ws` ended (closed by the server, failed, or found dead).
   * @param {WebSocket} ws
   * @param {number} code
   * @param {string} reason
   */
  _lost(ws, code, reason) {
    if (ws !== this._ws) return;
    this._drop(CLOSE_SILENT, reason);
    /** @type {Partial<Status>} */
    const change = { closeCode: code, closeReason: reason || null, node: null, session: null,
      latency: null };
    const fatal = FATAL.get(code);
    if (fatal) {
      this._stop(code, reason || fatal, change);
    } else if (code === CLOSE_UNAUTHORIZED && typeof this._tokenSource !== 'function') {
      this._stop(code, reason || 'unauthorized: the token was refused', change);
    } else {
      if (code === CLOSE_UNAUTHORIZED) change.error = { code, message: reason || 'unauthorized' };
      this._scheduleRetry(change); // after 4401 the next attempt asks for a fresh token anyway
    }
  }

  /**
   * Forget the current socket: detach its handlers, close it, stop its timers.
   * @param {number} code
   * @param {string} reason
   */
  _drop(code, reason) {
    const ws = this._ws;
    this._ws = null;
    for (const name of ['open', 'ping', 'silence', 'refresh', 'flush']) this._clearTimer(name);
    this._requests.clear();
    this._outbox = [];
    for (const sub of this._subs.values()) sub.reqId = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        if (ws.readyState <= 1) ws.close(code, reason.slice(0, 100));
      } catch {
        /* already closing */
      }
    }
  }

  /**
   * Stop for good with an error status.
   * @param {string|number} code
   * @param {string} message
   * @param {Partial<Status>} [change] more status fields to set at the same time
   */
  _stop(code, message, change = {}) {
    this._closed = true;
    this._drop(1000, 'stopped');
    this._rejectAll(message);
    this._setStatus({ ...change, state: 'disconnected', retryIn: null, error: { code, message } });
  }

  /** @param {string} message */
  _rejectAll(message) {
    for (const sub of this._subs.values()) {
      if (!sub.settled) {
        sub.settled = true;
        sub.reject(new Error(message));
      }
    }
  }

  /** @param {Partial<Status>} [change] more status fields to set at the same time */
  _scheduleRetry(change = {}) {
    const delay = Math.round(this._backoff.next(Date.now()));
    this._setStatus({ ...change, state: 'reconnecting', attempt: this._backoff.failures, retryIn: delay });
    this._setTimer('retry', () => this._open(), delay);
  }

  _retryNow() {
    this._clearTimer('retry');
    this._open();
  }

  /** @param {WebSocket} ws */
  _checkSilence(ws) {
    if (ws !== this._ws) return;
    const limit = this._heartbeatMs + (this.options.heartbeatTimeout ?? 10000);
    if (Date.now() - this._lastReceived > limit) {
      this._lost(ws, CLOSE_SILENT, `no message for ${Math.round(limit / 1000)} s`);
    }
  }

  _ping() {
    this._send({ op: 'ping' }, { kind: 'ping', at: performance.now() });
  }

  // --- tokens -------------------------------------------------------------------------------

  /**
   * The token for the next connection: a function is asked for a fresh one every time.
   * @returns {Promise<string|null>}
   */
  async _getToken() {
    const source = this._tokenSource;
    let token = null;
    if (typeof source === 'function') {
      token = await source();
      if (token != null && typeof token !== 'string') {
        throw new TypeError(`the token function returned ${typeof token}, not a string`);
      }
    } else if (typeof source === 'string') {
      token = source;
    }
    this._token = token || null;
    this._tokenObtained = Date.now();
    return this._token;
  }

  /**
   * Re-authenticate before `exp`: at most 60 s before it, and at the latest once half of the
   * token's remaining life has passed (same rule as the Python client).
   */
  _scheduleRefresh() {
    this._clearTimer('refresh');
    const token = this._token;
    if (typeof this._tokenSource !== 'function' || !token) return;
    const { exp } = tokenClaims(token);
    if (exp === null) return;
    const expiresAt = exp * 1000;
    const lifetime = Math.max(0, expiresAt - this._tokenObtained);
    const refreshAt = expiresAt - Math.min(REFRESH_MARGIN, lifetime * REFRESH_FRACTION);
    const delay = Math.max(MIN_REFRESH_DELAY, refreshAt - Date.now());
    this._setTimer('refresh', () => this._refresh(), Math.min(MAX_TIMER, delay));
  }

  async _refresh() {
    const ws = this._ws;
    const source = this._tokenSource;
    if (!ws || typeof source !== 'function') return;
    let token;
    try {
      token = await source();
    } catch (err) {
      this._emitError({ code: 'token', message: `token function failed: ${errorText(err)}` });
      if (ws === this._ws) this._setTimer('refresh', () => this._refresh(), 5000);
      return;
    }
    if (ws !== this._ws || typeof token !== 'string' || !token) return;
    this._token = token;
    this._tokenObtained = Date.now();
    this._send({ op: 'auth', token }, { kind: 'auth' });
  }

  // --- messages -----------------------------------------------------------------------------

  /**
   * @param {Record<string, any>} message
   * @param {{kind: 'subscribe'|'auth'|'ping'|'unsubscribe', sub?: Sub, at?: number}} request
   * @returns {number}
   */
  _send(message, request) {
    const id = this._nextId++;
    if (!this._isOpen()) return id;
    this._requests.set(id, request);
    this._outbox.push(JSON.stringify({ ...message, id }));
    this._flush();
    return id;
  }

  /**
   * Send what the outbox holds, paced below the gateway's per-connection message rate limit
   * (CLIENT_RATE_LIMIT, 50/s by default): a resume of many subscriptions is not dropped.
   */
  _flush() {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) {
      this._outbox = [];
      return;
    }
    const now = performance.now();
    this._sendTokens = Math.min(SEND_BURST, this._sendTokens + ((now - this._sendRefilled) * SEND_RATE) / 1000);
    this._sendRefilled = now;
    while (this._outbox.length > 0 && this._sendTokens >= 1) {
      ws.send(/** @type {string} */ (this._outbox.shift()));
      this._sendTokens -= 1;
    }
    if (this._outbox.length > 0 && !this._timers.flush) {
      this._setTimer('flush', () => this._flush(), Math.ceil(((1 - this._sendTokens) * 1000) / SEND_RATE));
    }
  }

  /** @param {Sub} sub */
  _sendSubscribe(sub) {
    /** @type {Record<string, any>} */
    const message = { op: 'subscribe', event_type: sub.eventType };
    if (sub.symbols) message.symbols = [...sub.symbols];
    sub.resuming = sub.position !== null;
    if (sub.position !== null) {
      message.since = sub.position;
      if (sub.epoch) message.epoch = sub.epoch;
    } else if (sub.since !== null) {
      message.since = sub.since;
      if (sub.epoch) message.epoch = sub.epoch;
    } else if (sub.last !== null) {
      message.last = sub.last;
    }
    if (sub.conflateMs !== null) message.conflate_ms = sub.conflateMs;
    sub.reqId = this._send(message, { kind: 'subscribe', sub });
  }

  /**
   * @param {WebSocket} ws
   * @param {MessageEvent} ev
   */
  _onMessage(ws, ev) {
    if (ws !== this._ws) return;
    this._lastReceived = Date.now();
    this.stats.frames += 1;
    let message;
    try {
      message = JSON.parse(ev.data);
    } catch {
      this._emitError({ code: 'bad_frame', message: 'a frame was not valid JSON' });
      return;
    }
    if (Array.isArray(message)) {
      for (let i = 0; i < message.length; i++) {
        this._handle(message[i]);
        if (ws !== this._ws) return; // a callback closed or replaced the connection
      }
    } else {
      this._handle(message);
    }
  }

  /** @param {any} m */
  _handle(m) {
    if (m === null || typeof m !== 'object') return;
    if (m.event_type !== undefined && m.type === undefined) {
      this._event(m);
      return;
    }
    switch (m.type) {
      case 'welcome':
        this._heartbeatMs = (typeof m.heartbeat === 'number' ? m.heartbeat : 30) * 1000;
        this._everConnected = true;
        this._backoff.connected(Date.now());
        this._setStatus({ state: 'connected', node: m.node ?? null, session: m.session ?? null,
          user: m.user ?? null, attempt: 0, retryIn: null, error: null });
        this._scheduleRefresh();
        if ((this.options.pingInterval ?? 5000) > 0) this._ping();
        break;
      case 'subscribed':
        this._subscribed(m);
        break;
      case 'pong': {
        const request = this._requests.get(m.id);
        if (request && request.kind === 'ping' && request.at !== undefined) {
          this._requests.delete(m.id);
          this._setStatus({ latency: Math.round((performance.now() - request.at) * 10) / 10 });
        }
        break;
      }
      case 'authenticated':
        this._requests.delete(m.id);
        this._setStatus({ user: m.user ?? null });
        this._scheduleRefresh();
        break;
      case 'error':
        this._serverError(m);
        break;
      case 'unsubscribed':
        this._requests.delete(m.id);
        break;
      default: // heartbeat, and control messages of later protocol versions
        break;
    }
  }

  /** @param {TickstreamEvent} event */
  _event(event) {
    const sub = this._subs.get(event.event_type);
    if (sub === undefined) return;
    const offset = event.offset;
    // Before its first reply a subscription has no position, and the server sends that reply
    // before any of its events: what arrives now belongs to the subscription it replaced.
    if (sub.position === null) return;
    if (compareOffsets(offset, sub.position) <= 0) {
      this.stats.duplicates += 1;
      return;
    }
    sub.position = offset;
    // in flight from before a filter change: not for this subscription any more
    if (sub.symbols !== null && event.symbol !== undefined && !sub.symbols.has(event.symbol)) return;
    this.stats.events += 1;
    try {
      sub.callback(event);
    } catch (err) {
      this._emitError({ code: 'callback', message: errorText(err), eventType: sub.eventType });
      if (this._errorListeners.size === 0) console.error(err);
    }
  }

  /** @param {SubscribedReply & {id?: number}} m */
  _subscribed(m) {
    const sub = this._subs.get(m.event_type);
    if (sub === undefined || m.id === undefined || sub.reqId !== m.id) return; // stale reply
    this._requests.delete(m.id);
    sub.reqId = null;
    const previousOffset = sub.position;
    const previousEpoch = sub.epoch;
    sub.epoch = m.epoch || null;
    if (m.recovered === false || sub.position === null) sub.position = m.offset;
    sub.since = null;
    sub.last = null;
    if (!sub.settled) {
      sub.settled = true;
      sub.resolve(m);
    }
    if (m.recovered === false) {
      this.stats.resets += 1;
      /** @type {ResetInfo} */
      const info = {
        eventType: sub.eventType, resumed: sub.resuming, previousOffset, previousEpoch,
        offset: m.offset, epoch: m.epoch, earliest: m.earliest ?? null,
      };
      for (const listener of this._resetListeners) this._call(listener, info);
    }
  }

  /** @param {{code: string, message: string, id?: number}} m */
  _serverError(m) {
    const request = m.id !== undefined ? this._requests.get(m.id) : undefined;
    if (m.id !== undefined) this._requests.delete(m.id);
    if (request?.kind === 'subscribe' && request.sub) {
      const sub = request.sub;
      if (this._subs.get(sub.eventType) === sub && sub.reqId === m.id) {
        // refused (unauthorized, forbidden, invalid_offset): retrying cannot help
        this._subs.delete(sub.eventType);
        if (!sub.settled) {
          sub.settled = true;
          sub.reject(Object.assign(new Error(m.message), { code: m.code }));
        }
      }
      this._emitError({ ...m, eventType: sub.eventType });
      return;
    }
    if (request?.kind === 'auth') {
      if (m.code === 'forbidden') {
        // the fresh token is another user's: switching users takes a new connection
        this._emitError(m);
        this.reconnect();
        return;
      }
      this._emitError(m);
      this._setTimer('refresh', () => this._refresh(), 5000);
      return;
    }
    this._emitError(m);
  }

  // --- plumbing -----------------------------------------------------------------------------

  /** @param {Partial<Status>} change */
  _setStatus(change) {
    let changed = false;
    for (const key of Object.keys(change)) {
      // @ts-ignore -- keys come from Status
      if (this._status[key] !== change[key]) changed = true;
    }
    if (!changed) return;
    this._status = Object.freeze({ ...this._status, ...change });
    for (const listener of this._statusListeners) this._call(listener, this._status);
  }

  /** @param {{code: string|number, message: string, id?: any, eventType?: string}} error */
  _emitError(error) {
    for (const listener of this._errorListeners) this._call(listener, error);
  }

  /**
   * @template T
   * @param {(value: T) => void} listener
   * @param {T} value
   */
  _call(listener, value) {
    try {
      listener(value);
    } catch (err) {
      console.error(err);
    }
  }

  /**
   * @param {string} name
   * @param {() => void} fn
   * @param {number} ms
   */
  _setTimer(name, fn, ms) {
    this._clearTimer(name);
    this._timers[name] = { id: setTimeout(() => { delete this._timers[name]; fn(); }, ms), interval: false };
  }

  /**
   * @param {string} name
   * @param {() => void} fn
   * @param {number} ms
   */
  _setInterval(name, fn, ms) {
    this._clearTimer(name);
    this._timers[name] = { id: setInterval(fn, ms), interval: true };
  }

  /** @param {string} name */
  _clearTimer(name) {
    const timer = this._timers[name];
    if (!timer) return;
    if (timer.interval) clearInterval(timer.id);
    else clearTimeout(timer.id);
    delete this._timers[name];
  }
}

/** @param {unknown} err */
function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}
