// Generated from shared/protocol.py by scripts/gen-protocol.mjs: do not edit.

export const PROTOCOL_VERSION = 1;
export const SUBPROTOCOL_JSON = 'tickstream.json';
export const SUBPROTOCOL_MSGPACK = 'tickstream.msgpack';
export const CLOSE_NORMAL = 1000;
/** no close frame: the TCP connection just went away */
export const CLOSE_ABNORMAL = 1006;
/** sustained rate-limit abuse */
export const CLOSE_POLICY = 1008;
/** a frame over the size limit */
export const CLOSE_TOO_BIG = 1009;
/** node restarting: reconnect elsewhere and resume */
export const CLOSE_RESTARTING = 1012;
/** too many connections */
export const CLOSE_TRY_AGAIN = 1013;
/** heartbeat timeout */
export const CLOSE_HEARTBEAT = 4001;
/** slow consumer: reconnect and resume */
export const CLOSE_SLOW = 4008;
/** resync needed: a gap the server cannot fill */
export const CLOSE_RESYNC = 4009;
/** unauthorized or token expired */
export const CLOSE_UNAUTHORIZED = 4401;
/** origin not allowed */
export const CLOSE_ORIGIN = 4403;
