"""The ``tickstream`` command as a new user meets it: ``--version``, ``--help``, ``token``, and the
running stack's settings (``.state/stack.json``) found by ``publish``, ``tail`` and ``token``.

Every command runs in a subprocess, in a temporary folder, with the settings a developer may
have exported scrubbed; a "running stack" is this test process itself writing the stack file
(:func:`tickstream.stackfile.write` records the writer's PID and start time).
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.auth import Authenticator, AuthError, Principal
from gateway.settings import GatewaySettings
from shared.errors import ConfigError
from shared.settings import from_args
from tests.stack.support import ROOT
from tests.support.redis_server import RedisServer, free_port
from tickstream import stackfile
from tickstream.cli import COMMANDS

SECRET = "test-secret-0123456789-abcdefghijklmnop"


def clean_env(**extra: str) -> dict[str, str]:
    drop = ("REDIS_URL", "KEY_PREFIX", "JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_PRIVATE_KEY",
            "JWT_AUDIENCE", "JWT_ISSUER", "PUBLISH_RETRY_TIMEOUT")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("TICKSTREAM_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**env, **extra}


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tickstream.cli", *args], cwd=cwd,
                          env=clean_env() if env is None else env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def verifier(**settings: str) -> Authenticator:
    return Authenticator(from_args(GatewaySettings, None, environ=settings))


def check_token(result: subprocess.CompletedProcess[str], auth: Authenticator) -> Principal:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # only the token on stdout
    return auth.verify(lines[0])


# -- --version and --help --------------------------------------------------------------------------


def test_version_prints_the_version_and_exits_0(tmp_path: Path) -> None:
    result = cli("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"tickstream {version('tickstream')}\n"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_each_default_once_and_no_variable_as_placeholder(tmp_path: Path, command: str) -> None:
    result = cli(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    options = re.split(r"\n(?=  -)", text.split("options:", 1)[1])
    for option in options:
        flat = " ".join(option.split())
        assert flat.count("default") <= 1, flat
        assert "(default: )" not in flat, flat
    # Placeholders name a kind of value (URL, DURATION, N ...); variables appear as [env NAME].
    placeholders = re.findall(r"(--[a-z][a-z0-9-]*) ([A-Z][A-Z0-9_]*)\b", text)
    for flag, placeholder in placeholders:
        assert "_" not in placeholder, (flag, placeholder)


def test_gateway_help_fixed_texts(tmp_path: Path) -> None:
    text = " ".join(cli("gateway", "--help", cwd=tmp_path).stdout.split("options:", 1)[1].split())
    assert "--node NODE this process's node id (default: host-pid-random) [env NODE_ID]" in text
    assert "--idempotency-window DURATION" in text and "(default: 1d)" in text
    assert "--slow-client-max-bytes SIZE" in text and "(default: 4MiB)" in text
    replay = text.split("--replay-max-events N", 1)[1].split("--replay-page", 1)[0]
    assert "4008" in replay and "recovered:false" not in replay


# -- tickstream token ------------------------------------------------------------------------------


def test_token_is_accepted_by_a_gateway_with_the_same_secret(tmp_path: Path) -> None:
    before = time.time()
    result = cli("token", "alice", "--role", "publisher", "--role", "admin", "--ttl", "15m",
                 cwd=tmp_path, env=clean_env(JWT_SECRET=SECRET))
    principal = check_token(result, verifier(JWT_SECRET=SECRET))
    assert principal.user == "alice" and principal.roles == {"publisher", "admin"}
    assert principal.expires_at is not None
    assert before + 900 - 2 <= principal.expires_at <= time.time() + 900 + 2
    assert result.stderr == ""
    with pytest.raises(AuthError, match="Signature verification failed"):
        verifier(JWT_SECRET=SECRET + "x").verify(result.stdout.strip())


def test_token_carries_audience_and_issuer_when_the_gateways_require_them(tmp_path: Path) -> None:
    claims = {"JWT_AUDIENCE": "tickstream-demo", "JWT_ISSUER": "ops"}
    result = cli("token", "bob", cwd=tmp_path, env=clean_env(JWT_SECRET=SECRET, **claims))
    principal = check_token(result, verifier(JWT_SECRET=SECRET, **claims))
    assert principal.user == "bob" and principal.roles == frozenset()


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_token_with_a_private_key_is_accepted_with_its_public_key(tmp_path: Path, kind: str) -> None:
    key = rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    result = cli("token", "carol", "--role", "publisher", "--jwt-private-key", f"@{tmp_path / 'key.pem'}",
                 cwd=tmp_path)
    principal = check_token(result, verifier(JWT_PUBLIC_KEY=public))
    assert principal.user == "carol" and principal.roles == {"publisher"}


@pytest.mark.parametrize(("args", "message"), [
    (["alice", "--ttl", "0s"], "--ttl: expected a whole number and a unit"),
    (["alice", "--ttl", "1.5h"], "--ttl: expected a whole number and a unit"),
    (["alice", "--ttl", "1h "], "--ttl: expected a whole number and a unit"),
    (["alice", "--ttl", "forever"], "--ttl: expected a whole number and a unit"),
    (["alice", "--ttl", "366d"], "--ttl: at most 365d"),
    ([""], "SUB: a user id of 1 to 256 characters"),
    (["al\nice"], "SUB: a user id of 1 to 256 characters"),
    (["x" * 257], "SUB: a user id of 1 to 256 characters"),
    (["alice", "--role", "no spaces"], "--role 'no spaces': 1 to 64 letters"),
])
def test_token_bad_arguments_are_one_line_and_status_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = cli("token", *args, cwd=tmp_path, env=clean_env(JWT_SECRET=SECRET))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"tickstream token: configuration error: {message}"), result.stderr


def test_token_without_a_key_says_how_to_get_one(tmp_path: Path) -> None:
    result = cli("token", "alice", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("tickstream token: configuration error: no signing key: set JWT_SECRET "
                             "(HS256) or JWT_PRIVATE_KEY (RS256/ES256), or start `tickstream up` in "
                             "this folder (it keeps one in .state)\n")
    both = cli("token", "alice", cwd=tmp_path, env=clean_env(JWT_SECRET=SECRET, JWT_PRIVATE_KEY="x"))
    assert both.returncode == 2
    assert both.stderr == ("tickstream token: configuration error: set JWT_SECRET or JWT_PRIVATE_KEY, "
                           "not both\n")


# -- the running stack's settings ------------------------------------------------------------------


def fake_stack(folder: Path, **settings: str) -> Path:
    """A stack file as a live ``up`` writes it (this test process stands for ``up``)."""
    state = folder / ".state"
    state.mkdir(exist_ok=True)
    return stackfile.write(state, settings)


def make_stale(path: Path) -> None:
    data = json.loads(path.read_text())
    data["start_time"] = "1"  # the same PID, another process: a PID reused after `up` died
    path.write_text(json.dumps(data))


def test_the_kept_secret_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = stackfile.keep_secret(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = stackfile.read_secret(path)
    assert len(secret) >= 32
    assert stackfile.keep_secret(tmp_path) == path and stackfile.read_secret(path) == secret
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="does not hold a JWT secret"):
        stackfile.keep_secret(tmp_path)


def test_token_uses_the_running_stacks_secret_and_says_so(tmp_path: Path) -> None:
    secret_file = stackfile.keep_secret(tmp_path)
    stack_file = fake_stack(tmp_path, JWT_SECRET=str(secret_file))
    assert stat.S_IMODE(stack_file.stat().st_mode) == 0o600
    result = cli("token", "alice", cwd=tmp_path)
    check_token(result, verifier(JWT_SECRET=stackfile.read_secret(secret_file)))
    assert result.stderr == (f"tickstream token: using the running `tickstream up` (pid {os.getpid()}, "
                             f"{stack_file}): JWT_SECRET from {secret_file}\n")
    # JWT_SECRET given: the stack is not consulted.
    given = cli("token", "alice", cwd=tmp_path, env=clean_env(JWT_SECRET=SECRET))
    check_token(given, verifier(JWT_SECRET=SECRET))
    assert given.stderr == ""
    # A stale file (its `up` is gone) is ignored.
    make_stale(stack_file)
    stale = cli("token", "alice", cwd=tmp_path)
    assert stale.returncode == 2 and "no signing key" in stale.stderr


def test_publish_finds_the_running_stacks_redis_unless_redis_url_is_set(
        tmp_path: Path, redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    stack_file = fake_stack(tmp_path, REDIS_URL=redis_server.url)
    result = cli("publish", "cli_test", '{"n":1}', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    offset = result.stdout.strip()
    assert re.fullmatch(r"\d+-\d+", offset)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(  # type: ignore[assignment]
        "tickstream:{cli_test}:stream")
    assert [entry_id.decode() for entry_id, _ in entries] == [offset]
    assert result.stderr == (f"tickstream publish: using the running `tickstream up` (pid {os.getpid()}, "
                             f"{stack_file}): REDIS_URL={redis_server.url}\n")
    # REDIS_URL wins over the stack file (which now names a port where nothing listens).
    fake_stack(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    given = cli("publish", "cli_test", '{"n":2}', cwd=tmp_path, env=clean_env(REDIS_URL=redis_server.url))
    assert given.returncode == 0 and given.stderr == "", given.stderr
    assert client.xlen("tickstream:{cli_test}:stream") == 2
    client.close()


def test_publish_without_redis_says_where_it_looked(tmp_path: Path) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 6379)) == 0:
            pytest.skip("something listens on the default Redis port 6379")
    stack_file = fake_stack(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    make_stale(stack_file)
    env = clean_env(PUBLISH_RETRY_TIMEOUT="0.2s", LOG_LEVEL="CRITICAL")
    result = cli("publish", "cli_test", "{}", cwd=tmp_path, env=env)
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("tickstream publish: Redis at redis://127.0.0.1:6379/0 unreachable"), result.stderr
    assert last.endswith(f"(REDIS_URL is not set and no `tickstream up` is running with the state "
                         f"folder {tmp_path / '.state'}: set REDIS_URL, or run this in the folder of "
                         "`make demo`)"), result.stderr


def test_tail_takes_the_url_of_the_running_stack_unless_given(tmp_path: Path) -> None:
    # A URL tail refuses shows, without any network, which one it took.
    fake_stack(tmp_path, TICKSTREAM_URL="http://from-the-stack/ws")
    taken = cli("tail", "price_update", cwd=tmp_path)
    assert taken.returncode == 2
    assert "'http://from-the-stack/ws' is not a ws:// or wss:// URL" in taken.stderr
    assert taken.stderr.startswith("tickstream tail: using the running `tickstream up`")
    given = cli("tail", "price_update", "--url", "http://given/ws", cwd=tmp_path)
    assert given.returncode == 2 and given.stderr.count("\n") == 1
    assert "'http://given/ws' is not a ws:// or wss:// URL" in given.stderr
    env = cli("tail", "price_update", cwd=tmp_path, env=clean_env(TICKSTREAM_URL="http://env/ws"))
    assert env.returncode == 2 and "'http://env/ws'" in env.stderr and "running" not in env.stderr
