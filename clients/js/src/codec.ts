/**
 * The wire format: how messages become frames and frames become messages. JSON text frames by
 * default; `@tickstream/client/msgpack` gives the msgpack codec (binary frames), kept out of
 * the default bundle.
 */
import { SUBPROTOCOL_JSON } from './protocol.js';

/** Frame data as a WebSocket delivers it. */
export type FrameData = string | ArrayBuffer | ArrayBufferView | Blob;

/** A wire format the gateway speaks, named by its WebSocket subprotocol. */
export interface Codec {
  /** `tickstream.json` or `tickstream.msgpack` */
  readonly subprotocol: string;
  /** true: frames are binary (the socket's `binaryType` is set to `arraybuffer`) */
  readonly binary: boolean;
  encode(message: Record<string, unknown>): string | Uint8Array;
  /** One frame -> its value (an object, or an array of objects for a batch frame). */
  decode(data: string | ArrayBuffer | Uint8Array): unknown;
}

const textDecoder = /* @__PURE__ */ new TextDecoder();

/** JSON text frames (the default). */
export const jsonCodec: Codec = {
  subprotocol: SUBPROTOCOL_JSON,
  binary: false,
  encode: (message) => JSON.stringify(message),
  decode: (data) => JSON.parse(typeof data === 'string' ? data : textDecoder.decode(data)),
};

/** The frame as a string or bytes; null for a Blob (not produced with `binaryType` arraybuffer). */
export function frameBytes(data: FrameData): string | ArrayBuffer | Uint8Array | null {
  if (typeof data === 'string' || data instanceof ArrayBuffer || data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}
