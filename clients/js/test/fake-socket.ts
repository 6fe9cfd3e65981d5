/**
 * A fake WebSocket for the unit tests: the test plays the server (accepts, sends messages,
 * closes with a code) and reads what the client sent.
 */
import type { WebSocketLike } from '../src/types.js';

export type Message = Record<string, any>;

export class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  binaryType = 'blob';
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: WebSocketLike['onmessage'] = null;
  onclose: WebSocketLike['onclose'] = null;
  onerror: ((ev: unknown) => void) | null = null;
  /** what the client sent, decoded (JSON) or raw (binary) */
  readonly frames: (string | Uint8Array)[] = [];
  closedWith: { code?: number; reason?: string } | null = null;

  constructor(readonly url: string, readonly protocols?: string | string[]) {
    FakeSocket.all.push(this);
  }

  static reset(): void {
    FakeSocket.all = [];
  }

  static get last(): FakeSocket | undefined {
    return FakeSocket.all[FakeSocket.all.length - 1];
  }

  send(data: string | Uint8Array): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.frames.push(data);
  }

  close(code?: number, reason?: string): void {
    this.readyState = 3;
    this.closedWith = { code, reason };
  }

  /** The JSON messages the client sent (optionally only those with this `op`). */
  sent(op?: string): Message[] {
    const all = this.frames.filter((f): f is string => typeof f === 'string').map((f) => JSON.parse(f) as Message);
    return op === undefined ? all : all.filter((m) => m.op === op);
  }

  // --- the server's side ---

  accept(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  /** Accept and send the welcome. */
  welcome(extra: Message = {}): void {
    if (this.readyState === 0) this.accept();
    this.push({ type: 'welcome', session: 's1', node: 'gw-1', protocol: 1, heartbeat: 30, user: null, ...extra });
  }

  /** One frame: one message, or several as a batch array. */
  push(...messages: Message[]): void {
    this.onmessage?.({ data: JSON.stringify(messages.length === 1 ? messages[0] : messages) });
  }

  pushBinary(data: Uint8Array): void {
    const copy = data.slice();
    this.onmessage?.({ data: copy.buffer });
  }

  /** Answer the client's last subscribe of `type`. */
  subscribed(type: string, offset: string, extra: Message = {}): void {
    const request = this.sent('subscribe').filter((m) => m.event_type === type).pop();
    if (!request) throw new Error(`no subscribe of ${type} was sent`);
    this.push({ type: 'subscribed', id: request.id, event_type: type, epoch: 'e1', offset, recovered: true, ...extra });
  }

  event(type: string, offset: string, symbol: string | null = null, data: Message = {}): Message {
    return { event_type: type, offset, symbol, ts: Number(offset.split('-')[0]), data };
  }

  serverClose(code: number, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

/** Wait until `condition()` holds (polled), at most `timeout` ms. */
export async function until(condition: () => unknown, what = 'the condition', timeout = 3000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** An unsigned JWT with these claims (the client reads `exp` without verifying). */
export function fakeJwt(claims: Record<string, unknown>): string {
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.c2ln`;
}
