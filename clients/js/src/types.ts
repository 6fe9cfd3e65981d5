/** The public shapes of the client: events, status, options, replies. */
import type { Codec, FrameData } from './codec.js';
import type { TokenSource } from './auth.js';

/** An event as the gateway delivers it. */
export interface TickstreamEvent<D = Record<string, any>> {
  event_type: string;
  /** `<ms>-<seq>`, ordered within its event type */
  offset: string;
  symbol?: string | null;
  /** milliseconds since the epoch, when Redis accepted the event */
  ts?: number;
  data: D;
}

/**
 * `connecting`: first attempt; `connected`: the server's welcome (and, with a token, the reply
 * to the `auth` message) arrived; `reconnecting`: the connection dropped and another attempt
 * is scheduled or under way; `disconnected`: stopped for good, by `close()` (`error` null) or
 * by a fatal refusal (`error` set).
 */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected';

export interface ErrorInfo {
  code: string | number;
  message: string;
  id?: unknown;
  eventType?: string;
}

/** A snapshot of the connection, given to every `onStatus` listener on each change. */
export interface Status {
  readonly state: ConnectionState;
  /** the gateway node serving this connection (from `welcome`) */
  readonly node: string | null;
  readonly session: string | null;
  /** the authenticated user, null when anonymous */
  readonly user: string | null;
  /** round trip of the last ping/pong, ms */
  readonly latency: number | null;
  /** consecutive failed attempts (0 while connected) */
  readonly attempt: number;
  /** ms until the next attempt, when reconnecting */
  readonly retryIn: number | null;
  /** close code of the last connection that ended */
  readonly closeCode: number | null;
  readonly closeReason: string | null;
  /** why it stopped, or the last problem while reconnecting */
  readonly error: { code: string | number; message: string } | null;
}

/** The part of the WHATWG WebSocket the client uses (the browser's, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: FrameData }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Options of `connect()`. */
export interface ConnectOptions {
  /** a JWT, or a function (plain or async) returning a fresh one; absent or null: anonymous */
  token?: TokenSource;
  /**
   * How the token reaches the gateway: `message` (default) sends it as the first message on
   * the connection (`{"op":"auth"}`), so it never appears in a URL (proxy and access logs);
   * `query` puts it in `?token=` (for gateways older than this client).
   */
  auth?: 'message' | 'query';
  /** the wire format: `jsonCodec` (default) or `msgpackCodec` from `@tickstream/client/msgpack` */
  codec?: Codec;
  /** ask for `?batch=1`: several messages per frame (default true) */
  batch?: boolean;
  /** `&batch_ms=N`: how long the server may hold messages to fill a frame (1 to 50) */
  batchMs?: number;
  /** backoff: first ceiling, ms (default 500) */
  reconnectBase?: number;
  /** backoff: largest ceiling, ms (default 30000) */
  reconnectCap?: number;
  /** the backoff starts over after a connection that stayed up this long, ms (default 30000) */
  stableAfter?: number;
  /** latency probes, ms (default 5000; 0: none) */
  pingInterval?: number;
  /** a connection silent for the server's heartbeat interval plus this long is dead, ms (10000) */
  heartbeatTimeout?: number;
  /** give up on a handshake (and the auth reply) after this long, ms (default 10000) */
  openTimeout?: number;
  /** the WebSocket class (the `ws` package under Node, a fake in tests) */
  WebSocket?: WebSocketConstructor;
}

/** Options of `subscribe()`. */
export interface SubscribeOptions {
  /** only these symbols (absent: all) */
  symbols?: string[] | null;
  /** deliver every event after this offset, then live */
  since?: string | null;
  /** the epoch `since` belongs to (from an earlier `subscribed` reply) */
  epoch?: string | null;
  /** deliver the last N retained events (0 to 100000), then live */
  last?: number | null;
  /** at most one event per symbol per this many ms (10 to 60000), always the newest */
  conflateMs?: number | null;
}

/** The server's `subscribed` reply. */
export interface SubscribedReply {
  event_type: string;
  epoch: string;
  /** the start position: events after it follow */
  offset: string;
  recovered: boolean;
  /** oldest retained offset, when `recovered` is false */
  earliest?: string;
  conflate_ms?: number;
}

/** Given to `onReset` listeners: a subscription's history could not be replayed. */
export interface ResetInfo {
  eventType: string;
  /** true when the client was resuming after a disconnect or a filter change */
  resumed: boolean;
  /** the last offset delivered before the reset */
  previousOffset: string | null;
  previousEpoch: string | null;
  /** where the subscription goes on from (live) */
  offset: string;
  /** the stream's epoch now */
  epoch: string;
  /** the oldest offset still retained */
  earliest: string | null;
}

/** A subscription, as returned by `subscribe()`. */
export interface SubscriptionHandle {
  readonly eventType: string;
  /**
   * Resolves on the first `subscribed` reply; rejects when the server refuses the subscription
   * (`unauthorized`, `forbidden`, `invalid_offset`...) or it ends before one.
   */
  readonly ready: Promise<SubscribedReply>;
  /** the last offset delivered (or the start position) */
  offset(): string | null;
  epoch(): string | null;
  unsubscribe(): void;
}

/** Counters, for dashboards and tests. */
export interface Stats {
  events: number;
  duplicates: number;
  frames: number;
  connects: number;
  resets: number;
}
