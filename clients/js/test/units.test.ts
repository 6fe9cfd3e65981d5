/** The pure parts: offsets, backoff, tokens, the outbox's pacing and bounds, msgpack, protocol names. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decode, encode } from '@msgpack/msgpack';
import { msgpackCodec } from '../src/msgpack.js';
import { Outbox, SEND_BURST, SEND_RATE } from '../src/outbox.js';
import * as protocol from '../src/protocol.js';
import { refreshDelay } from '../src/auth.js';
import { ts } from './client-module.js';
import { fakeJwt, FakeSocket, until } from './fake-socket.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

test('compareOffsets is numeric and exact at any size; isOffset checks the whole string', () => {
  const big = (2n ** 64n - 1n).toString();
  const cases: [string, string, number][] = [
    ['9-0', '10-0', -1], ['1-10', '1-9', 1], ['007-1', '7-1', 0], [`${big}-0`, `${big}-1`, -1],
    [`${big}-${big}`, `${big}-${big}`, 0], ['1732612345679-0', '1732612345678-99', 1],
  ];
  for (const [a, b, want] of cases) assert.equal(ts.compareOffsets(a, b), want, `${a} vs ${b}`);
  assert.deepEqual(['1-2', '01-2', ' 1-2', '1-', '-1', 'a-b', '1-2\n', 5].map(ts.isOffset),
    [true, true, false, false, false, false, false, false]);
});

test('backoff: full jitter under a ceiling doubling to the cap, reset after a stable connection', () => {
  const b = new ts.Backoff(500, 30000, 30000, () => 1);
  assert.deepEqual(Array.from({ length: 9 }, (_, i) => b.next(i)), [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  b.connected(1000);
  assert.equal(b.next(2000), 30000);
  b.connected(10000);
  assert.equal(b.next(40000), 500);
});

test('refresh: at most 60 s before exp, at the latest at half the remaining life', () => {
  const now = 1_000_000_000;
  const long = fakeJwt({ exp: now / 1000 + 3600 });
  assert.equal(refreshDelay(long, now, now), 3600_000 - 60_000);
  const short = fakeJwt({ exp: now / 1000 + 10 });
  assert.equal(refreshDelay(short, now, now), 5_000);
  assert.equal(refreshDelay(fakeJwt({ sub: 'x' }), now, now), null);
});

test('outbox: a burst, then paced; a later subscribe of a type replaces a queued one; one ping waits', () => {
  let clock = 0;
  const box = new Outbox(() => clock);
  for (let i = 0; i < 100; i++) box.push({ id: i, message: { op: 'subscribe', event_type: `t${i}` } });
  assert.equal(box.take().length, SEND_BURST);
  assert.equal(box.take().length, 0);
  assert.equal(box.wait(), Math.ceil(1000 / SEND_RATE));
  clock += 1000;
  assert.equal(box.take().length, SEND_RATE);
  assert.deepEqual(box.push({ id: 500, message: { op: 'subscribe', event_type: 't99' } }), [99]);
  assert.deepEqual(box.push({ id: 501, message: { op: 'unsubscribe', event_type: 't99' } }), [500]);
  assert.deepEqual(box.push({ id: 502, message: { op: 'unsubscribe', event_type: 't99' } }), [502]);
  box.push({ id: 600, message: { op: 'ping' } });
  assert.deepEqual(box.push({ id: 601, message: { op: 'ping' } }), [601]);
  assert.equal(box.length, 100 - SEND_BURST - SEND_RATE - 1 + 1 + 1);
});

test('msgpack: binary frames both ways, the msgpack subprotocol, batches', async () => {
  FakeSocket.reset();
  const client = ts.connect('ws://gw.test/ws', { WebSocket: FakeSocket, codec: msgpackCodec, pingInterval: 0, token: 't.x.y' });
  try {
    const got: unknown[] = [];
    client.subscribe('custom', (e) => got.push([e.offset, e.data]));
    await until(() => FakeSocket.last);
    const s = FakeSocket.last as FakeSocket;
    assert.deepEqual(s.protocols, ['tickstream.msgpack']);
    assert.equal(s.binaryType, 'arraybuffer');
    s.accept();
    const sent = () => s.frames.map((f) => decode(f as Uint8Array) as Record<string, any>);
    s.pushBinary(encode({ type: 'welcome', session: 's', node: 'n', protocol: 1, heartbeat: 30, user: null }));
    s.pushBinary(encode({ type: 'authenticated', id: sent()[0]?.id, user: 'alice' }));
    const sub = sent()[1];
    assert.equal(sub?.op, 'subscribe');
    s.pushBinary(encode([
      { type: 'subscribed', id: sub?.id, event_type: 'custom', epoch: 'e', offset: '1-0', recovered: true },
      { event_type: 'custom', offset: '2-0', symbol: null, ts: 2, data: { price: 1.5, n: [1, 2] } },
    ]));
    assert.deepEqual(got, [['2-0', { price: 1.5, n: [1, 2] }]]);
    assert.equal(client.status.user, 'alice');
  } finally {
    client.close();
  }
});

test('the protocol names are those of shared/protocol.py (generated, checked)', () => {
  execFileSync(process.execPath, [join(root, 'scripts', 'gen-protocol.mjs'), '--check'], { stdio: 'pipe' });
  const python = readFileSync(join(root, '..', '..', 'shared', 'protocol.py'), 'utf8');
  for (const [name, value] of Object.entries(protocol)) {
    const literal = typeof value === 'string' ? `"${value}"` : String(value);
    assert.match(python, new RegExp(`^${name} = ${literal.replace(/\./g, '\\.')}(\\s|$)`, 'm'));
  }
  assert.equal(protocol.CLOSE_TOO_BIG, 1009);
});

test('the served gateway/static/tickstream.js is a fresh build of these sources', () => {
  execFileSync(process.execPath, [join(root, 'scripts', 'bundle.mjs'), '--check'], { stdio: 'pipe' });
});
