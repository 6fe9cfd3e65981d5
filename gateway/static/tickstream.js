// Tickstream browser client 0.2.0: built from clients/js/src by `npm --prefix clients/js run build`; do not edit.
// import { connect } from '/static/tickstream.js'; see docs/browser-client.md.
var __defProp = Object.defineProperty;
var __export = (target, all) => {
  for (var name in all)
    __defProp(target, name, { get: all[name], enumerable: true });
};

// src/backoff.ts
var Backoff = class {
  /**
   * @param base first ceiling, ms
   * @param cap largest ceiling, ms
   * @param stableAfter a connection up this long resets the sequence, ms
   */
  constructor(base = 500, cap = 3e4, stableAfter = 3e4, random = Math.random) {
    this.base = base;
    this.cap = cap;
    this.stableAfter = stableAfter;
    this.random = random;
    this.failures = 0;
    this.connectedAt = null;
  }
  /** A connection was accepted at `now` (ms). */
  connected(now) {
    this.connectedAt = now;
  }
  /** A connection failed or dropped at `now`: how long to wait before the next attempt, ms. */
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
};

// src/protocol.ts
var protocol_exports = {};
__export(protocol_exports, {
  CLOSE_ABNORMAL: () => CLOSE_ABNORMAL,
  CLOSE_HEARTBEAT: () => CLOSE_HEARTBEAT,
  CLOSE_NORMAL: () => CLOSE_NORMAL,
  CLOSE_ORIGIN: () => CLOSE_ORIGIN,
  CLOSE_POLICY: () => CLOSE_POLICY,
  CLOSE_RESTARTING: () => CLOSE_RESTARTING,
  CLOSE_RESYNC: () => CLOSE_RESYNC,
  CLOSE_SLOW: () => CLOSE_SLOW,
  CLOSE_TOO_BIG: () => CLOSE_TOO_BIG,
  CLOSE_TRY_AGAIN: () => CLOSE_TRY_AGAIN,
  CLOSE_UNAUTHORIZED: () => CLOSE_UNAUTHORIZED,
  PROTOCOL_VERSION: () => PROTOCOL_VERSION,
  SUBPROTOCOL_JSON: () => SUBPROTOCOL_JSON,
  SUBPROTOCOL_MSGPACK: () => SUBPROTOCOL_MSGPACK
});
var PROTOCOL_VERSION = 1;
var SUBPROTOCOL_JSON = "tickstream.json";
var SUBPROTOCOL_MSGPACK = "tickstream.msgpack";
var CLOSE_NORMAL = 1e3;
var CLOSE_ABNORMAL = 1006;
var CLOSE_POLICY = 1008;
var CLOSE_TOO_BIG = 1009;
var CLOSE_RESTARTING = 1012;
var CLOSE_TRY_AGAIN = 1013;
var CLOSE_HEARTBEAT = 4001;
var CLOSE_SLOW = 4008;
var CLOSE_RESYNC = 4009;
var CLOSE_UNAUTHORIZED = 4401;
var CLOSE_ORIGIN = 4403;

// src/codec.ts
var textDecoder = /* @__PURE__ */ new TextDecoder();
var jsonCodec = {
  subprotocol: SUBPROTOCOL_JSON,
  binary: false,
  encode: (message) => JSON.stringify(message),
  decode: (data) => JSON.parse(typeof data === "string" ? data : textDecoder.decode(data))
};
function frameBytes(data) {
  if (typeof data === "string" || data instanceof ArrayBuffer || data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

// src/outbox.ts
var SEND_BURST = 40;
var SEND_RATE = 20;
var MAX_QUEUED = 1e4;
var Outbox = class {
  constructor(now = () => performance.now()) {
    this.now = now;
    this.queue = [];
    this.tokens = SEND_BURST;
    this.refilled = now();
  }
  get length() {
    return this.queue.length;
  }
  /** Queue `item`; returns the ids of queued messages it made obsolete (never to be sent). */
  push(item) {
    const { op, event_type: type } = item.message;
    const dropped = [];
    if (op === "subscribe" || op === "unsubscribe") {
      this.queue = this.queue.filter((q) => {
        const stale = q.message.event_type === type && q.message.op === "subscribe";
        if (stale) dropped.push(q.id);
        return !stale;
      });
      if (op === "unsubscribe" && this.queue.some((q) => q.message.op === "unsubscribe" && q.message.event_type === type)) {
        dropped.push(item.id);
        return dropped;
      }
    } else if (op === "ping" && this.queue.some((q) => q.message.op === "ping")) {
      dropped.push(item.id);
      return dropped;
    }
    if (this.queue.length >= MAX_QUEUED) throw new RangeError(`more than ${MAX_QUEUED} messages waiting to be sent`);
    this.queue.push(item);
    return dropped;
  }
  /** The messages that may go now (taking their send tokens). */
  take() {
    const now = this.now();
    this.tokens = Math.min(SEND_BURST, this.tokens + (now - this.refilled) * SEND_RATE / 1e3);
    this.refilled = now;
    const n = Math.min(this.queue.length, Math.floor(this.tokens));
    this.tokens -= n;
    return this.queue.splice(0, n);
  }
  /** Milliseconds until the next message may go, when some wait; null when none does. */
  wait() {
    if (this.queue.length === 0) return null;
    return Math.max(1, Math.ceil((1 - this.tokens) * 1e3 / SEND_RATE));
  }
};

// src/connection.ts
var CLOSE_SILENT = 4e3;
var OPEN = 1;
var Connection = class {
  constructor(url, codec, WS, settings, nextId, handler, stats) {
    this.codec = codec;
    this.settings = settings;
    this.nextId = nextId;
    this.handler = handler;
    this.stats = stats;
    this.requests = /* @__PURE__ */ new Map();
    /** the server's heartbeat interval, ms (from `welcome`) */
    this.heartbeatMs = 3e4;
    this.outbox = new Outbox();
    this.lastReceived = Date.now();
    this.ended = false;
    this.pingId = null;
    this.timers = /* @__PURE__ */ new Map();
    this.intervals = /* @__PURE__ */ new Map();
    this.ws = new WS(url, [codec.subprotocol]);
    if (codec.binary) this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => this.onOpen();
    this.ws.onmessage = (ev) => this.onFrame(ev.data);
    this.ws.onclose = (ev) => this.lose(ev.code, ev.reason);
    this.ws.onerror = () => {
    };
    this.timer("open", () => this.lose(CLOSE_SILENT, "handshake timed out"), settings.openTimeout);
  }
  get isOpen() {
    return !this.ended && this.ws.readyState === OPEN;
  }
  get isEnded() {
    return this.ended;
  }
  /** Queue `message` with a fresh id (paced); returns the id. Nothing is sent once closed. */
  send(message, request) {
    const id = this.nextId();
    if (!this.isOpen) return id;
    this.requests.set(id, request);
    for (const obsolete of this.outbox.push({ id, message: { ...message, id } })) this.requests.delete(obsolete);
    this.flush();
    return id;
  }
  /** The connection is established (welcome and auth done): the handshake timer stops. */
  established(heartbeatMs) {
    this.heartbeatMs = heartbeatMs;
    this.clear("open");
    if (this.settings.pingInterval > 0) {
      this.ping();
      this.interval("ping", () => this.ping(), this.settings.pingInterval);
    }
  }
  /** Forget this socket: detach its handlers, stop its timers, close it. No `lost` follows. */
  close(code, reason) {
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
    }
  }
  /** The connection ended (closed by the server, failed, or found dead). */
  lose(code, reason) {
    if (this.ended) return;
    this.close(CLOSE_SILENT, reason);
    this.handler.lost(this, code, reason);
  }
  onOpen() {
    this.lastReceived = Date.now();
    this.stats.connects += 1;
    const limit = () => this.heartbeatMs + this.settings.heartbeatTimeout;
    this.interval("silence", () => {
      if (Date.now() - this.lastReceived > limit()) this.lose(CLOSE_SILENT, `no message for ${Math.round(limit() / 1e3)} s`);
    }, Math.max(10, Math.min(1e3, this.settings.heartbeatTimeout / 2)));
    this.handler.opened(this);
  }
  onFrame(data) {
    if (this.ended) return;
    this.lastReceived = Date.now();
    this.stats.frames += 1;
    let value;
    try {
      const bytes = frameBytes(data);
      if (bytes === null) throw new TypeError("a Blob frame");
      value = this.codec.decode(bytes);
    } catch {
      this.handler.problem("bad_frame", `a frame was not valid ${this.codec.subprotocol}`);
      return;
    }
    const messages = Array.isArray(value) ? value : [value];
    for (const m of messages) {
      if (this.ended) return;
      if (m === null || typeof m !== "object" || Array.isArray(m)) continue;
      const message = m;
      if (message.type === "pong" && this.pong(message.id)) continue;
      this.handler.message(this, message);
    }
  }
  ping() {
    if (this.pingId !== null && this.requests.has(this.pingId)) return;
    this.pingId = this.send({ op: "ping" }, { kind: "ping", at: performance.now() });
  }
  pong(id) {
    const request = typeof id === "number" ? this.requests.get(id) : void 0;
    if (request?.kind !== "ping" || request.at === void 0) return false;
    this.requests.delete(id);
    this.handler.latency(Math.round((performance.now() - request.at) * 10) / 10);
    return true;
  }
  flush() {
    if (!this.isOpen) return;
    for (const item of this.outbox.take()) this.ws.send(this.codec.encode(item.message));
    const wait = this.outbox.wait();
    if (wait !== null && !this.timers.has("flush")) this.timer("flush", () => this.flush(), wait);
  }
  timer(name, fn, ms) {
    this.clear(name);
    this.timers.set(name, setTimeout(() => {
      this.timers.delete(name);
      fn();
    }, ms));
  }
  interval(name, fn, ms) {
    const old = this.intervals.get(name);
    if (old !== void 0) clearInterval(old);
    this.intervals.set(name, setInterval(fn, ms));
  }
  clear(name) {
    const id = this.timers.get(name);
    if (id !== void 0) clearTimeout(id);
    this.timers.delete(name);
  }
};

// src/offsets.ts
var OFFSET_RE = /^\d{1,20}-\d{1,20}$/;
function compareOffsets(a, b) {
  const i = a.indexOf("-");
  const j = b.indexOf("-");
  return compareDigits(a.slice(0, i), b.slice(0, j)) || compareDigits(a.slice(i + 1), b.slice(j + 1));
}
function compareDigits(x, y) {
  if (x.length > 1 && x.charCodeAt(0) === 48) x = x.replace(/^0+(?=\d)/, "");
  if (y.length > 1 && y.charCodeAt(0) === 48) y = y.replace(/^0+(?=\d)/, "");
  if (x.length !== y.length) return x.length < y.length ? -1 : 1;
  return x < y ? -1 : x > y ? 1 : 0;
}
function isOffset(text) {
  return typeof text === "string" && OFFSET_RE.test(text);
}

// src/checks.ts
var EVENT_TYPE_RE = /^[a-z][a-z0-9_]{0,63}$/;
var SYMBOL_RE = /^[A-Z0-9][A-Z0-9._:/-]{0,63}$/;
var MAX_LAST = 1e5;
var MAX_SYMBOLS = 1e3;
function checkSubscribe(eventType, callback, options) {
  if (typeof eventType !== "string" || !EVENT_TYPE_RE.test(eventType)) {
    throw new TypeError(`invalid event type ${JSON.stringify(eventType)}`);
  }
  if (typeof callback !== "function") throw new TypeError("callback must be a function");
  const { symbols, since, last, conflateMs } = options;
  if (since != null && last != null) throw new TypeError("give 'since' or 'last', not both");
  if (since != null && !isOffset(since)) throw new TypeError(`invalid offset ${JSON.stringify(since)}`);
  if (last != null && !(Number.isInteger(last) && last >= 0 && last <= MAX_LAST)) {
    throw new TypeError(`'last' must be an integer from 0 to ${MAX_LAST}`);
  }
  if (conflateMs != null && !(Number.isInteger(conflateMs) && conflateMs >= 10 && conflateMs <= 6e4)) {
    throw new TypeError("'conflateMs' must be an integer from 10 to 60000");
  }
  if (symbols != null) {
    if (!Array.isArray(symbols) || symbols.length > MAX_SYMBOLS) {
      throw new TypeError(`'symbols' must be an array of at most ${MAX_SYMBOLS} symbols`);
    }
    for (const s of symbols) {
      if (typeof s !== "string" || !SYMBOL_RE.test(s.toUpperCase())) throw new TypeError(`invalid symbol ${JSON.stringify(s)}`);
    }
  }
}
function wsUrl(url, options, token) {
  const base = typeof location !== "undefined" ? location.href : void 0;
  const u = new URL(url, base);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  u.searchParams.delete("batch");
  u.searchParams.delete("batch_ms");
  if (options.batch ?? true) {
    u.searchParams.set("batch", "1");
    if (options.batchMs != null) u.searchParams.set("batch_ms", String(options.batchMs));
  }
  if (token) u.searchParams.set("token", token);
  return u.toString();
}

// src/subscription.ts
var Subscription = class {
  /**
   * @param previous the subscription of the same type this one replaces: without `since` or
   *   `last`, the new one carries on from where it stands (or from the start it asked for)
   */
  constructor(eventType, callback, options, previous) {
    this.eventType = eventType;
    this.callback = callback;
    /** id of the subscribe in flight on the current connection */
    this.reqId = null;
    /** the request in flight resumes from a known position */
    this.resuming = false;
    /** `ready` was resolved or rejected */
    this.settled = false;
    this.duplicates = 0;
    this.resolveReady = () => {
    };
    this.rejectReady = () => {
    };
    const { symbols, since, epoch, last, conflateMs } = options;
    this.symbols = symbols ? new Set(symbols.map((s) => String(s).toUpperCase())) : null;
    this.conflateMs = conflateMs ?? null;
    const fresh = since != null || last != null || previous === void 0;
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
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {
    });
    if (previous && !previous.settled) {
      previous.settled = true;
      this.ready.then(previous.resolveReady, previous.rejectReady);
    }
  }
  /** The subscribe op (without its id) for a first subscribe or a resume. */
  message() {
    const message = { op: "subscribe", event_type: this.eventType };
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
  accept(event) {
    if (this.reqId !== null || this.position === null) return "stale";
    const offset = event.offset;
    if (!isOffset(offset)) return "stale";
    if (compareOffsets(offset, this.position) <= 0) {
      this.duplicates += 1;
      return "duplicate";
    }
    this.position = offset;
    const symbol = event.symbol;
    return this.symbols === null || symbol == null || this.symbols.has(symbol) ? "deliver" : "stale";
  }
  /** Apply the `subscribed` reply to the request in flight; a ResetInfo when `recovered:false`. */
  subscribed(reply) {
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
      eventType: this.eventType,
      resumed: this.resuming,
      previousOffset,
      previousEpoch,
      offset: reply.offset,
      epoch: reply.epoch,
      earliest: reply.earliest ?? null
    };
  }
  /** Reject `ready` if it is still waiting. */
  fail(error) {
    if (this.settled) return;
    this.settled = true;
    this.rejectReady(error);
  }
};

// src/auth.ts
var REFRESH_MARGIN = 6e4;
var REFRESH_FRACTION = 0.5;
var MIN_REFRESH_DELAY = 200;
var MAX_TOKEN_LENGTH = 8192;
function tokenClaims(token) {
  try {
    const part = token.split(".")[1] ?? "";
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const claims = JSON.parse(atob(b64));
    if (claims === null || typeof claims !== "object") return { exp: null, iat: null };
    const { exp, iat } = claims;
    return { exp: typeof exp === "number" ? exp : null, iat: typeof iat === "number" ? iat : null };
  } catch {
    return { exp: null, iat: null };
  }
}
function refreshDelay(token, obtainedAt, now) {
  const { exp } = tokenClaims(token);
  if (exp === null) return null;
  const expiresAt = exp * 1e3;
  const lifetime = Math.max(0, expiresAt - obtainedAt);
  const refreshAt = expiresAt - Math.min(REFRESH_MARGIN, lifetime * REFRESH_FRACTION);
  return Math.max(MIN_REFRESH_DELAY, refreshAt - now);
}
async function fetchToken(source) {
  const token = typeof source === "function" ? await source() : source;
  if (token == null || token === "") return null;
  if (typeof token !== "string") throw new TypeError(`the token function returned ${typeof token}, not a string`);
  if (token.length > MAX_TOKEN_LENGTH) throw new TypeError(`token too long: ${token.length} characters (at most ${MAX_TOKEN_LENGTH})`);
  return token;
}
var TokenKeeper = class {
  constructor(source) {
    this.source = source;
    this.token = null;
    this.obtainedAt = 0;
  }
  /** True when a fresh token can be asked for (the source is a function). */
  get refreshable() {
    return typeof this.source === "function";
  }
  /** Ask the source for the token to use now (a function is called); it becomes current. */
  async next() {
    const token = await fetchToken(this.source);
    this.token = token;
    this.obtainedAt = Date.now();
    return token;
  }
  /** Milliseconds until the current token should be refreshed; null when it never needs to be. */
  refreshIn() {
    if (!this.refreshable || this.token === null) return null;
    return refreshDelay(this.token, this.obtainedAt, Date.now());
  }
};

// src/client.ts
var FATAL = /* @__PURE__ */ new Map([
  [CLOSE_ORIGIN, "origin not allowed"],
  [CLOSE_POLICY, "policy violation"],
  [CLOSE_TOO_BIG, "message too big"]
]);
var MAX_TIMER = 2 ** 31 - 1;
var RETRY_REFUSED_AUTH = 5e3;
var RESEND_RATE_LIMITED = 1e3;
var TickstreamClient = class {
  constructor(url, options = {}) {
    /** Counters, for dashboards and tests. */
    this.stats = { events: 0, duplicates: 0, frames: 0, connects: 0, resets: 0 };
    this.urlIndex = -1;
    this.subs = /* @__PURE__ */ new Map();
    this.conn = null;
    /** the current connection's `auth` first message is waiting for its reply */
    this.authPending = false;
    this.welcomed = false;
    this.welcome = {};
    this.handler = {
      opened: (conn) => this.opened(conn),
      message: (conn, m) => this.message(conn, m),
      lost: (conn, code, reason) => this.lost(conn, code, reason),
      problem: (code, message) => this.emitError({ code, message }),
      latency: (ms) => this.setStatus({ latency: ms })
    };
    this.nextId = 1;
    this.attemptSeq = 0;
    this.closed = false;
    this.everConnected = false;
    this.statusListeners = /* @__PURE__ */ new Set();
    this.resetListeners = /* @__PURE__ */ new Set();
    this.errorListeners = /* @__PURE__ */ new Set();
    this.timers = /* @__PURE__ */ new Map();
    this._status = Object.freeze({
      state: "connecting",
      node: null,
      session: null,
      user: null,
      latency: null,
      attempt: 0,
      retryIn: null,
      closeCode: null,
      closeReason: null,
      error: null
    });
    this.onOnline = () => {
      if (this._status.state === "reconnecting" && this.timers.has("retry")) this.open();
    };
    this.urls = Array.isArray(url) ? [...url] : [url || "/ws"];
    if (this.urls.length === 0) throw new TypeError("no URL given");
    const { batchMs } = options;
    if (batchMs != null && !(Number.isInteger(batchMs) && batchMs >= 1 && batchMs <= 50)) {
      throw new TypeError("'batchMs' must be an integer from 1 to 50");
    }
    this.options = options;
    this.codec = options.codec ?? jsonCodec;
    this.tokens = new TokenKeeper(options.token ?? null);
    this.backoff = new Backoff(options.reconnectBase ?? 500, options.reconnectCap ?? 3e4, options.stableAfter ?? 3e4);
    if (typeof addEventListener === "function") addEventListener("online", this.onOnline);
    void this.open();
  }
  // --- public API -------------------------------------------------------------------------
  get status() {
    return this._status;
  }
  /** The current raw socket (for tests and diagnostics). */
  get _ws() {
    return this.conn?.ws ?? null;
  }
  /**
   * Subscribe to one event type; `callback` receives each event once, in offset order, across
   * reconnects. Subscribing again to the same type replaces the callback and the filter,
   * continuing from the last delivered offset unless `since` or `last` is given.
   */
  subscribe(eventType, callback, options = {}) {
    checkSubscribe(eventType, callback, options);
    if (this.closed) {
      const ready = Promise.reject(new Error("client closed"));
      ready.catch(() => {
      });
      return { eventType, ready, offset: () => null, epoch: () => null, unsubscribe: () => {
      } };
    }
    const sub = new Subscription(eventType, callback, options, this.subs.get(eventType));
    this.subs.set(eventType, sub);
    this.sendSubscribe(sub);
    return {
      eventType,
      ready: sub.ready,
      offset: () => sub.position,
      epoch: () => sub.epoch,
      unsubscribe: () => {
        if (this.subs.get(eventType) === sub) this.unsubscribe(eventType);
      }
    };
  }
  /** Stop receiving `eventType`. */
  unsubscribe(eventType) {
    const sub = this.subs.get(eventType);
    if (!sub) return;
    this.subs.delete(eventType);
    this.clearTimer(`resend:${eventType}`);
    sub.fail(new Error("unsubscribed"));
    if (this.canRequest()) this.conn?.send({ op: "unsubscribe", event_type: eventType }, { kind: "unsubscribe" });
  }
  /** Listen to status changes; the listener is called at once with the current status. */
  onStatus(listener) {
    this.statusListeners.add(listener);
    call(listener, this._status);
    return () => this.statusListeners.delete(listener);
  }
  /** Listen to resets: a subscription came back `recovered:false` (its history was lost). */
  onReset(listener) {
    this.resetListeners.add(listener);
    return () => this.resetListeners.delete(listener);
  }
  /**
   * Listen to errors the server reported (refused subscriptions, rate limiting, failed
   * re-authentication) and to exceptions thrown by callbacks.
   */
  onError(listener) {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }
  /** Replace the token (string, function or null) and reconnect with it now; subscriptions resume. */
  setToken(token) {
    this.tokens.source = token ?? null;
    this.tokens.token = null;
    if (this.closed) return;
    this.drop(1e3, "token changed");
    this.backoff.reset();
    void this.open();
  }
  /** Drop the current connection (if any) and connect again now; subscriptions resume. */
  reconnect() {
    if (this.closed) return;
    this.drop(1e3, "reconnect requested");
    void this.open();
  }
  /** Close for good. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.drop(1e3, "client closed");
    this.clearTimer("retry");
    this.forgetOnline();
    this.failAll("client closed");
    this.setStatus({ state: "disconnected", retryIn: null, error: null });
  }
  // --- connection life cycle ----------------------------------------------------------------
  async open() {
    if (this.closed) return;
    const attempt = ++this.attemptSeq;
    this.clearTimer("retry");
    this.setStatus({ state: this.everConnected ? "reconnecting" : "connecting", retryIn: null });
    let token;
    try {
      token = await this.tokens.next();
    } catch (err) {
      if (attempt !== this.attemptSeq || this.closed) return;
      this.scheduleRetry({ error: { code: "token", message: `token function failed: ${errorText(err)}` } });
      return;
    }
    if (attempt !== this.attemptSeq || this.closed) return;
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    if (WS === void 0) {
      this.stop("no_websocket", "no WebSocket implementation: pass options.WebSocket (the ws package under Node)");
      return;
    }
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    const query = this.options.auth === "query" ? token : null;
    this.drop(1e3, "replaced");
    try {
      this.conn = new Connection(wsUrl(this.urls[this.urlIndex], this.options, query), this.codec, WS, {
        openTimeout: this.options.openTimeout ?? 1e4,
        heartbeatTimeout: this.options.heartbeatTimeout ?? 1e4,
        pingInterval: this.options.pingInterval ?? 5e3
      }, () => this.nextId++, this.handler, this.stats);
    } catch (err) {
      this.stop("bad_url", errorText(err));
    }
  }
  /** The socket opened: authenticate first, or subscribe at once. */
  opened(conn) {
    if (conn !== this.conn) return;
    const token = this.tokens.token;
    if (token !== null && this.options.auth !== "query") {
      this.authPending = true;
      conn.send({ op: "auth", token }, { kind: "auth", initial: true });
    } else {
      this.sendAllSubscribes();
    }
  }
  /** The connection ended. */
  lost(conn, code, reason) {
    if (conn !== this.conn) return;
    this.detach();
    const change = {
      closeCode: code,
      closeReason: reason || null,
      node: null,
      session: null,
      latency: null
    };
    const fatal = FATAL.get(code);
    if (fatal !== void 0) {
      this.stop(code, reason || fatal, change);
    } else if (code === CLOSE_UNAUTHORIZED && !this.tokens.refreshable) {
      this.stop(code, reason || "unauthorized: the token was refused", change);
    } else {
      if (code === CLOSE_UNAUTHORIZED) change.error = { code, message: reason || "unauthorized" };
      this.scheduleRetry(change);
    }
  }
  canRequest() {
    return this.conn !== null && this.conn.isOpen && !this.authPending;
  }
  /** Forget the current connection (no `lost` follows). */
  drop(code, reason) {
    const conn = this.conn;
    this.detach();
    conn?.close(code, reason);
  }
  detach() {
    this.conn = null;
    this.authPending = false;
    this.welcomed = false;
    this.clearTimer("refresh");
    for (const sub of this.subs.values()) {
      sub.reqId = null;
      this.clearTimer(`resend:${sub.eventType}`);
    }
  }
  /** Stop for good with an error status. */
  stop(code, message, change = {}) {
    this.closed = true;
    this.drop(1e3, "stopped");
    this.forgetOnline();
    this.failAll(message);
    this.setStatus({ ...change, state: "disconnected", retryIn: null, error: { code, message } });
  }
  forgetOnline() {
    if (typeof removeEventListener === "function") removeEventListener("online", this.onOnline);
  }
  failAll(message) {
    for (const sub of this.subs.values()) sub.fail(new Error(message));
  }
  scheduleRetry(change = {}) {
    const delay = Math.round(this.backoff.next(Date.now()));
    this.setStatus({ ...change, state: "reconnecting", attempt: this.backoff.failures, retryIn: delay });
    this.setTimer("retry", () => void this.open(), delay);
  }
  /** Welcome received and, with a token, the auth accepted: the connection is up. */
  established(conn, user, welcome) {
    const heartbeat = typeof welcome.heartbeat === "number" ? welcome.heartbeat : 30;
    conn.established(heartbeat * 1e3);
    this.everConnected = true;
    this.backoff.connected(Date.now());
    this.setStatus({
      state: "connected",
      node: str(welcome.node),
      session: str(welcome.session),
      user,
      attempt: 0,
      retryIn: null,
      error: null
    });
    this.scheduleRefresh();
  }
  // --- tokens -------------------------------------------------------------------------------
  /** Re-authenticate on the live connection before the token's `exp`. */
  scheduleRefresh() {
    this.clearTimer("refresh");
    const delay = this.tokens.refreshIn();
    if (delay !== null) this.setTimer("refresh", () => void this.refresh(), Math.min(MAX_TIMER, delay));
  }
  async refresh() {
    const conn = this.conn;
    if (!conn) return;
    let token;
    try {
      token = await this.tokens.next();
    } catch (err) {
      this.emitError({ code: "token", message: `token function failed: ${errorText(err)}` });
      if (conn === this.conn) this.setTimer("refresh", () => void this.refresh(), RETRY_REFUSED_AUTH);
      return;
    }
    if (conn !== this.conn || token === null) return;
    conn.send({ op: "auth", token }, { kind: "auth" });
  }
  // --- messages -----------------------------------------------------------------------------
  sendAllSubscribes() {
    for (const sub of this.subs.values()) this.sendSubscribe(sub);
  }
  sendSubscribe(sub) {
    this.clearTimer(`resend:${sub.eventType}`);
    if (!this.canRequest() || !this.conn) return;
    sub.reqId = this.conn.send(sub.message(), { kind: "subscribe", sub });
  }
  /** One message from the server. */
  message(conn, m) {
    if (conn !== this.conn) return;
    if (m.type === void 0 && typeof m.event_type === "string") {
      this.event(m);
      return;
    }
    const id = m.id;
    const request = typeof id === "number" ? conn.requests.get(id) : void 0;
    if (request !== void 0 && m.type !== "subscribed") conn.requests.delete(id);
    switch (m.type) {
      case "welcome":
        this.welcomed = true;
        this.welcome = m;
        if (!this.authPending) this.established(conn, str(m.user), m);
        break;
      case "authenticated":
        if (request?.initial) {
          this.authPending = false;
          this.sendAllSubscribes();
          if (this.welcomed) this.established(conn, str(m.user), this.welcome);
        } else {
          this.setStatus({ user: str(m.user) });
          this.scheduleRefresh();
        }
        break;
      case "subscribed":
        this.subscribed(conn, m);
        break;
      case "error":
        this.serverError(conn, m, request);
        break;
      default:
        break;
    }
  }
  event(event) {
    const sub = this.subs.get(event.event_type);
    if (sub === void 0) return;
    const verdict = sub.accept(event);
    if (verdict === "duplicate") this.stats.duplicates += 1;
    if (verdict !== "deliver") return;
    this.stats.events += 1;
    try {
      sub.callback(event);
    } catch (err) {
      this.emitError({ code: "callback", message: errorText(err), eventType: sub.eventType });
      if (this.errorListeners.size === 0) console.error(err);
    }
  }
  subscribed(conn, m) {
    const sub = this.subs.get(m.event_type);
    if (sub === void 0 || m.id === void 0 || sub.reqId !== m.id) return;
    conn.requests.delete(m.id);
    if (!isOffset(m.offset) || typeof m.epoch !== "string") {
      this.emitError({ code: "bad_reply", message: "a subscribed reply without a valid offset or epoch", eventType: sub.eventType });
      return;
    }
    const reset = sub.subscribed(m);
    if (reset !== null) {
      this.stats.resets += 1;
      for (const listener of this.resetListeners) call(listener, reset);
    }
  }
  serverError(conn, m, request) {
    if (request?.kind === "subscribe" && request.sub) {
      const sub = request.sub;
      if (this.subs.get(sub.eventType) !== sub || sub.reqId !== m.id) return;
      if (m.code === "rate_limited") {
        this.setTimer(`resend:${sub.eventType}`, () => this.sendSubscribe(sub), RESEND_RATE_LIMITED);
        return;
      }
      this.subs.delete(sub.eventType);
      sub.fail(Object.assign(new Error(m.message), { code: m.code }));
      this.emitError({ ...m, eventType: sub.eventType });
      return;
    }
    if (request?.kind === "auth") {
      if (request.initial) {
        conn.lose(CLOSE_UNAUTHORIZED, m.message);
        return;
      }
      this.emitError(m);
      if (m.code === "forbidden") this.reconnect();
      else this.setTimer("refresh", () => void this.refresh(), RETRY_REFUSED_AUTH);
      return;
    }
    this.emitError(m);
  }
  // --- plumbing -----------------------------------------------------------------------------
  setStatus(change) {
    const current = this._status;
    const changed = Object.entries(change).some(([key, value]) => current[key] !== value);
    if (!changed) return;
    this._status = Object.freeze({ ...this._status, ...change });
    for (const listener of this.statusListeners) call(listener, this._status);
  }
  emitError(error) {
    for (const listener of this.errorListeners) call(listener, error);
  }
  setTimer(name, fn, ms) {
    this.clearTimer(name);
    this.timers.set(name, setTimeout(() => {
      this.timers.delete(name);
      fn();
    }, ms));
  }
  clearTimer(name) {
    const id = this.timers.get(name);
    if (id !== void 0) clearTimeout(id);
    this.timers.delete(name);
  }
};
function call(listener, value) {
  try {
    listener(value);
  } catch (err) {
    console.error(err);
  }
}
function str(value) {
  return typeof value === "string" ? value : null;
}
function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}

// src/index.ts
function connect(url, options = {}) {
  return new TickstreamClient(url, options);
}
export {
  Backoff,
  TickstreamClient,
  compareOffsets,
  connect,
  isOffset,
  jsonCodec,
  protocol_exports as protocol,
  tokenClaims
};
