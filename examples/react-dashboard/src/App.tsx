/**
 * A minimal trading dashboard: latest prices (conflated by the gateway, rendered at most once
 * per frame), a feed of trading signals, and the connection's status.
 */
import { useState } from 'react';
import type { TickstreamEvent } from '@tickstream/client';
import { useLatest, useSubscription, useTickstream } from '@tickstream/client/react';

interface Price {
  symbol: string;
  price: number;
  volume: number;
}

interface Signal {
  symbol: string;
  signal: string;
  entry_price: number;
  confidence: number;
}

const FEED_SIZE = 20;

export function App() {
  const { client, status } = useTickstream('/ws');
  const prices = useLatest<Price>(client, 'price_update', { conflateMs: 100, last: 50 });
  const [signals, setSignals] = useState<TickstreamEvent<Signal>[]>([]);
  useSubscription<Signal>(client, 'signal_generated', (event) => {
    setSignals((feed) => [event, ...feed].slice(0, FEED_SIZE));
  }, { last: FEED_SIZE });

  const rows = [...prices.values()].sort((a, b) => (a.symbol ?? '').localeCompare(b.symbol ?? ''));
  return (
    <main style={{ fontFamily: 'system-ui, sans-serif', margin: '2rem' }}>
      <h1>Tickstream</h1>
      <p>
        {status.state}
        {status.node ? ` to ${status.node}` : ''}
        {status.latency !== null ? `, ${status.latency} ms` : ''}
      </p>
      <table>
        <thead>
          <tr><th>Symbol</th><th>Price</th><th>Volume</th></tr>
        </thead>
        <tbody>
          {rows.map((e) => (
            <tr key={e.symbol ?? ''}>
              <td>{e.symbol}</td>
              <td>{e.data.price.toFixed(2)}</td>
              <td>{e.data.volume}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Signals</h2>
      <ul>
        {signals.map((e) => (
          <li key={e.offset}>
            {e.data.symbol} {e.data.signal} at {e.data.entry_price} ({Math.round(e.data.confidence * 100)}%)
          </li>
        ))}
      </ul>
    </main>
  );
}
