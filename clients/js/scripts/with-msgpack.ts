// Entry point for the size report only: the client with the msgpack codec.
export * from '../src/index.js';
export { msgpackCodec } from '../src/msgpack.js';
