/**
 * The client: subscriptions that outlive connections, the reconnect policy, authentication and
 * token refresh, and the status listeners see. One {@link Connection} at a time does the I/O.
 *
 * Close codes 4403, 1008 and 1009 stop it for good (reconnecting cannot help); 4401 reconnects
 * with a fresh token from a token function (a fixed token cannot get fresher: it stops);
 * anything else reconnects after a full-jitter backoff and resumes every subscription.
 */
import { Backoff } from './backoff.js';
import { jsonCodec, type Codec } from './codec.js';
import { Connection, type ConnectionHandler } from './connection.js';
import { checkSubscribe, wsUrl } from './checks.js';
import { isOffset } from './offsets.js';
import { CLOSE_ORIGIN, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_UNAUTHORIZED } from './protocol.js';
import { Subscription, type EventCallback } from './subscription.js';
import { TokenKeeper, type TokenSource } from './auth.js';
import type {
  ConnectOptions, ErrorInfo, ResetInfo, Stats, Status, SubscribedReply, SubscribeOptions,
  SubscriptionHandle, TickstreamEvent, WebSocketConstructor, WebSocketLike,
} from './types.js';

/** Close codes after which reconnecting cannot help. */
const FATAL = new Map<number, string>([
  [CLOSE_ORIGIN, 'origin not allowed'],
  [CLOSE_POLICY, 'policy violation'],
  [CLOSE_TOO_BIG, 'message too big'],
]);
const MAX_TIMER = 2 ** 31 - 1;
const RETRY_REFUSED_AUTH = 5000;
const RESEND_RATE_LIMITED = 1000;

type Listener<T> = (value: T) => void;

export class TickstreamClient {
  readonly urls: string[];
  readonly options: ConnectOptions;
  /** Counters, for dashboards and tests. */
  readonly stats: Stats = { events: 0, duplicates: 0, frames: 0, connects: 0, resets: 0 };
  private readonly codec: Codec;
  private urlIndex = -1;
  private readonly tokens: TokenKeeper;
  private readonly backoff: Backoff;
  private readonly subs = new Map<string, Subscription>();
  private conn: Connection | null = null;
  /** the current connection's `auth` first message is waiting for its reply */
  private authPending = false;
  private welcomed = false;
  private welcome: Record<string, unknown> = {};
  private readonly handler: ConnectionHandler = {
    opened: (conn) => this.opened(conn),
    message: (conn, m) => this.message(conn, m),
    lost: (conn, code, reason) => this.lost(conn, code, reason),
    problem: (code, message) => this.emitError({ code, message }),
    latency: (ms) => this.setStatus({ latency: ms }),
  };
  private nextId = 1;
  private attemptSeq = 0;
  private closed = false;
  private everConnected = false;
  private readonly statusListeners = new Set<Listener<Status>>();
  private readonly resetListeners = new Set<Listener<ResetInfo>>();
  private readonly errorListeners = new Set<Listener<ErrorInfo>>();
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();
  private _status: Status = Object.freeze({
    state: 'connecting', node: null, session: null, user: null, latency: null, attempt: 0,
    retryIn: null, closeCode: null, closeReason: null, error: null,
  });
  private readonly onOnline = (): void => {
    if (this._status.state === 'reconnecting' && this.timers.has('retry')) this.open();
  };

  constructor(url: string | string[] | undefined, options: ConnectOptions = {}) {
    this.urls = Array.isArray(url) ? [...url] : [url || '/ws'];
    if (this.urls.length === 0) throw new TypeError('no URL given');
    const { batchMs } = options;
    if (batchMs != null && !(Number.isInteger(batchMs) && batchMs >= 1 && batchMs <= 50)) {
      throw new TypeError("'batchMs' must be an integer from 1 to 50");
    }
    this.options = options;
    this.codec = options.codec ?? jsonCodec;
    this.tokens = new TokenKeeper(options.token ?? null);
    this.backoff = new Backoff(options.reconnectBase ?? 500, options.reconnectCap ?? 30000, options.stableAfter ?? 30000);
    if (typeof addEventListener === 'function') addEventListener('online', this.onOnline);
    void this.open();
  }

  // --- public API -------------------------------------------------------------------------

  get status(): Status {
    return this._status;
  }

  /** The current raw socket (for tests and diagnostics). */
  get _ws(): WebSocketLike | null {
    return this.conn?.ws ?? null;
  }

  /**
   * Subscribe to one event type; `callback` receives each event once, in offset order, across
   * reconnects. Subscribing again to the same type replaces the callback and the filter,
   * continuing from the last delivered offset unless `since` or `last` is given.
   */
  subscribe<D = Record<string, any>>(eventType: string, callback: (event: TickstreamEvent<D>) => void,
    options: SubscribeOptions = {}): SubscriptionHandle {
    checkSubscribe(eventType, callback, options);
    if (this.closed) {
      const ready = Promise.reject(new Error('client closed'));
      ready.catch(() => {});
      return { eventType, ready, offset: () => null, epoch: () => null, unsubscribe: () => {} };
    }
    const sub = new Subscription(eventType, callback as EventCallback, options, this.subs.get(eventType));
    this.subs.set(eventType, sub);
    this.sendSubscribe(sub);
    return {
      eventType,
      ready: sub.ready,
      offset: () => sub.position,
      epoch: () => sub.epoch,
      unsubscribe: () => {
        if (this.subs.get(eventType) === sub) this.unsubscribe(eventType);
      },
    };
  }

  /** Stop receiving `eventType`. */
  unsubscribe(eventType: string): void {
    const sub = this.subs.get(eventType);
    if (!sub) return;
    this.subs.delete(eventType);
    this.clearTimer(`resend:${eventType}`);
    sub.fail(new Error('unsubscribed'));
    if (this.canRequest()) this.conn?.send({ op: 'unsubscribe', event_type: eventType }, { kind: 'unsubscribe' });
  }

  /** Listen to status changes; the listener is called at once with the current status. */
  onStatus(listener: Listener<Status>): () => void {
    this.statusListeners.add(listener);
    call(listener, this._status);
    return () => this.statusListeners.delete(listener);
  }

  /** Listen to resets: a subscription came back `recovered:false` (its history was lost). */
  onReset(listener: Listener<ResetInfo>): () => void {
    this.resetListeners.add(listener);
    return () => this.resetListeners.delete(listener);
  }

  /**
   * Listen to errors the server reported (refused subscriptions, rate limiting, failed
   * re-authentication) and to exceptions thrown by callbacks.
   */
  onError(listener: Listener<ErrorInfo>): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  /** Replace the token (string, function or null) and reconnect with it now; subscriptions resume. */
  setToken(token: TokenSource): void {
    this.tokens.source = token ?? null;
    this.tokens.token = null;
    if (this.closed) return;
    this.drop(1000, 'token changed');
    this.backoff.reset();
    void this.open();
  }

  /** Drop the current connection (if any) and connect again now; subscriptions resume. */
  reconnect(): void {
    if (this.closed) return;
    this.drop(1000, 'reconnect requested');
    void this.open();
  }

  /** Close for good. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.drop(1000, 'client closed');
    this.clearTimer('retry');
    this.forgetOnline();
    this.failAll('client closed');
    this.setStatus({ state: 'disconnected', retryIn: null, error: null });
  }

  // --- connection life cycle ----------------------------------------------------------------

  private async open(): Promise<void> {
    if (this.closed) return;
    const attempt = ++this.attemptSeq;
    this.clearTimer('retry');
    this.setStatus({ state: this.everConnected ? 'reconnecting' : 'connecting', retryIn: null });
    let token: string | null;
    try {
      token = await this.tokens.next();
    } catch (err) {
      if (attempt !== this.attemptSeq || this.closed) return;
      this.scheduleRetry({ error: { code: 'token', message: `token function failed: ${errorText(err)}` } });
      return;
    }
    if (attempt !== this.attemptSeq || this.closed) return;
    const WS = this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WS === undefined) {
      this.stop('no_websocket', 'no WebSocket implementation: pass options.WebSocket (the ws package under Node)');
      return;
    }
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    const query = this.options.auth === 'query' ? token : null;
    this.drop(1000, 'replaced');
    try {
      this.conn = new Connection(wsUrl(this.urls[this.urlIndex] as string, this.options, query), this.codec, WS, {
        openTimeout: this.options.openTimeout ?? 10000,
        heartbeatTimeout: this.options.heartbeatTimeout ?? 10000,
        pingInterval: this.options.pingInterval ?? 5000,
      }, () => this.nextId++, this.handler, this.stats);
    } catch (err) {
      this.stop('bad_url', errorText(err)); // a malformed URL cannot get better by retrying
    }
  }

  /** The socket opened: authenticate first, or subscribe at once. */
  private opened(conn: Connection): void {
    if (conn !== this.conn) return;
    const token = this.tokens.token;
    if (token !== null && this.options.auth !== 'query') {
      this.authPending = true;
      conn.send({ op: 'auth', token }, { kind: 'auth', initial: true });
    } else {
      this.sendAllSubscribes();
    }
  }

  /** The connection ended. */
  private lost(conn: Connection, code: number, reason: string): void {
    if (conn !== this.conn) return;
    this.detach();
    const change: { -readonly [K in keyof Status]?: Status[K] } = {
      closeCode: code, closeReason: reason || null, node: null, session: null, latency: null,
    };
    const fatal = FATAL.get(code);
    if (fatal !== undefined) {
      this.stop(code, reason || fatal, change);
    } else if (code === CLOSE_UNAUTHORIZED && !this.tokens.refreshable) {
      this.stop(code, reason || 'unauthorized: the token was refused', change);
    } else {
      if (code === CLOSE_UNAUTHORIZED) change.error = { code, message: reason || 'unauthorized' };
      this.scheduleRetry(change); // after 4401 the next attempt asks for a fresh token anyway
    }
  }

  private canRequest(): boolean {
    return this.conn !== null && this.conn.isOpen && !this.authPending;
  }

  /** Forget the current connection (no `lost` follows). */
  private drop(code: number, reason: string): void {
    const conn = this.conn;
    this.detach();
    conn?.close(code, reason);
  }

  private detach(): void {
    this.conn = null;
    this.authPending = false;
    this.welcomed = false;
    this.clearTimer('refresh');
    for (const sub of this.subs.values()) {
      sub.reqId = null;
      this.clearTimer(`resend:${sub.eventType}`);
    }
  }

  /** Stop for good with an error status. */
  private stop(code: string | number, message: string, change: Partial<Status> = {}): void {
    this.closed = true;
    this.drop(1000, 'stopped');
    this.forgetOnline();
    this.failAll(message);
    this.setStatus({ ...change, state: 'disconnected', retryIn: null, error: { code, message } });
  }

  private forgetOnline(): void {
    if (typeof removeEventListener === 'function') removeEventListener('online', this.onOnline);
  }

  private failAll(message: string): void {
    for (const sub of this.subs.values()) sub.fail(new Error(message));
  }

  private scheduleRetry(change: Partial<Status> = {}): void {
    const delay = Math.round(this.backoff.next(Date.now()));
    this.setStatus({ ...change, state: 'reconnecting', attempt: this.backoff.failures, retryIn: delay });
    this.setTimer('retry', () => void this.open(), delay);
  }

  /** Welcome received and, with a token, the auth accepted: the connection is up. */
  private established(conn: Connection, user: string | null, welcome: Record<string, unknown>): void {
    const heartbeat = typeof welcome.heartbeat === 'number' ? welcome.heartbeat : 30;
    conn.established(heartbeat * 1000);
    this.everConnected = true;
    this.backoff.connected(Date.now());
    this.setStatus({
      state: 'connected', node: str(welcome.node), session: str(welcome.session), user,
      attempt: 0, retryIn: null, error: null,
    });
    this.scheduleRefresh();
  }

  // --- tokens -------------------------------------------------------------------------------

  /** Re-authenticate on the live connection before the token's `exp`. */
  private scheduleRefresh(): void {
    this.clearTimer('refresh');
    const delay = this.tokens.refreshIn();
    if (delay !== null) this.setTimer('refresh', () => void this.refresh(), Math.min(MAX_TIMER, delay));
  }

  private async refresh(): Promise<void> {
    const conn = this.conn;
    if (!conn) return;
    let token: string | null;
    try {
      token = await this.tokens.next();
    } catch (err) {
      this.emitError({ code: 'token', message: `token function failed: ${errorText(err)}` });
      if (conn === this.conn) this.setTimer('refresh', () => void this.refresh(), RETRY_REFUSED_AUTH);
      return;
    }
    if (conn !== this.conn || token === null) return;
    conn.send({ op: 'auth', token }, { kind: 'auth' });
  }

  // --- messages -----------------------------------------------------------------------------

  private sendAllSubscribes(): void {
    for (const sub of this.subs.values()) this.sendSubscribe(sub);
  }

  private sendSubscribe(sub: Subscription): void {
    this.clearTimer(`resend:${sub.eventType}`);
    if (!this.canRequest() || !this.conn) return;
    sub.reqId = this.conn.send(sub.message(), { kind: 'subscribe', sub });
  }

  /** One message from the server. */
  private message(conn: Connection, m: Record<string, unknown>): void {
    if (conn !== this.conn) return;
    if (m.type === undefined && typeof m.event_type === 'string') {
      this.event(m as unknown as TickstreamEvent);
      return;
    }
    const id = m.id;
    const request = typeof id === 'number' ? conn.requests.get(id) : undefined;
    if (request !== undefined && m.type !== 'subscribed') conn.requests.delete(id as number);
    switch (m.type) {
      case 'welcome':
        this.welcomed = true;
        this.welcome = m;
        if (!this.authPending) this.established(conn, str(m.user), m);
        break;
      case 'authenticated':
        if (request?.initial) {
          this.authPending = false;
          this.sendAllSubscribes();
          if (this.welcomed) this.established(conn, str(m.user), this.welcome);
        } else {
          this.setStatus({ user: str(m.user) });
          this.scheduleRefresh();
        }
        break;
      case 'subscribed':
        this.subscribed(conn, m as unknown as SubscribedReply & { id?: number });
        break;
      case 'error':
        this.serverError(conn, m as unknown as ErrorInfo, request);
        break;
      default: // unsubscribed, heartbeat, and control messages of later protocol versions
        break;
    }
  }

  private event(event: TickstreamEvent): void {
    const sub = this.subs.get(event.event_type);
    if (sub === undefined) return;
    const verdict = sub.accept(event);
    if (verdict === 'duplicate') this.stats.duplicates += 1;
    if (verdict !== 'deliver') return;
    this.stats.events += 1;
    try {
      sub.callback(event);
    } catch (err) {
      this.emitError({ code: 'callback', message: errorText(err), eventType: sub.eventType });
      if (this.errorListeners.size === 0) console.error(err);
    }
  }

  private subscribed(conn: Connection, m: SubscribedReply & { id?: number }): void {
    const sub = this.subs.get(m.event_type);
    if (sub === undefined || m.id === undefined || sub.reqId !== m.id) return; // superseded
    conn.requests.delete(m.id);
    if (!isOffset(m.offset) || typeof m.epoch !== 'string') {
      this.emitError({ code: 'bad_reply', message: 'a subscribed reply without a valid offset or epoch', eventType: sub.eventType });
      return;
    }
    const reset = sub.subscribed(m);
    if (reset !== null) {
      this.stats.resets += 1;
      for (const listener of this.resetListeners) call(listener, reset);
    }
  }

  private serverError(conn: Connection, m: ErrorInfo, request: ReturnType<Connection['requests']['get']>): void {
    if (request?.kind === 'subscribe' && request.sub) {
      const sub = request.sub;
      if (this.subs.get(sub.eventType) !== sub || sub.reqId !== m.id) return; // superseded: ignorable
      if (m.code === 'rate_limited') {
        // dropped, not executed: ask again in a second (still in flight meanwhile)
        this.setTimer(`resend:${sub.eventType}`, () => this.sendSubscribe(sub), RESEND_RATE_LIMITED);
        return;
      }
      // refused (unauthorized, forbidden, invalid_offset): retrying cannot help
      this.subs.delete(sub.eventType);
      sub.fail(Object.assign(new Error(m.message), { code: m.code }));
      this.emitError({ ...m, eventType: sub.eventType });
      return;
    }
    if (request?.kind === 'auth') {
      if (request.initial) {
        // the token given for this connection was refused: as if closed with 4401
        conn.lose(CLOSE_UNAUTHORIZED, m.message);
        return;
      }
      this.emitError(m);
      if (m.code === 'forbidden') this.reconnect(); // another user's token: that takes a new connection
      else this.setTimer('refresh', () => void this.refresh(), RETRY_REFUSED_AUTH);
      return;
    }
    this.emitError(m);
  }

  // --- plumbing -----------------------------------------------------------------------------

  private setStatus(change: Partial<Status>): void {
    const current = this._status as unknown as Record<string, unknown>;
    const changed = Object.entries(change).some(([key, value]) => current[key] !== value);
    if (!changed) return;
    this._status = Object.freeze({ ...this._status, ...change });
    for (const listener of this.statusListeners) call(listener, this._status);
  }

  private emitError(error: ErrorInfo): void {
    for (const listener of this.errorListeners) call(listener, error);
  }

  private setTimer(name: string, fn: () => void, ms: number): void {
    this.clearTimer(name);
    this.timers.set(name, setTimeout(() => {
      this.timers.delete(name);
      fn();
    }, ms));
  }

  private clearTimer(name: string): void {
    const id = this.timers.get(name);
    if (id !== undefined) clearTimeout(id);
    this.timers.delete(name);
  }
}

function call<T>(listener: Listener<T>, value: T): void {
  try {
    listener(value);
  } catch (err) {
    console.error(err);
  }
}

function str(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

