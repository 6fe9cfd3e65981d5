"""``tickstream gateway``: run one gateway, or ``--workers N`` processes sharing the port.

With several workers this process is their parent and serves nothing itself. It binds every
socket first, so a taken port or ``--port 0`` is settled before any worker starts: one
listening socket per worker on the same port (``SO_REUSEPORT``: the kernel spreads new
connections over them; with port 0 the first bind picks the port and the others join it),
and with ``METRICS_PORT`` one metrics socket per worker (``METRICS_PORT + i``, or any free port
with 0). Then it forks the workers (node ``<NODE_ID>-w<i>``), each keeping only its own sockets,
and forwards SIGTERM/SIGINT to them. A worker that exits on its own stops the others, and the
parent exits with that worker's status (not 0), so a supervisor restarts the whole gateway.
Each worker asks the kernel for SIGTERM if the parent dies (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.settings import add_arguments, from_args

if TYPE_CHECKING:
    from gateway.settings import GatewaySettings

log = logging.getLogger("tickstream.gateway.cli")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
PR_SET_PDEATHSIG = 1


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from gateway.settings import GatewaySettings

    add_arguments(parser, GatewaySettings)


def run(args: argparse.Namespace) -> int:
    from gateway.server import serve
    from gateway.settings import GatewaySettings
    from shared.logsetup import configure

    settings = from_args(GatewaySettings, args)
    configure(settings.log_level, settings.node, fmt=settings.log_format)
    if settings.workers > 1:
        return serve_workers(settings)
    serve(settings)
    return 0


def _bind_all(settings: GatewaySettings) -> tuple[list[socket.socket], list[socket.socket | None]]:
    from gateway.server import bind, bound_port

    bound: list[socket.socket] = []
    try:
        bound.append(bind(settings.host, settings.port, reuse_port=True))
        port = bound_port(bound[0])
        bound += [bind(settings.host, port, reuse_port=True) for _ in range(settings.workers - 1)]
        metrics: list[socket.socket | None] = [None] * settings.workers
        if settings.metrics_port is not None:
            base = settings.metrics_port
            for index in range(settings.workers):
                sock = bind(settings.host, base + index if base else 0, reuse_port=False)
                bound.append(sock)
                metrics[index] = sock
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound[: settings.workers], metrics


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell reports it


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _worker(settings: GatewaySettings, listener: socket.socket, metrics: socket.socket | None,
            parent: int) -> int:
    """The body of a forked worker: its own process group, log node, signals and server."""
    from gateway.server import serve
    from shared.logsetup import configure

    os.setpgid(0, 0)  # a Ctrl-C in the terminal reaches the parent only, which forwards it once
    _die_with_parent(parent)
    configure(settings.log_level, settings.node, fmt=settings.log_format)
    # STOP_SIGNALS stay blocked until serve() has a handler for them (it unblocks them).
    serve(settings, listener, metrics)
    return 0


def _fork(settings: GatewaySettings, index: int, listeners: list[socket.socket],
          metrics: list[socket.socket | None]) -> int:
    from gateway.server import bound_port

    worker = dataclasses.replace(settings, node=f"{settings.node}-w{index}", workers=1,
                                 port=bound_port(listeners[index]))
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for other, sock in enumerate(listeners + metrics):
            if sock is not None and other not in (index, len(listeners) + index):
                sock.close()
        code = _worker(worker, listeners[index], metrics[index], parent)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("worker %d failed", index, extra={"event": "worker_failed"})
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve_workers(settings: GatewaySettings) -> int:
    """Start ``settings.workers`` gateway processes on one port; return the exit status."""
    from gateway.server import bound_port, url

    listeners, metrics = _bind_all(settings)
    port = bound_port(listeners[0])
    alive: dict[int, int] = {}  # pid -> worker index
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    stopping = False

    def stop_all(signum: int, _frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(alive):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    try:
        for index in range(settings.workers):
            pid = _fork(settings, index, listeners, metrics)
            alive[pid] = index
            log.info("worker %d: pid %d, node %s-w%d", index, pid, settings.node, index,
                     extra={"event": "worker_started", "pid": pid})
    except OSError as exc:
        stop_all(signal.SIGTERM)
        log.error("cannot start worker %d: %s", len(alive), exc, extra={"event": "worker_failed"})
    finally:
        # The parent keeps no socket: a listener of a worker that died must close with it.
        for sock in [*listeners, *metrics]:
            if sock is not None:
                sock.close()
        for signum in STOP_SIGNALS:
            signal.signal(signum, stop_all)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    failed = len(alive) < settings.workers
    if not failed:
        log.info("gateway %s: %d workers listening on %s", settings.node, len(alive),
                 url(settings.host, port), extra={"event": "listening", "port": port})
    return _wait(alive, lambda: stopping, stop_all, failed=failed)


def _wait(alive: dict[int, int], stopping: Callable[[], bool], stop_all: Callable[[int], None],
          *, failed: bool) -> int:
    """Reap the workers; one that exits on its own stops the others. The worst status wins."""
    worst = 1 if failed else 0
    while alive:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        index = alive.pop(pid, None)
        if index is None:
            continue
        code = _exit_code(status)
        if not stopping():
            log.error("worker %d (pid %d) exited with status %d; stopping the other workers",
                      index, pid, code, extra={"event": "worker_exited", "pid": pid})
            stop_all(signal.SIGTERM)
            code = code or 1  # unasked: never a success
        worst = max(worst, code)
    return worst
