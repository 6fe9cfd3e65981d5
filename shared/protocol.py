"""Names of the client protocol shared by the gateway and the official clients (CONTRACT §3).

One definition, so the server and the clients cannot disagree on a code or a subprotocol.
"""

from __future__ import annotations

PROTOCOL_VERSION = 1
SUBPROTOCOL_JSON = "tickstream.json"
SUBPROTOCOL_MSGPACK = "tickstream.msgpack"

# Close codes.
CLOSE_NORMAL = 1000
CLOSE_ABNORMAL = 1006  # no close frame: the TCP connection just went away
CLOSE_POLICY = 1008  # sustained rate-limit abuse
CLOSE_TOO_BIG = 1009  # a frame over the size limit
CLOSE_RESTARTING = 1012  # node restarting: reconnect elsewhere and resume
CLOSE_TRY_AGAIN = 1013  # too many connections
CLOSE_HEARTBEAT = 4001  # heartbeat timeout
CLOSE_SLOW = 4008  # slow consumer: reconnect and resume
CLOSE_RESYNC = 4009  # resync needed: a gap the server cannot fill
CLOSE_UNAUTHORIZED = 4401  # unauthorized or token expired
CLOSE_ORIGIN = 4403  # origin not allowed
