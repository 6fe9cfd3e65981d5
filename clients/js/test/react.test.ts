/** The React hooks, with React Testing Library under Node (jsdom), against the fake socket. */
import { framesWaiting, runFrame } from './dom.js';
import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { act, cleanup, renderHook } from '@testing-library/react';
import type { TickstreamClient, TickstreamEvent } from '../src/index.js';
import { useLatest, useSubscription, useTickstream } from '../src/react.js';
import { FakeSocket, until } from './fake-socket.js';

const options = { WebSocket: FakeSocket, pingInterval: 0, reconnectBase: 1 };

beforeEach(() => FakeSocket.reset());
afterEach(() => cleanup());

async function connected(client: () => TickstreamClient | null): Promise<FakeSocket> {
  await until(() => client() !== null && FakeSocket.last, 'a socket');
  const s = FakeSocket.last as FakeSocket;
  await act(async () => s.welcome());
  return s;
}

test('useTickstream: a client while mounted, its status re-rendered, closed on unmount', async () => {
  const hook = renderHook(() => useTickstream('ws://gw.test/ws', options));
  assert.equal(hook.result.current.status.state, 'connecting');
  const s = await connected(() => hook.result.current.client);
  assert.equal(hook.result.current.status.state, 'connected');
  assert.equal(hook.result.current.status.node, 'gw-1');
  const client = hook.result.current.client as TickstreamClient;
  hook.unmount();
  assert.equal(client.status.state, 'disconnected');
  assert.equal(s.closedWith?.code, 1000);
});

test('useSubscription: the latest callback gets each event; a new filter resubscribes; unmount unsubscribes', async () => {
  const { result: ts } = renderHook(() => useTickstream('ws://gw.test/ws', options));
  const s = await connected(() => ts.current.client);
  const seen: string[] = [];
  const hook = renderHook(({ tag, symbols }) => useSubscription(ts.current.client, 'custom',
    (e) => seen.push(`${tag}:${e.offset}`), { symbols }), { initialProps: { tag: 'a', symbols: ['AAA'] } });
  await act(async () => s.subscribed('custom', '1-0'));
  assert.equal(hook.result.current.reply?.offset, '1-0');
  act(() => s.push(s.event('custom', '2-0', 'AAA')));
  hook.rerender({ tag: 'b', symbols: ['AAA'] }); // same filter, new callback: no resubscribe
  act(() => s.push(s.event('custom', '3-0', 'AAA')));
  assert.deepEqual(seen, ['a:2-0', 'b:3-0']);
  assert.equal(s.sent('subscribe').length, 1);
  hook.rerender({ tag: 'b', symbols: ['AAA', 'BBB'] });
  const again = s.sent('subscribe');
  assert.equal(again.length, 2);
  assert.deepEqual([again[1]?.symbols, again[1]?.since], [['AAA', 'BBB'], '3-0']);
  hook.unmount();
  assert.deepEqual(s.sent('unsubscribe').map((m) => m.event_type), ['custom']);
});

test('useLatest: the newest event per symbol, at most one render per animation frame', async () => {
  const { result: ts } = renderHook(() => useTickstream('ws://gw.test/ws', options));
  const s = await connected(() => ts.current.client);
  let renders = 0;
  const hook = renderHook(() => {
    renders += 1;
    return useLatest<{ price: number }>(ts.current.client, 'price_update', { conflateMs: 100 });
  });
  assert.equal(s.sent('subscribe')[0]?.conflate_ms, 100);
  await act(async () => s.subscribed('price_update', '1-0'));
  const before = renders;
  act(() => {
    const events = [];
    for (let n = 2; n < 302; n++) events.push(s.event('price_update', `${n}-0`, ['BTC', 'ETH', 'SOL'][n % 3] ?? null, { price: n }));
    s.push(...events.slice(0, 150));
    s.push(...events.slice(150));
  });
  assert.equal(renders, before, 'no render before the frame');
  assert.equal(framesWaiting(), 1);
  act(() => runFrame());
  assert.equal(renders, before + 1);
  const latest = hook.result.current;
  assert.deepEqual([...latest.entries()].map(([k, e]: [string, TickstreamEvent<{ price: number }>]) => [k, e.data.price]).sort(),
    [['BTC', 300], ['ETH', 301], ['SOL', 299]]);
  act(() => runFrame()); // nothing new: no render
  assert.equal(renders, before + 1);
});

test('useLatest: bounded by maxSymbols, the least recently updated forgotten', async () => {
  const { result: ts } = renderHook(() => useTickstream('ws://gw.test/ws', options));
  const s = await connected(() => ts.current.client);
  const hook = renderHook(() => useLatest(ts.current.client, 'price_update', { maxSymbols: 2 }));
  await act(async () => s.subscribed('price_update', '1-0'));
  act(() => s.push(s.event('price_update', '2-0', 'A'), s.event('price_update', '3-0', 'B'),
    s.event('price_update', '4-0', 'A'), s.event('price_update', '5-0', 'C')));
  act(() => runFrame());
  assert.deepEqual([...hook.result.current.keys()], ['A', 'C']);
});
