/**
 * The msgpack wire format (`tickstream.msgpack`): binary frames, about 20% smaller than JSON
 * and cheaper for the gateway. A separate entry point so the default bundle stays small:
 *
 *     import { connect } from '@tickstream/client';
 *     import { msgpackCodec } from '@tickstream/client/msgpack';
 *     const ts = connect(url, { codec: msgpackCodec });
 */
import { decode, encode } from '@msgpack/msgpack';
import type { Codec } from './codec.js';
import { SUBPROTOCOL_MSGPACK } from './protocol.js';

export const msgpackCodec: Codec = {
  subprotocol: SUBPROTOCOL_MSGPACK,
  binary: true,
  encode: (message) => encode(message),
  // a text frame is JSON (the gateway accepts and may answer either)
  decode: (data) => (typeof data === 'string' ? JSON.parse(data) : decode(data)),
};
