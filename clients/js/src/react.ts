/**
 * React hooks over the client (`@tickstream/client/react`; React 18 or later):
 *
 *     const { client, status } = useTickstream('/ws', { token: getToken });
 *     useSubscription(client, 'signal_generated', (event) => addToFeed(event), { last: 20 });
 *     const prices = useLatest(client, 'price_update', { conflateMs: 100 });  // Map symbol -> event
 *
 * `useLatest` keeps only the newest event per symbol and re-renders at most once per animation
 * frame, however fast events arrive; the other hooks never re-render on an event by themselves.
 */
import React from 'react';
import { TickstreamClient } from './client.js';
import type {
  ConnectOptions, Status, SubscribedReply, SubscribeOptions, SubscriptionHandle, TickstreamEvent,
} from './types.js';

const { useEffect, useRef, useState } = React;

const IDLE: Status = Object.freeze({
  state: 'connecting', node: null, session: null, user: null, latency: null, attempt: 0,
  retryIn: null, closeCode: null, closeReason: null, error: null,
});

/**
 * A client for `url`, created on mount and closed on unmount (or when `url` changes), and its
 * status. `options` are read when the client is created; change the token of a running client
 * with `client.setToken()`.
 */
export function useTickstream(url?: string | string[], options?: ConnectOptions):
{ client: TickstreamClient | null; status: Status } {
  const [client, setClient] = useState<TickstreamClient | null>(null);
  const [status, setStatus] = useState<Status>(IDLE);
  const optionsRef = useRef(options);
  optionsRef.current = options;
  const key = Array.isArray(url) ? url.join('\n') : url ?? '';
  useEffect(() => {
    const created = new TickstreamClient(url, optionsRef.current);
    const off = created.onStatus(setStatus);
    setClient(created);
    return () => {
      off();
      created.close();
      setClient(null);
    };
  }, [key]); // the URL list is compared by value
  return { client, status };
}

export interface SubscriptionState {
  /** the first `subscribed` reply, once it came */
  reply: SubscribedReply | null;
  /** why the gateway refused the subscription (`unauthorized`, `forbidden`...) */
  error: Error | null;
}

function optionsKey(options: SubscribeOptions | undefined): string {
  if (!options) return '';
  const { symbols, since, epoch, last, conflateMs } = options;
  return JSON.stringify([symbols ? [...symbols].map((s) => s.toUpperCase()).sort() : null, since ?? null,
    epoch ?? null, last ?? null, conflateMs ?? null]);
}

/**
 * Subscribe while mounted: `onEvent` (the latest one given) receives each event once, in offset
 * order. A change of the options' values subscribes again (the new filter carries on from the
 * last offset: no gap, no duplicate); unmounting, or another `eventType` or client, unsubscribes.
 */
export function useSubscription<D = Record<string, any>>(client: TickstreamClient | null, eventType: string,
  onEvent: (event: TickstreamEvent<D>) => void, options?: SubscribeOptions): SubscriptionState {
  const [state, setState] = useState<SubscriptionState>({ reply: null, error: null });
  const callback = useRef(onEvent);
  callback.current = onEvent;
  const key = optionsKey(options);
  const optionsRef = useRef(options);
  optionsRef.current = options;
  const handle = useRef<SubscriptionHandle | null>(null);
  useEffect(() => () => {
    // unmounted, or another client or type: end it (a new filter alone replaces it, below)
    handle.current?.unsubscribe();
    handle.current = null;
  }, [client, eventType]);
  useEffect(() => {
    if (client === null) return undefined;
    let live = true;
    // subscribing again to the same type replaces the filter from the last offset: no gap
    const current = client.subscribe<D>(eventType, (event) => callback.current(event), optionsRef.current ?? {});
    handle.current = current;
    current.ready.then(
      (reply) => live && setState({ reply, error: null }),
      (error: Error) => live && error.message !== 'unsubscribed' && setState({ reply: null, error }),
    );
    return () => {
      live = false;
    };
  }, [client, eventType, key]);
  return state;
}

export interface LatestOptions extends SubscribeOptions {
  /** symbols kept at most; past it the least recently updated is forgotten (default 10000) */
  maxSymbols?: number;
}

type FrameScheduler = { request: (fn: () => void) => unknown; cancel: (id: unknown) => void };

function frames(): FrameScheduler {
  const g = globalThis as { requestAnimationFrame?: (fn: () => void) => number; cancelAnimationFrame?: (id: number) => void };
  if (typeof g.requestAnimationFrame === 'function' && typeof g.cancelAnimationFrame === 'function') {
    const raf = g.requestAnimationFrame.bind(globalThis);
    const caf = g.cancelAnimationFrame.bind(globalThis);
    return { request: (fn) => raf(fn), cancel: (id) => caf(id as number) };
  }
  return { request: (fn) => setTimeout(fn, 16), cancel: (id) => clearTimeout(id as ReturnType<typeof setTimeout>) };
}

/**
 * The newest event per symbol of `eventType` (events without a symbol under `""`), as a Map
 * that is replaced at most once per animation frame. Pass `conflateMs` to have the gateway
 * send less in the first place.
 */
export function useLatest<D = Record<string, any>>(client: TickstreamClient | null, eventType: string,
  options?: LatestOptions): ReadonlyMap<string, TickstreamEvent<D>> {
  const [latest, setLatest] = useState<ReadonlyMap<string, TickstreamEvent<D>>>(() => new Map());
  const store = useRef(new Map<string, TickstreamEvent<D>>());
  const frame = useRef<unknown>(null);
  const max = options?.maxSymbols ?? 10000;
  const scheduler = useRef<FrameScheduler | null>(null);
  scheduler.current ??= frames();
  useEffect(() => {
    store.current = new Map(); // another stream: start empty
    setLatest(new Map());
    return () => {
      if (frame.current !== null) scheduler.current?.cancel(frame.current);
      frame.current = null;
    };
  }, [client, eventType]);
  useSubscription<D>(client, eventType, (event) => {
    const map = store.current;
    const symbol = event.symbol ?? '';
    map.delete(symbol); // re-inserted last: the first key is the least recently updated
    map.set(symbol, event);
    if (map.size > max) map.delete(map.keys().next().value as string);
    if (frame.current === null) {
      frame.current = scheduler.current?.request(() => {
        frame.current = null;
        setLatest(new Map(store.current));
      });
    }
  }, options);
  return latest;
}
