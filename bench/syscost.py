"""What one write to a loopback TCP socket costs this machine, in CPU.

    .venv/bin/python -m bench.syscost          # about 10 s

The gateway's fan-out cost is dominated by one ``write`` per connection per flush. This
measures that system call alone: 100 connected loopback sockets, a child process draining the
client ends, and the parent writing a payload of each size to every socket in turn (paced, so
that buffers never fill) for 3 s. On loopback the sender's write also runs the receiver's TCP
receive path (in the same softirq), so the figure is higher than a write to a real NIC costs.
"""

from __future__ import annotations

import os
import resource
import selectors
import socket
import time

CONNECTIONS = 100


def measure(size: int, seconds: float = 3.0) -> tuple[int, float, float]:
    """(writes, user µs per write, system µs per write)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(CONNECTIONS)
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONNECTIONS)]
    servers = [listener.accept()[0] for _ in range(CONNECTIONS)]
    listener.close()
    child = os.fork()
    if child == 0:  # drain the client ends until the parent closes them
        for sock in servers:  # the parent's ends: closed here, so that its close ends the child
            sock.close()
        selector = selectors.DefaultSelector()
        for sock in clients:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, sock)
        open_socks = len(clients)
        while open_socks:
            for key, _ in selector.select(1.0):
                ready: socket.socket = key.data
                try:
                    if not ready.recv(1 << 16):
                        selector.unregister(ready)
                        open_socks -= 1
                except BlockingIOError:
                    pass
        os._exit(0)
    for sock in clients:
        sock.close()
    payload = b"x" * size
    before = resource.getrusage(resource.RUSAGE_SELF)
    start, writes = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        for sock in servers:
            sock.send(payload)
        writes += len(servers)
        time.sleep(0.002)
    after = resource.getrusage(resource.RUSAGE_SELF)
    for sock in servers:
        sock.close()
    os.waitpid(child, 0)
    return (writes, (after.ru_utime - before.ru_utime) / writes * 1e6,
            (after.ru_stime - before.ru_stime) / writes * 1e6)


def main() -> None:
    print(f"{CONNECTIONS} loopback connections; CPU per write of the sending process")
    for size in (250, 1200, 6000):
        writes, user, system = measure(size)
        print(f"  {size:>5} bytes: {user + system:5.1f} us per write (user {user:.1f}, system "
              f"{system:.1f}; {writes:,} writes)")


if __name__ == "__main__":
    main()
