"""Run a set of child processes as one unit: start, probe, restart on crash, stop in order.

This is the engine behind ``tickstream up``; it knows nothing about Tickstream's components.

* Every child runs in its own session (``start_new_session``), so a Ctrl-C typed in the terminal
  reaches only the supervisor, which then stops the children in order. On Linux each child also
  asks the kernel for SIGTERM when the supervisor dies (``PR_SET_PDEATHSIG``), so even a
  ``kill -9`` of the supervisor leaves no stray process behind.
* Every line a child writes is copied to the supervisor's stdout/stderr, prefixed by its name.
* A child is *ready* once its probe (an async callable) says so; the supervisor keeps probing a
  freshly (re)started child until it answers or exits.
* A child that exits while the supervisor is not stopping is restarted after a full-jitter
  exponential backoff (:class:`shared.backoff.Backoff`, reset once a child has stayed up for a
  minute) and the exit is reported on stderr. Exit status 2 is the CLI's "configuration error":
  restarting cannot fix that, so the supervisor stops everything and exits 2.
* :meth:`Supervisor.shutdown` stops the children stage by stage (lowest stage first), each with
  SIGTERM, then SIGKILL after the stage's timeout. Only PIDs the supervisor started are
  signalled.
* A child's arguments may be decided anew before each (re)start (``ChildSpec.prepare``): a Redis
  replica, say, that must follow whichever node is the primary now.
* :meth:`Supervisor.run_once` runs a one-shot helper (``redis-cli --cluster create``) the same
  way: own session, PID recorded, killed if a stop is requested or it overstays.
* A JSON state file (PIDs, states, restarts, and every PID ever started) is rewritten on each
  change, for operators and for tests that check nothing was left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from shared.backoff import Backoff

Probe = Callable[[float], Awaitable[bool]]
"""Is the child ready? Called with the monotonic time its current process was started."""

EXIT_CONFIG = 2
"""The status every ``tickstream`` command exits with on bad configuration."""

LINE_LIMIT = 1024 * 1024
PROBE_TIMEOUT = 2.0
PREPARE_TIMEOUT = 5.0
DRAIN_TIMEOUT = 2.0
KILL_WAIT = 5.0
MAX_PID_HISTORY = 1000

_PR_SET_PDEATHSIG = 1


def _pdeathsig_setter() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGTERM when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return preexec


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    probe: Probe
    stage: int = 0
    """Shutdown order: every child of the lowest stage is stopped first."""
    stop_timeout: float = 15.0
    """How long the child has to exit after SIGTERM before it gets SIGKILL."""
    address: str = ""
    """Shown in the status table."""
    note: str = ""
    prepare: Callable[[], Awaitable[list[str]]] | None = None
    """Called before each start: the arguments to run this time (default: ``argv``)."""


@dataclass
class Child:
    spec: ChildSpec
    proc: asyncio.subprocess.Process | None = None
    pids: list[int] = field(default_factory=list)
    restarts: int = 0
    state: str = "starting"
    started_at: float = 0.0
    ready_event: asyncio.Event = field(default_factory=asyncio.Event)
    last_exit: int | None = None
    exited_at: float | None = None
    """Wall-clock time the last process exited."""
    exited_pid: int | None = None
    supervise_task: asyncio.Task[None] | None = None
    watch_task: asyncio.Task[None] | None = None
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def record_exit(self, proc: asyncio.subprocess.Process) -> None:
        if self.exited_pid != proc.pid:
            self.last_exit, self.exited_at, self.exited_pid = proc.returncode, time.time(), proc.pid

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def ready(self) -> bool:
        return self.ready_event.is_set()


class Supervisor:
    def __init__(
        self,
        *,
        state_file: Path | None = None,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        prefix_width: int = 10,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        stable_after: float = 60.0,
        probe_interval: float = 0.05,
        label: str = "tickstream up",
    ) -> None:
        self.children: dict[str, Child] = {}
        self.state_file = state_file
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.prefix_width = prefix_width
        self.backoff_base, self.backoff_cap, self.stable_after = backoff_base, backoff_cap, stable_after
        self.probe_interval = probe_interval
        self.label = label
        self.stop_requested = asyncio.Event()
        self.stopping = False
        self.exit_code = 0
        self.started_pids: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}
        """Written to the state file as is (what ``up`` wants operators and tests to find there)."""
        self._broken: set[int] = set()
        self._preexec = _pdeathsig_setter()

    # -- output ----------------------------------------------------------------------------------

    def report(self, message: str) -> None:
        """One line of the supervisor's own on stderr."""
        self._emit(self.err, f"{self.label}: {message}\n")

    def _emit(self, sink: IO[str], text: str) -> None:
        if id(sink) in self._broken:
            return
        try:
            sink.write(text)
            sink.flush()
        except (BrokenPipeError, ValueError, OSError):
            self._broken.add(id(sink))

    async def _pump(self, name: str, stream: asyncio.StreamReader | None, sink: IO[str]) -> None:
        if stream is None:
            return
        prefix = f"{name:<{self.prefix_width}} | "
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over LINE_LIMIT: asyncio dropped it
                self._emit(sink, f"{prefix}[a line over {LINE_LIMIT} bytes was dropped]\n")
                continue
            if not line:
                return
            self._emit(sink, prefix + line.decode("utf-8", "replace").rstrip("\r\n") + "\n")

    # -- starting and supervising ----------------------------------------------------------------

    def request_stop(self, code: int = 0) -> None:
        """Ask for the stack to stop; the first caller's exit code wins."""
        if not self.stop_requested.is_set():
            self.exit_code = code
            self.stop_requested.set()

    async def start(self, spec: ChildSpec) -> Child:
        """Start one child and supervise it from now on; OSError if it cannot be executed."""
        if spec.name in self.children:
            raise ValueError(f"a child named {spec.name!r} already exists")
        child = Child(spec)
        self.children[spec.name] = child
        await self._spawn(child)
        child.supervise_task = asyncio.create_task(self._supervise(child), name=f"supervise-{spec.name}")
        return child

    async def _exec(self, name: str, argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, preexec_fn=self._preexec, limit=LINE_LIMIT,
        )
        self.started_pids.append({"name": name, "pid": proc.pid})
        del self.started_pids[:-MAX_PID_HISTORY]  # a child crash-looping for days stays bounded
        return proc

    async def _argv(self, spec: ChildSpec) -> list[str]:
        if spec.prepare is None:
            return spec.argv
        try:
            return await asyncio.wait_for(spec.prepare(), PREPARE_TIMEOUT)
        except Exception as exc:  # starting as configured beats not starting
            self.report(f"{spec.name}: cannot decide how to start it ({type(exc).__name__}: {exc}); "
                        "starting it as configured")
            return spec.argv

    async def _spawn(self, child: Child) -> None:
        spec = child.spec
        child.ready_event.clear()
        child.state = "starting"
        proc = await self._exec(spec.name, await self._argv(spec), spec.env)
        child.proc = proc
        child.started_at = time.monotonic()
        child.pids.append(proc.pid)
        del child.pids[:-MAX_PID_HISTORY]
        child.pumps = [
            asyncio.create_task(self._pump(spec.name, proc.stdout, self.out)),
            asyncio.create_task(self._pump(spec.name, proc.stderr, self.err)),
        ]
        child.watch_task = asyncio.create_task(self._watch_ready(child, proc), name=f"probe-{spec.name}")
        self.write_state()

    async def _watch_ready(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        while proc.returncode is None:
            try:
                ok = await asyncio.wait_for(child.spec.probe(child.started_at), PROBE_TIMEOUT)
            except Exception:  # a probe that fails in any way means "not ready yet"
                ok = False
            if ok and proc.returncode is None and child.proc is proc:
                child.state = "ready"
                child.ready_event.set()
                if child.restarts:
                    self.report(f"{child.name} is ready again (pid {proc.pid})")
                self.write_state()
                return
            await asyncio.sleep(self.probe_interval)

    async def _drain(self, child: Child) -> None:
        if child.pumps:
            await asyncio.wait(child.pumps, timeout=DRAIN_TIMEOUT)
            for task in child.pumps:
                task.cancel()

    async def _supervise(self, child: Child) -> None:
        backoff = Backoff(self.backoff_base, self.backoff_cap, self.stable_after)
        backoff.connected(time.monotonic())
        while True:
            proc = child.proc
            assert proc is not None
            code = await proc.wait()
            child.record_exit(proc)
            if child.watch_task is not None:
                child.watch_task.cancel()
            await self._drain(child)
            if self.stopping:
                return
            child.ready_event.clear()
            what = f"{child.name} (pid {proc.pid}) {describe_exit(code)}"
            if code == EXIT_CONFIG:
                child.state = "failed"
                self.write_state()
                self.report(f"{what}: a configuration error, not restarting it; stopping")
                self.request_stop(EXIT_CONFIG)
                return
            delay = backoff.next_delay(time.monotonic())
            child.restarts += 1
            child.state = "restarting"
            self.write_state()
            self.report(f"{what}; restarting it in {delay:.1f} s (restart {child.restarts})")
            try:
                await asyncio.wait_for(self.stop_requested.wait(), delay)
                return
            except TimeoutError:
                pass
            try:
                await self._spawn(child)
            except OSError as exc:
                child.state = "failed"
                self.report(f"cannot restart {child.name}: {exc}; stopping")
                self.request_stop(1)
                return
            backoff.connected(time.monotonic())

    async def run_once(self, name: str, argv: list[str], env: dict[str, str],
                       within: float) -> tuple[int | None, list[str]]:
        """Run a one-shot helper to its end; its output is returned, not copied.

        Returns its exit status (``None`` if it was killed: ``within`` seconds passed or a stop
        was requested) and its output lines (stdout and stderr interleaved).
        """
        proc = await self._exec(name, argv, env)
        self.write_state()
        lines: list[str] = []

        async def collect(stream: asyncio.StreamReader | None) -> None:
            while stream is not None:
                try:
                    line = await stream.readline()
                except ValueError:
                    continue
                if not line:
                    return
                lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))

        pumps = [asyncio.create_task(collect(proc.stdout)), asyncio.create_task(collect(proc.stderr))]
        exited = asyncio.create_task(proc.wait())
        stop = asyncio.create_task(self.stop_requested.wait())
        killed = False
        try:
            await asyncio.wait([exited, stop], timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if proc.returncode is None:
                killed = True
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.wait_for(proc.wait(), KILL_WAIT)
            exited.cancel()
            await asyncio.wait(pumps, timeout=DRAIN_TIMEOUT)
            for task in pumps:
                task.cancel()
        return (None if killed else proc.returncode), lines

    async def wait_ready(self, children: Iterable[Child], within: float) -> list[Child]:
        """Wait until every child is ready, ``within`` seconds pass or a stop is requested.

        Returns the children that are not ready.
        """
        pending = [c for c in children if not c.ready]
        if pending:
            waits = [asyncio.create_task(c.ready_event.wait()) for c in pending]
            stop = asyncio.create_task(self.stop_requested.wait())
            deadline = time.monotonic() + within
            try:
                while not all(w.done() for w in waits) and not stop.done():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    await asyncio.wait([*[w for w in waits if not w.done()], stop], timeout=left,
                                       return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in [*waits, stop]:
                    task.cancel()
        return [c for c in children if not c.ready]

    # -- stopping --------------------------------------------------------------------------------

    def kill_all(self) -> None:
        """SIGKILL every child still running (a second Ctrl-C)."""
        for child in self.children.values():
            if child.running and child.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()

    async def _stop_child(self, child: Child) -> None:
        proc = child.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), child.spec.stop_timeout)
            except TimeoutError:
                self.report(f"{child.name} (pid {proc.pid}) did not stop within "
                            f"{child.spec.stop_timeout:g} s: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.wait_for(proc.wait(), KILL_WAIT)
        if proc is not None and proc.returncode is not None:
            child.record_exit(proc)
        await self._drain(child)
        child.ready_event.clear()
        child.state = "stopped"

    async def shutdown(self) -> None:
        """Stop every child, stage by stage; no child is restarted from now on."""
        self.stopping = True
        self.stop_requested.set()
        tasks = [t for c in self.children.values() for t in (c.supervise_task, c.watch_task) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stage in sorted({c.spec.stage for c in self.children.values()}):
            group = [c for c in self.children.values() if c.spec.stage == stage]
            await asyncio.gather(*(self._stop_child(c) for c in group))
        self.write_state(running=False)

    # -- state file ------------------------------------------------------------------------------

    def snapshot(self, running: bool = True) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "running": running,
            "updated": time.time(),
            "children": {
                name: {"pid": c.pid, "state": c.state, "ready": c.ready, "restarts": c.restarts,
                       "pids": c.pids, "last_exit": c.last_exit, "exited_at": c.exited_at,
                       "address": c.spec.address}
                for name, c in self.children.items()
            },
            "started_pids": self.started_pids,
            **self.info,
        }

    def write_state(self, running: bool = True) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot(running), indent=2) + "\n")
            os.replace(tmp, self.state_file)
        except OSError as exc:
            self.report(f"cannot write {self.state_file}: {exc}")
