/** The client against a fake socket: connection policy, authentication, resume, delivery. */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { ConnectOptions, ResetInfo, TickstreamClient, TickstreamEvent } from '../src/index.js';
import { ts } from './client-module.js';
import { fakeJwt, FakeSocket, until } from './fake-socket.js';

let clients: TickstreamClient[] = [];

function start(options: ConnectOptions = {}, url: string | string[] = 'ws://gw.test/ws'): TickstreamClient {
  const client = ts.connect(url, { WebSocket: FakeSocket, reconnectBase: 1, reconnectCap: 5, pingInterval: 0, ...options });
  clients.push(client);
  return client;
}

async function socket(n: number): Promise<FakeSocket> {
  await until(() => FakeSocket.all.length >= n, `socket #${n}`);
  return FakeSocket.all[n - 1] as FakeSocket;
}

beforeEach(() => FakeSocket.reset());
afterEach(() => {
  for (const c of clients) c.close();
  clients = [];
});

describe('delivery and resume', () => {
  test('each event once, in offset order, across a reconnect that resumes with since and epoch', async () => {
    const client = start();
    const got: string[] = [];
    const handle = client.subscribe('custom', (e) => got.push(e.offset), { last: 2 });
    const first = await socket(1);
    first.welcome();
    assert.deepEqual(first.sent('subscribe').map(({ id, ...m }) => m), [{ op: 'subscribe', event_type: 'custom', last: 2 }]);
    first.subscribed('custom', '9-0');
    assert.equal((await handle.ready).offset, '9-0');
    first.push(first.event('custom', '10-0'), first.event('custom', '10-1')); // one batch frame
    first.serverClose(1012, 'node restarting');
    assert.equal(client.status.state, 'reconnecting');
    assert.equal(client.status.closeCode, 1012);

    const second = await socket(2);
    second.welcome({ node: 'gw-2' });
    const resume = second.sent('subscribe')[0];
    assert.equal(resume?.since, '10-1');
    assert.equal(resume?.epoch, 'e1');
    assert.equal(resume?.last, undefined);
    second.subscribed('custom', '10-1');
    second.push(second.event('custom', '10-1'), second.event('custom', '9-5'), second.event('custom', '10-2'));
    assert.deepEqual(got, ['10-0', '10-1', '10-2']);
    assert.equal(client.stats.duplicates, 2);
    assert.equal(client.status.node, 'gw-2');
  });

  test('offsets compare as integers, not strings', async () => {
    const client = start();
    const got: string[] = [];
    client.subscribe('custom', (e) => got.push(e.offset));
    const s = await socket(1);
    s.welcome();
    s.subscribed('custom', '9-9');
    s.push(s.event('custom', '10-0'), s.event('custom', '9-10'), s.event('custom', '10-10'), s.event('custom', '10-9'));
    assert.deepEqual(got, ['10-0', '10-10']);
  });

  test('recovered:false reaches onReset and the subscription goes on live from the new offset', async () => {
    const client = start();
    const resets: ResetInfo[] = [];
    client.onReset((r) => resets.push(r));
    const got: string[] = [];
    client.subscribe('custom', (e) => got.push(e.offset), { since: '5-0', epoch: 'old' });
    const s = await socket(1);
    s.welcome();
    assert.equal(s.sent('subscribe')[0]?.epoch, 'old');
    s.subscribed('custom', '100-0', { recovered: false, earliest: '90-0', epoch: 'new' });
    s.push(s.event('custom', '99-0'), s.event('custom', '101-0'));
    assert.deepEqual(got, ['101-0']);
    assert.deepEqual(resets, [{ eventType: 'custom', resumed: false, previousOffset: null, previousEpoch: 'old',
      offset: '100-0', epoch: 'new', earliest: '90-0' }]);
    assert.equal(client.stats.resets, 1);
  });

  test('widening a filter loses nothing: events before the new subscribed do not move the position', async () => {
    // The fixed divergence: the position advanced on old-filter events that arrived before the
    // new `subscribed`, so the replay's newly wanted events at or before them were dropped.
    const client = start();
    const got: string[] = [];
    const deliver = (e: TickstreamEvent) => got.push(`${e.symbol}@${e.offset}`);
    client.subscribe('custom', deliver, { symbols: ['AAA'] });
    const s = await socket(1);
    s.welcome();
    s.subscribed('custom', '1-0');
    s.push(s.event('custom', '2-0', 'AAA'));
    const widened = client.subscribe('custom', deliver, { symbols: ['AAA', 'BBB'] });
    const change = s.sent('subscribe')[1];
    assert.deepEqual(change?.symbols, ['AAA', 'BBB']);
    assert.equal(change?.since, '2-0');
    s.push(s.event('custom', '5-0', 'AAA')); // still under the old filter, before the reply
    s.subscribed('custom', '2-0');
    await widened.ready;
    s.push(s.event('custom', '3-0', 'BBB'), s.event('custom', '4-0', 'AAA'), s.event('custom', '5-0', 'AAA'));
    assert.deepEqual(got, ['AAA@2-0', 'BBB@3-0', 'AAA@4-0', 'AAA@5-0']);
  });

  test('the reply to a superseded subscribe is ignored, and its cancellation error is not reported', async () => {
    const client = start();
    const errors: unknown[] = [];
    client.onError((e) => errors.push(e));
    const got: string[] = [];
    const a = client.subscribe('custom', () => got.push('a'), { symbols: ['AAA'] });
    const s = await socket(1);
    s.welcome();
    const [first] = s.sent('subscribe');
    const b = client.subscribe('custom', (e) => got.push(e.offset), { symbols: ['BBB'] });
    s.push({ type: 'error', id: first?.id, code: 'bad_request', message: 'cancelled by a later request before it started' });
    s.subscribed('custom', '7-0');
    s.push(s.event('custom', '8-0', 'BBB'));
    assert.equal((await a.ready).offset, '7-0'); // the replaced handle follows its replacement
    assert.equal((await b.ready).offset, '7-0');
    assert.deepEqual(got, ['8-0']);
    assert.deepEqual(errors, []);
  });

  test('a refused subscription rejects ready and reaches onError', async () => {
    const client = start();
    const errors: { code: unknown; eventType?: string }[] = [];
    client.onError((e) => errors.push(e));
    const handle = client.subscribe('trade_executed', () => {});
    const s = await socket(1);
    s.welcome();
    const id = s.sent('subscribe')[0]?.id;
    s.push({ type: 'error', id, code: 'unauthorized', message: 'trade_executed is private: authenticate first' });
    await assert.rejects(handle.ready, (err: Error & { code?: string }) => err.code === 'unauthorized');
    assert.deepEqual(errors.map((e) => [e.code, e.eventType]), [['unauthorized', 'trade_executed']]);
  });

  test('subscribe validates whole strings and ranges', () => {
    const client = start();
    const noop = () => {};
    assert.throws(() => client.subscribe('price_update\n', noop), /invalid event type/);
    assert.throws(() => client.subscribe('custom', noop, { since: '1-2\n' }), /invalid offset/);
    assert.throws(() => client.subscribe('custom', noop, { since: '1-2', last: 3 }), /not both/);
    assert.throws(() => client.subscribe('custom', noop, { last: 100001 }), /'last'/);
    assert.throws(() => client.subscribe('custom', noop, { conflateMs: 9 }), /conflateMs/);
    assert.throws(() => client.subscribe('custom', noop, { symbols: ['BTC USDT'] }), /invalid symbol/);
  });
});

describe('close codes', () => {
  for (const [code, reason] of [[1009, 'message too big'], [1008, 'rate limit exceeded'], [4403, 'origin not allowed']] as const) {
    test(`${code} stops for good: reconnecting cannot help`, async () => {
      const client = start();
      const handle = client.subscribe('custom', () => {});
      const s = await socket(1);
      s.welcome();
      s.serverClose(code, reason);
      // a retry would start within the 5 ms backoff cap
      await until(() => client.status.state === 'disconnected' || FakeSocket.all.length > 1, 'a stop or a retry');
      assert.equal(FakeSocket.all.length, 1, 'it connected again');
      assert.equal(client.status.state, 'disconnected');
      assert.equal(client.status.error?.code, code);
      await assert.rejects(handle.ready);
    });
  }

  for (const code of [1006, 1012, 1013, 4001, 4008, 4009]) {
    test(`${code} reconnects and resumes`, async () => {
      const client = start();
      client.subscribe('custom', () => {});
      const s = await socket(1);
      s.welcome();
      s.subscribed('custom', '3-0');
      s.serverClose(code);
      const next = await socket(2);
      next.welcome();
      assert.equal(next.sent('subscribe')[0]?.since, '3-0');
      assert.equal(client.status.state, 'connected');
    });
  }

  test('a silent connection is dropped (4000) and replaced', async () => {
    const client = start({ heartbeatTimeout: 40 });
    const s = await socket(1);
    s.welcome({ heartbeat: 0.02 });
    await socket(2);
    assert.equal(s.closedWith?.code, 4000);
    assert.equal(client.status.closeCode, 4000);
  });

  test('several URLs are tried in turn', async () => {
    start({}, ['ws://a.test/ws', 'ws://b.test/ws']);
    (await socket(1)).serverClose(1006);
    (await socket(2)).serverClose(1006);
    const third = await socket(3);
    assert.deepEqual(FakeSocket.all.map((s) => new URL(s.url).host), ['a.test', 'b.test', 'a.test']);
    assert.equal(new URL(third.url).searchParams.get('batch'), '1');
  });
});

describe('tokens', () => {
  test('the token goes in the first message, not the URL; subscriptions wait for the reply', async () => {
    const token = fakeJwt({ sub: 'alice', exp: Math.floor(Date.now() / 1000) + 3600 });
    const client = start({ token });
    client.subscribe('trade_executed', () => {});
    const s = await socket(1);
    assert.equal(new URL(s.url).searchParams.get('token'), null);
    s.accept();
    assert.deepEqual(s.sent().map((m) => m.op), ['auth']);
    assert.equal(s.sent()[0]?.token, token);
    s.welcome();
    assert.equal(client.status.state, 'connecting'); // not before the auth reply
    s.push({ type: 'authenticated', id: s.sent()[0]?.id, user: 'alice' });
    assert.deepEqual(s.sent().map((m) => m.op), ['auth', 'subscribe']);
    assert.equal(client.status.state, 'connected');
    assert.equal(client.status.user, 'alice');
  });

  test("auth: 'query' puts the token in the URL instead", async () => {
    start({ token: 'abc.def.ghi', auth: 'query' });
    const s = await socket(1);
    assert.equal(new URL(s.url).searchParams.get('token'), 'abc.def.ghi');
    s.welcome({ user: 'alice' });
    assert.deepEqual(s.sent('auth'), []);
  });

  test('a refused first token: a function is asked for a fresh one, a fixed token stops', async () => {
    const tokens = ['expired.x.y', 'fresh.x.y'];
    const client = start({ token: () => tokens.shift() ?? null });
    const s = await socket(1);
    s.welcome();
    s.push({ type: 'error', id: s.sent('auth')[0]?.id, code: 'unauthorized', message: 'token expired' });
    const next = await socket(2);
    assert.equal(client.status.closeCode, 4401);
    next.welcome();
    assert.equal(next.sent('auth')[0]?.token, 'fresh.x.y');

    const fixed = start({ token: 'bad.x.y' });
    const f = await socket(3);
    f.welcome();
    f.push({ type: 'error', id: f.sent('auth')[0]?.id, code: 'unauthorized', message: 'token expired' });
    assert.equal(fixed.status.state, 'disconnected');
    assert.deepEqual(fixed.status.error, { code: 4401, message: 'token expired' });
  });

  test('a token function is called again before exp and the fresh token sent on the same connection', async () => {
    let n = 0;
    const client = start({ token: () => fakeJwt({ sub: 'alice', n: n++, exp: Math.floor(Date.now() / 1000) + 1 }) });
    const s = await socket(1);
    s.welcome();
    s.push({ type: 'authenticated', id: s.sent('auth')[0]?.id, user: 'alice' });
    await until(() => s.sent('auth').length === 2, 'the refresh', 2500);
    s.push({ type: 'authenticated', id: s.sent('auth')[1]?.id, user: 'alice' });
    assert.equal(FakeSocket.all.length, 1);
    assert.equal(client.status.state, 'connected');
  });

  test('tokenClaims reads exp without verifying', () => {
    assert.deepEqual(ts.tokenClaims(fakeJwt({ exp: 12, iat: 3 })), { exp: 12, iat: 3 });
    assert.deepEqual(ts.tokenClaims('not-a-jwt'), { exp: null, iat: null });
  });
});

describe('batch and formats', () => {
  test('batch=1 by default, batch_ms passed on, batch off on request', async () => {
    start({ batchMs: 20 }, 'http://gw.test/ws?x=1');
    const url = new URL((await socket(1)).url);
    assert.equal(url.protocol, 'ws:');
    assert.deepEqual([url.searchParams.get('batch'), url.searchParams.get('batch_ms'), url.searchParams.get('x')], ['1', '20', '1']);
    start({ batch: false });
    assert.equal(new URL((await socket(2)).url).searchParams.get('batch'), null);
    assert.deepEqual((await socket(2)).protocols, ['tickstream.json']);
  });
});
