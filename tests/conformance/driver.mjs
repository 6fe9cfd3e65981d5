// The JS side of the conformance suite: drives @tickstream/client (clients/js/dist, the built
// package) under Node with the `ws` package as its WebSocket, controlled by the pytest test over
// stdin/stdout, one JSON object per line each way (tests/conformance/drivers.py: JsDriver).
//
//   {"cmd": "start", "url": ..., "format": "json"|"msgpack", "batch": bool, "token": spec|null}
//   {"cmd": "subscribe", "type": ..., "options": {"symbols", "since", "epoch", "last"}}
//   {"cmd": "update", "type": ..., "symbols": [...]}    a filter change, waits for the reply
//   {"cmd": "snapshot"}                                  what arrived, resets, close codes
//   {"cmd": "close"}
// Every command is answered {"ok": true, ...} or {"ok": false, "error": "..."}.
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'clients', 'js');
const WebSocket = createRequire(join(pkg, 'package.json'))('ws');
const { connect } = await import(pathToFileURL(join(pkg, 'dist', 'index.js')).href);
const { msgpackCodec } = await import(pathToFileURL(join(pkg, 'dist', 'msgpack.js')).href);

/** An HS256 JWT, as the test's gateways verify them. */
function jwt(user, ttl, secret) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: user, exp: Math.floor(Date.now() / 1000 + ttl) })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

const state = { client: null, received: {}, resets: [], codes: [], connected: 0, tokenCalls: 0, handles: {} };

function tokenSource(spec) {
  if (spec === null || spec === undefined) return null;
  if (typeof spec === 'string') return spec;
  return async () => {
    state.tokenCalls += 1;
    const ttl = state.tokenCalls === 1 && spec.first_ttl != null ? spec.first_ttl : spec.ttl;
    return jwt(spec.user, ttl, spec.secret);
  };
}

function record(type) {
  state.received[type] ??= [];
  return (event) => state.received[type].push([event.offset, event.symbol ?? null, event.data]);
}

const commands = {
  start({ url, format, batch, token }) {
    const client = connect(url, {
      WebSocket, codec: format === 'msgpack' ? msgpackCodec : undefined, batch,
      token: tokenSource(token), reconnectBase: 50, reconnectCap: 500, pingInterval: 0,
    });
    let last = null;
    client.onStatus((s) => {
      if (s.state === 'connected' && last !== 'connected') state.connected += 1;
      last = s.state;
      // one entry per connection that ended: when the retry is scheduled, or when it stopped
      const ended = (s.state === 'reconnecting' && s.retryIn !== null) || (s.state === 'disconnected' && s.error !== null);
      if (ended && s.closeCode !== null) state.codes.push(s.closeCode);
    });
    client.onReset((r) => state.resets.push({
      event_type: r.eventType, offset: r.offset, epoch: r.epoch, previous_epoch: r.previousEpoch, earliest: r.earliest,
    }));
    state.client = client;
    return {};
  },
  async subscribe({ type, options }) {
    const { symbols, since, epoch, last } = options;
    const handle = state.client.subscribe(type, record(type), { symbols, since, epoch, last });
    state.handles[type] = handle;
    const reply = await handle.ready;
    return { reply: { offset: reply.offset, epoch: reply.epoch, recovered: reply.recovered } };
  },
  async update({ type, symbols }) {
    const handle = state.client.subscribe(type, record(type), { symbols });
    await handle.ready;
    return {};
  },
  snapshot() {
    const s = state.client.status;
    return {
      received: state.received, resets: state.resets, codes: state.codes, connected: state.connected,
      state: s.state, error_code: s.error?.code ?? null, token_calls: state.tokenCalls,
    };
  },
  close() {
    state.client?.close();
    return {};
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  let reply;
  try {
    const command = JSON.parse(line);
    reply = { ok: true, ...(await commands[command.cmd](command)) };
  } catch (err) {
    reply = { ok: false, error: err instanceof Error ? `${err.message}` : String(err) };
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}
state.client?.close();
process.exit(0);
