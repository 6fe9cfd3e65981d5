/**
 * One WebSocket connection: opening it (with a handshake timeout), encoding and pacing what
 * goes out, decoding frames (one message or a batch array), the requests waiting for a reply,
 * latency pings, and the silence check (a connection quiet for longer than the server's
 * heartbeat interval plus `heartbeatTimeout` is dead). The client decides what a message or
 * a lost connection means.
 */
import { frameBytes, type Codec } from './codec.js';
import { Outbox } from './outbox.js';
import type { Subscription } from './subscription.js';
import type { Stats, WebSocketConstructor, WebSocketLike } from './types.js';

/** Ours: the connection went silent, or the handshake did not finish in time. */
export const CLOSE_SILENT = 4000;
const OPEN = 1;

export type RequestKind = 'subscribe' | 'auth' | 'ping' | 'unsubscribe';

export interface Request {
  kind: RequestKind;
  sub?: Subscription;
  /** an auth sent as the connection's first message */
  initial?: boolean;
  at?: number;
}

export interface ConnectionHandler {
  opened(conn: Connection): void;
  message(conn: Connection, message: Record<string, unknown>): void;
  lost(conn: Connection, code: number, reason: string): void;
  problem(code: string, message: string): void;
  latency(ms: number): void;
}

export interface ConnectionSettings {
  openTimeout: number;
  heartbeatTimeout: number;
  pingInterval: number;
}

export class Connection {
  readonly ws: WebSocketLike;
  readonly requests = new Map<number, Request>();
  /** the server's heartbeat interval, ms (from `welcome`) */
  heartbeatMs = 30000;
  private readonly outbox = new Outbox();
  private lastReceived = Date.now();
  private ended = false;
  private pingId: number | null = null;
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly intervals = new Map<string, ReturnType<typeof setInterval>>();

  constructor(
    url: string,
    private readonly codec: Codec,
    WS: WebSocketConstructor,
    private readonly settings: ConnectionSettings,
    private readonly nextId: () => number,
    private readonly handler: ConnectionHandler,
    private readonly stats: Stats,
  ) {
    this.ws = new WS(url, [codec.subprotocol]); // throws on a malformed URL
    if (codec.binary) this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => this.onOpen();
    this.ws.onmessage = (ev) => this.onFrame(ev.data);
    this.ws.onclose = (ev) => this.lose(ev.code, ev.reason);
    this.ws.onerror = () => {}; // a close event follows
    this.timer('open', () => this.lose(CLOSE_SILENT, 'handshake timed out'), settings.openTimeout);
  }

  get isOpen(): boolean {
    return !this.ended && this.ws.readyState === OPEN;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Queue `message` with a fresh id (paced); returns the id. Nothing is sent once closed. */
  send(message: Record<string, unknown>, request: Request): number {
    const id = this.nextId();
    if (!this.isOpen) return id;
    this.requests.set(id, request);
    for (const obsolete of this.outbox.push({ id, message: { ...message, id } })) this.requests.delete(obsolete);
    this.flush();
    return id;
  }

  /** The connection is established (welcome and auth done): the handshake timer stops. */
  established(heartbeatMs: number): void {
    this.heartbeatMs = heartbeatMs;
    this.clear('open');
    if (this.settings.pingInterval > 0) {
      this.ping();
      this.interval('ping', () => this.ping(), this.settings.pingInterval);
    }
  }

  /** Forget this socket: detach its handlers, stop its timers, close it. No `lost` follows. */
  close(code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    for (const id of this.timers.values()) clearTimeout(id);
    for (const id of this.intervals.values()) clearInterval(id);
    this.timers.clear();
    this.intervals.clear();
    this.requests.clear();
    const ws = this.ws;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      if (ws.readyState <= OPEN) ws.close(code, reason.slice(0, 100));
    } catch {
      /* already closing */
    }
  }

  /** The connection ended (closed by the server, failed, or found dead). */
  lose(code: number, reason: string): void {
    if (this.ended) return;
    this.close(CLOSE_SILENT, reason);
    this.handler.lost(this, code, reason);
  }

  private onOpen(): void {
    this.lastReceived = Date.now();
    this.stats.connects += 1;
    const limit = () => this.heartbeatMs + this.settings.heartbeatTimeout;
    this.interval('silence', () => {
      if (Date.now() - this.lastReceived > limit()) this.lose(CLOSE_SILENT, `no message for ${Math.round(limit() / 1000)} s`);
    }, Math.max(10, Math.min(1000, this.settings.heartbeatTimeout / 2)));
    this.handler.opened(this);
  }

  private onFrame(data: Parameters<NonNullable<WebSocketLike['onmessage']>>[0]['data']): void {
    if (this.ended) return;
    this.lastReceived = Date.now();
    this.stats.frames += 1;
    let value: unknown;
    try {
      const bytes = frameBytes(data);
      if (bytes === null) throw new TypeError('a Blob frame');
      value = this.codec.decode(bytes);
    } catch {
      this.handler.problem('bad_frame', `a frame was not valid ${this.codec.subprotocol}`);
      return;
    }
    const messages = Array.isArray(value) ? value : [value];
    for (const m of messages) {
      if (this.ended) return; // a callback closed or replaced the connection
      if (m === null || typeof m !== 'object' || Array.isArray(m)) continue;
      const message = m as Record<string, unknown>;
      if (message.type === 'pong' && this.pong(message.id)) continue;
      this.handler.message(this, message);
    }
  }

  private ping(): void {
    if (this.pingId !== null && this.requests.has(this.pingId)) return; // one at a time
    this.pingId = this.send({ op: 'ping' }, { kind: 'ping', at: performance.now() });
  }

  private pong(id: unknown): boolean {
    const request = typeof id === 'number' ? this.requests.get(id) : undefined;
    if (request?.kind !== 'ping' || request.at === undefined) return false;
    this.requests.delete(id as number);
    this.handler.latency(Math.round((performance.now() - request.at) * 10) / 10);
    return true;
  }

  private flush(): void {
    if (!this.isOpen) return;
    for (const item of this.outbox.take()) this.ws.send(this.codec.encode(item.message));
    const wait = this.outbox.wait();
    if (wait !== null && !this.timers.has('flush')) this.timer('flush', () => this.flush(), wait);
  }

  private timer(name: string, fn: () => void, ms: number): void {
    this.clear(name);
    this.timers.set(name, setTimeout(() => {
      this.timers.delete(name);
      fn();
    }, ms));
  }

  private interval(name: string, fn: () => void, ms: number): void {
    const old = this.intervals.get(name);
    if (old !== undefined) clearInterval(old);
    this.intervals.set(name, setInterval(fn, ms));
  }

  private clear(name: string): void {
    const id = this.timers.get(name);
    if (id !== undefined) clearTimeout(id);
    this.timers.delete(name);
  }
}
