// A cheap WebSocket bench client in plain Node (>= 20, no npm packages): one process, --count
// connections, RFC 6455 by hand on node:net, for bench/fanout.py's `--client node`.
//
//   node bench/nodeclient.mjs --url ws://127.0.0.1:PORT/ws[?batch=1] --count N --event-type T
//
// Each connection does the HTTP/1.1 upgrade itself (101, Upgrade and Sec-WebSocket-Accept
// checked), reads the `welcome`, sends a masked `subscribe` and waits for `subscribed`; from then
// on it counts events: occurrences of `"offset"` in each data message (a batch frame holds many).
// The first event of each chunk read is sampled for latency: this process's clock (sub-ms)
// minus the event's Redis `"ts"` (ms). The first --tracked connections keep every offset, so
// duplicates among them are counted exactly. Pings are answered (masked pongs), a close frame's
// code is recorded and echoed; a TCP close without one records 1006.
//
// Reads use `onread` with one buffer shared by every socket (no allocation per read, no 'data'
// event); frame boundaries are found in place and only an incomplete frame's bytes are copied.
//
// Control protocol with the parent, line-delimited JSON on stdout: {"ready":true} once every
// connection is subscribed, {"progress":n,"closed":k} (events counted so far, connections
// closed since) every 100 ms, and on the
// stdin line `stop`: {"received":[per connection],"dups":n,"samples":[ms...],"closes":[codes]}
// (samples: a uniform reservoir of at most --max-samples), then exit. A setup failure prints
// {"error":"..."} and exits 1.

import { createHash, randomBytes } from "node:crypto";
import { connect } from "node:net";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_HEADERS = 16384;
const MAX_MESSAGE = 64 << 20;
const STATUS = /^HTTP\/1\.1 101(?: [^\r\n]*)?$/;
const URL_RE = /^ws:\/\/(127\.0\.0\.1|localhost|\[::1\]):([0-9]{1,5})(\/[!-~]{0,2000})$/;
const OFFSET = Buffer.from('"offset"');
const TS = Buffer.from('"ts":');
const CONTINUATION = 0x0, TEXT = 0x1, BINARY = 0x2, CLOSE = 0x8, PING = 0x9, PONG = 0xa;
const CONCURRENT_HANDSHAKES = 100; // in flight at once: under any listen backlog

function parseArgs(argv) {
  const spec = {
    "--url": [URL_RE, null], "--count": [/^[1-9][0-9]{0,5}$/, null],
    "--event-type": [/^[A-Za-z0-9_.:-]{1,128}$/, null], "--tracked": [/^[0-9]{1,3}$/, "4"],
    "--max-samples": [/^[1-9][0-9]{0,7}$/, "200000"], "--timeout": [/^[1-9][0-9]{0,4}$/, "120"],
  };
  const values = {};
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (!(name in spec) || value === undefined) return fail(`unknown option or missing value: ${name}`);
    if (!spec[name][0].test(value)) return fail(`bad value for ${name}: ${JSON.stringify(value)}`);
    values[name] = value;
  }
  for (const [name, [, fallback]] of Object.entries(spec)) {
    values[name] ??= fallback;
    if (values[name] === null) return fail(`${name} is required`);
  }
  const [, host, port, path] = URL_RE.exec(values["--url"]);
  return {
    host: host.replace(/^\[|\]$/g, ""), hostHeader: `${host}:${port}`, port: Number(port), path,
    count: Number(values["--count"]), eventType: values["--event-type"],
    tracked: Number(values["--tracked"]), maxSamples: Number(values["--max-samples"]),
    timeoutMs: Number(values["--timeout"]) * 1000,
  };
}

/** Report a fatal error to the parent (stdout) and a human (stderr), then exit 1. */
function fail(message) {
  process.stderr.write(`nodeclient: ${message}\n`);
  process.stdout.write(JSON.stringify({ error: message }) + "\n", () => process.exit(1));
  return null;
}

/** One masked, final client frame (RFC 6455 5.3). */
function clientFrame(opcode, payload) {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(head + 4 + n);
  frame[0] = 0x80 | opcode;
  if (n < 126) frame[1] = 0x80 | n;
  else if (n < 65536) { frame[1] = 0x80 | 126; frame.writeUInt16BE(n, 2); }
  else { frame[1] = 0x80 | 127; frame.writeBigUInt64BE(BigInt(n), 2); }
  randomBytes(4).copy(frame, head);
  for (let i = 0; i < n; i++) frame[head + 4 + i] = payload[i] ^ frame[head + (i & 3)];
  return frame;
}

// Latency samples of the whole process: a uniform reservoir (Algorithm R) of at most `cap`.
class Reservoir {
  constructor(cap) { this.values = new Float64Array(cap); this.seen = 0; }
  add(value) {
    const { values } = this;
    if (this.seen < values.length) values[this.seen] = value;
    else {
      const j = Math.floor(Math.random() * (this.seen + 1));
      if (j < values.length) values[j] = value;
    }
    this.seen++;
  }
  list() {
    const n = Math.min(this.seen, this.values.length);
    return Array.from(this.values.subarray(0, n), (v) => Math.round(v * 1000) / 1000);
  }
}

const totals = { events: 0, closed: 0 }; // events counted; connections closed while counting
let scanBuf = null; // where the last "offset" search ran, and what it found (Infinity: none)
let scanHit = -1;

/** One connection: upgrade, welcome, subscribe, then counting; frames parsed incrementally. */
class Conn {
  constructor(opts, index, samples, onSubscribed, onFailed) {
    this.opts = opts;
    this.samples = samples;
    this.onSubscribed = onSubscribed;
    this.onFailed = onFailed;
    this.state = "upgrade"; // upgrade | welcome | subscribing | counting | closed
    this.received = 0;
    this.offsets = index < opts.tracked ? new Set() : null;
    this.dups = 0;
    this.closeCode = null;
    this.key = randomBytes(16).toString("base64");
    this.head = Buffer.alloc(0);
    this.pending = []; // copies of the bytes of an incomplete frame
    this.pendingLen = 0;
    this.need = 0; // bytes the pending data must reach before parsing can progress
    this.fragments = null;
    this.fragmentOpcode = 0;
    this.sampleDue = false;
    this.stopped = false;
  }

  open(sharedBuffer) {
    const { opts } = this;
    this.socket = connect({
      host: opts.host, port: opts.port, noDelay: true,
      // a bounded view per read: searches never see the shared buffer's older bytes
      onread: { buffer: sharedBuffer, callback: (n, buf) => { this.onRead(buf.subarray(0, n)); return true; } },
    });
    this.socket.setTimeout(opts.timeoutMs, () => {
      if (this.state !== "counting") this.failSetup("timed out before subscribed");
    });
    this.socket.on("connect", () => this.socket.write(
      `GET ${opts.path} HTTP/1.1\r\nHost: ${opts.hostHeader}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${this.key}\r\nSec-WebSocket-Version: 13\r\n\r\n`));
    this.socket.on("error", (err) => this.lost(err.message));
    this.socket.on("close", () => this.lost("connection closed"));
  }

  lost(why) {
    if (this.state === "counting") {
      if (this.closeCode === null) totals.closed++;
      this.closeCode ??= 1006;
      this.state = "closed";
    } else if (this.state !== "closed") this.failSetup(why);
  }

  failSetup(why) {
    this.state = "closed";
    this.socket.destroy();
    this.onFailed(why);
  }

  send(opcode, payload) {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(clientFrame(opcode, payload));
  }

  onRead(buf) {
    let start = 0;
    if (this.state === "upgrade") {
      start = this.handshake(buf);
      if (start < 0) return;
      buf = this.head; // the bytes after the headers, copied out of the shared buffer
      this.head = null;
      if (start === buf.length) return;
    }
    this.sampleDue = true;
    try {
      this.feed(buf, start, buf.length);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      if (this.state !== "counting") this.failSetup(err.message);
      else {
        process.stderr.write(`nodeclient: protocol error, closing with ${err.code}: ${err.message}\n`);
        if (this.closeCode === null) totals.closed++;
        this.closeCode ??= err.code;
        this.send(CLOSE, codeBytes(err.code));
        this.socket.destroy();
      }
    }
  }

  handshake(buf) {
    this.head = Buffer.concat([this.head, buf]);
    const end = this.head.indexOf("\r\n\r\n");
    if (end < 0) {
      if (this.head.length > MAX_HEADERS) this.failSetup("handshake response headers too long");
      return -1;
    }
    const lines = this.head.toString("latin1", 0, end).split("\r\n");
    const headers = new Map();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const accept = createHash("sha1").update(this.key + GUID).digest("base64");
    let problem = null;
    if (!STATUS.test(lines[0])) problem = `handshake answered ${JSON.stringify(lines[0].slice(0, 80))}`;
    else if (headers.get("sec-websocket-accept") !== accept) problem = "wrong Sec-WebSocket-Accept";
    else if ((headers.get("upgrade") ?? "").toLowerCase() !== "websocket") problem = "no Upgrade: websocket";
    if (problem) { this.failSetup(problem); return -1; }
    this.state = "welcome";
    return end + 4;
  }

  /** Parse the frames in buf[start, end); keep (a copy of) an incomplete last frame. */
  feed(buf, start, end) {
    if (this.pendingLen) {
      this.pending.push(Buffer.from(buf.subarray(start, end)));
      this.pendingLen += end - start;
      if (this.pendingLen < this.need) return;
      buf = Buffer.concat(this.pending, this.pendingLen);
      [start, end] = [0, buf.length];
      this.pending = [];
      this.pendingLen = 0;
    }
    let pos = start, need = 2;
    while (end - pos >= 2 && !this.stopped) {
      const b0 = buf[pos], b1 = buf[pos + 1];
      let length = b1 & 0x7f, head = 2;
      if (length === 126) {
        if (end - pos < 4) { need = 4; break; }
        length = (buf[pos + 2] << 8) | buf[pos + 3];
        head = 4;
      } else if (length === 127) {
        if (end - pos < 10) { need = 10; break; }
        const big = buf.readBigUInt64BE(pos + 2);
        length = big > BigInt(MAX_MESSAGE) ? Infinity : Number(big);
        head = 10;
      }
      if (b1 & 0x80 || b0 & 0x70) throw new ProtocolError(1002, "masked server frame or reserved bits set");
      if (length > MAX_MESSAGE) throw new ProtocolError(1009, `frame of ${length} bytes over ${MAX_MESSAGE}`);
      const stop = pos + head + length;
      if (stop > end) { need = stop - pos; break; }
      const opcode = b0 & 0x0f;
      if (b0 & 0x80 && (opcode === TEXT || opcode === BINARY) && this.fragments === null) {
        this.message(buf, pos + head, stop, opcode); // the hot path: one whole message
      } else this.other(b0 & 0x80, opcode, Buffer.from(buf.subarray(pos + head, stop)));
      pos = stop;
    }
    if (end - pos < 2) need = 2;
    this.need = need;
    if (pos < end && !this.stopped) {
      this.pending = [Buffer.from(buf.subarray(pos, end))];
      this.pendingLen = end - pos;
    }
  }

  other(fin, opcode, payload) {
    if (opcode >= CLOSE) {
      if (![CLOSE, PING, PONG].includes(opcode) || !fin || payload.length > 125) {
        throw new ProtocolError(1002, `bad control frame (opcode ${opcode})`);
      }
      if (opcode === PING) this.send(PONG, payload);
      else if (opcode === CLOSE) {
        if (this.closeCode === null && this.state === "counting") totals.closed++;
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.send(CLOSE, payload.subarray(0, 2)); // echo the code; the server then closes TCP
        this.stopped = true;
        if (this.state !== "counting") this.failSetup(`closed by the server (code ${this.closeCode})`);
      }
    } else if (opcode === TEXT || opcode === BINARY) {
      if (this.fragments !== null) throw new ProtocolError(1002, "a new message inside a fragmented one");
      this.fragments = [payload];
      this.fragmentsLen = payload.length;
      this.fragmentOpcode = opcode;
    } else if (opcode === CONTINUATION && this.fragments !== null) {
      this.fragments.push(payload);
      this.fragmentsLen += payload.length;
      if (this.fragmentsLen > MAX_MESSAGE) throw new ProtocolError(1009, "fragmented message too big");
      if (fin) {
        const whole = Buffer.concat(this.fragments, this.fragmentsLen);
        this.fragments = null;
        this.message(whole, 0, whole.length, this.fragmentOpcode);
      }
    } else throw new ProtocolError(1002, `unexpected opcode ${opcode}`);
  }

  message(buf, start, stop, opcode) {
    if (this.state === "counting") this.count(buf, start, stop);
    else this.setupMessage(opcode === TEXT ? buf.toString("utf8", start, stop) : null);
  }

  /** Counting mode: events are the `"offset"` keys in buf[start, stop). */
  count(buf, start, stop) {
    if (scanBuf !== buf || scanHit < start) {
      scanBuf = buf;
      scanHit = find(buf, OFFSET, start);
    }
    if (scanHit + OFFSET.length > stop) return;
    const first = scanHit;
    let n = 0;
    while (scanHit + OFFSET.length <= stop) {
      n++;
      if (this.offsets !== null) this.track(buf, scanHit + OFFSET.length, stop);
      scanHit = find(buf, OFFSET, scanHit + OFFSET.length);
    }
    this.received += n;
    totals.events += n;
    if (this.sampleDue) {
      this.sampleDue = false;
      const ts = buf.indexOf(TS, first);
      if (ts >= 0 && ts < stop) {
        let value = 0, i = ts + TS.length, c;
        while (i < stop && (c = buf[i]) >= 0x30 && c <= 0x39) { value = value * 10 + (c - 0x30); i++; }
        if (i > ts + TS.length) this.samples.add(performance.timeOrigin + performance.now() - value);
      }
    }
  }

  /** The offset string after an `"offset"` key at `pos` (`:"<ms>-<seq>"`), kept for duplicates. */
  track(buf, pos, stop) {
    if (buf[pos] !== 0x3a || buf[pos + 1] !== 0x22) return;
    const close = buf.indexOf(0x22, pos + 2);
    if (close < 0 || close >= stop) return;
    const offset = buf.toString("latin1", pos + 2, close);
    if (this.offsets.has(offset)) this.dups++;
    else this.offsets.add(offset);
  }

  setupMessage(text) {
    let msg = null;
    try { msg = text === null ? null : JSON.parse(text); } catch { /* reported below */ }
    const type = msg?.type;
    if (this.state === "welcome") {
      if (type !== "welcome") { this.failSetup(`expected welcome, got ${String(text).slice(0, 200)}`); return; }
      this.send(TEXT, Buffer.from(JSON.stringify({ op: "subscribe", event_type: this.opts.eventType })));
      this.state = "subscribing";
    } else if (this.state === "subscribing" && type !== "heartbeat") {
      if (type !== "subscribed") { this.failSetup(`subscribe answered ${String(text).slice(0, 200)}`); return; }
      this.state = "counting";
      this.socket.setTimeout(0);
      this.onSubscribed();
    }
  }
}

class ProtocolError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

function codeBytes(code) {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code);
  return b;
}

function find(buf, needle, from) {
  const at = buf.indexOf(needle, from);
  return at < 0 ? Infinity : at;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts === null) return;
  const samples = new Reservoir(opts.maxSamples);
  const shared = Buffer.allocUnsafe(256 * 1024); // every socket reads into it, one at a time
  const conns = [];
  let started = 0, subscribed = 0, failed = false;
  const onFailed = (why) => {
    if (failed) return;
    failed = true;
    for (const c of conns) c.socket.destroy();
    fail(`connection setup failed: ${why}`);
  };
  const startNext = () => {
    if (started >= opts.count || failed) return;
    const conn = new Conn(opts, started++, samples, onSubscribed, onFailed);
    conns.push(conn);
    conn.open(shared);
  };
  const onSubscribed = () => {
    subscribed++;
    if (subscribed === opts.count) {
      emit({ ready: true });
      setInterval(() => emit({ progress: totals.events, closed: totals.closed }), 100);
    } else startNext();
  };
  for (let i = 0; i < Math.min(CONCURRENT_HANDSHAKES, opts.count); i++) startNext();

  const finish = () => {
    const line = JSON.stringify({
      received: conns.map((c) => c.received),
      dups: conns.reduce((sum, c) => sum + c.dups, 0),
      samples: samples.list(),
      closes: conns.filter((c) => c.closeCode !== null).map((c) => c.closeCode),
    });
    for (const c of conns) c.socket.destroy();
    process.stdout.write(line + "\n", () => process.exit(0));
  };
  const input = createInterface({ input: process.stdin });
  input.on("line", (line) => { if (line.trim() === "stop") finish(); });
  input.on("close", () => process.exit(0)); // the parent went away
}

main();
