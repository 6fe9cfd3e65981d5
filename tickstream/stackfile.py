"""The running stack's client-facing settings, where every ``tickstream`` command finds them.

``tickstream up`` writes ``<state>/stack.json`` once the stack is ready and removes it on exit:
the ``REDIS_URL``, the gateway's URLs, the JWT secret file it keeps, and the PID and process
start time of ``up`` itself. ``tickstream publish``, ``tail`` and ``token``, when a setting was
given neither by flag nor by environment, take it from that file if the ``up`` that wrote it is
still alive (same PID, same start time: a reused PID does not count), and say so in one line
on stderr. The state folder is ``$TICKSTREAM_STATE``, else ``./.state``, as for ``up``.

The demo's JWT secret lives here too (:func:`keep_secret`): generated once, mode 0600, reused
by each ``up`` on the same state folder so that tokens minted before a restart stay valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from shared.settings import Secret

STACK_FILE = "stack.json"
SECRET_FILE = "jwt_secret"
MAX_FILE_BYTES = 64 * 1024
_SECRET = re.compile(r"[A-Za-z0-9_\-]{32,256}")
_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

STACK_SETTINGS = ("REDIS_URL", "KEY_PREFIX", "TICKSTREAM_URL", "TICKSTREAM_HTTP", "JWT_SECRET",
                  "JWT_AUDIENCE", "JWT_ISSUER")
"""What the file may hold, by variable name (JWT_SECRET as the path of its file)."""


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``up`` keeps its state: ``$TICKSTREAM_STATE``, else ``./.state``."""
    env = os.environ if environ is None else environ
    return Path(env.get("TICKSTREAM_STATE") or Path.cwd() / ".state").expanduser().resolve()


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (``/proc/<pid>/stat`` field 22), None if not running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return fields[19]


def keep_secret(folder: Path) -> Path:
    """``<folder>/jwt_secret``: created once (random, mode 0600), checked on every later run."""
    path = folder / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        read_secret(path)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        return path
    except OSError as exc:
        raise ConfigError(f"TICKSTREAM_STATE: cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return path


def read_secret(path: Path) -> str:
    """The secret in ``path``; ConfigError (one line) when it is missing or not one."""
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_FILE_BYTES).decode("ascii", "replace").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the JWT secret {path}: {exc.strerror}") from None
    if not _SECRET.fullmatch(text):
        raise ConfigError(f"{path} does not hold a JWT secret (32-256 URL-safe characters); "
                          "remove it and restart `tickstream up` to make a new one")
    return text


@dataclass(frozen=True, slots=True)
class Stack:
    """A running ``tickstream up``, as its stack file describes it."""

    path: Path
    pid: int
    settings: dict[str, str]

    def value(self, name: str) -> str | None:
        """The setting ``name``; JWT_SECRET is read from its file."""
        value = self.settings.get(name)
        if value is not None and name == "JWT_SECRET":
            return read_secret(Path(value))
        return value


def write(folder: Path, settings: Mapping[str, str]) -> Path:
    """Write the stack file (mode 0600: it may hold a Redis password) for the running ``up``."""
    unknown = set(settings) - set(STACK_SETTINGS)
    if unknown:
        raise ValueError(f"not stack settings: {', '.join(sorted(unknown))}")
    body = {"pid": os.getpid(), "start_time": _start_time(os.getpid()), "settings": dict(settings)}
    path = folder / STACK_FILE
    tmp = path.with_name(f"{STACK_FILE}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover (or a symlink) must not lend its mode or target
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(body, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def remove(folder: Path) -> None:
    """Remove the stack file if this process wrote it (a newer ``up``'s file stays)."""
    path = folder / STACK_FILE
    with contextlib.suppress(OSError, ValueError, TypeError):
        if json.loads(path.read_text())["pid"] == os.getpid():
            path.unlink()


def find(environ: Mapping[str, str] | None = None) -> Stack | None:
    """The live stack of the state folder, or None (no file, a stale one, or one unreadable)."""
    path = state_dir(environ) / STACK_FILE
    try:
        with path.open("rb") as handle:
            data: Any = json.loads(handle.read(MAX_FILE_BYTES))
        pid, started, settings = int(data["pid"]), data["start_time"], data["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(settings, dict) or started is None or _start_time(pid) != str(started):
        return None
    clean = {k: v for k, v in settings.items()
             if k in STACK_SETTINGS and _NAME.fullmatch(k) and isinstance(v, str)}
    return Stack(path, pid, clean)


def resolve(command: str, wanted: Mapping[str, bool],
            environ: Mapping[str, str] | None = None, announce: bool = True) -> dict[str, str]:
    """Fill settings the user left unset from the live stack; announce it on stderr.

    ``wanted`` maps each variable the command reads to whether the user gave it (by flag or in
    the environment). Returns the values taken from the stack (empty: no stack, or nothing
    missing). Flags and environment always win. ``announce=False``: no line on stderr.
    """
    env = os.environ if environ is None else environ
    missing = [name for name, given in wanted.items() if not given and name not in env]
    if not missing:
        return {}
    stack = find(env)
    if stack is None:
        return {}
    taken: dict[str, str] = {}
    for name in missing:
        value = stack.value(name)
        if value is not None:
            taken[name] = value
    if taken and announce:
        shown = ", ".join(_shown(stack, name, value) for name, value in taken.items())
        print(f"tickstream {command}: using the running `tickstream up` (pid {stack.pid}, "
              f"{stack.path}): {shown}", file=sys.stderr, flush=True)
    return taken


def _shown(stack: Stack, name: str, value: str) -> str:
    if name == "JWT_SECRET":
        return f"JWT_SECRET from {stack.settings[name]}"
    return f"{name}={Secret(value).redacted() if name == 'REDIS_URL' else value}"
