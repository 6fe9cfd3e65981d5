"""``tickstream migrate-keys``: move a deployment's Redis data to the hash-tagged key layout.

Releases before hash tags wrote (default prefix ``tickstream``)::

    tickstream:stream:<type>            ->  tickstream:{<type>}:stream
    tickstream:meta:<type>              ->  tickstream:{<type>}:meta
    tickstream:idem:<type>:<key>        ->  tickstream:{<type>}:idem:<key>
    tickstream:producer:<type>:<id>     ->  deleted
    tickstream:types                        (same name: every moved type is added to it)

Keys are *renamed*, never copied: ``RENAME`` keeps a stream's entries and their ids (the offsets
clients hold stay valid), a meta hash's ``epoch`` (clients resuming are told
``recovered: true``) and an idempotency key's TTL. Nothing is overwritten: a type whose new
stream or meta key already exists is reported as a conflict and left exactly as it was, and the
command exits 1. A type's stream and meta move together, in one script (atomic), with the type
added to the type set first; idempotency keys and producer records follow in pipelined
batches. Every step finds its work with ``SCAN`` from what is still in the old layout, so a run
that was interrupted is finished by running it again, and a second run finds nothing to do.

Producer records are deleted, not moved: they only let a publisher that lost a reply retry
calls *it still has in flight* without writing them twice. Once the publishers are stopped no
call is in flight, a restarted publisher takes a new random producer id (it never reads an old
record), and a record expires 10 minutes after its publisher's last call anyway.

Old-layout names that do not parse (an event type not matching ``[a-z][a-z0-9_]{0,63}``, a name
that is not UTF-8) are reported and left alone; they do not change the exit status.

The publishers must be stopped first (the ingestor, every gateway, which publishes over HTTP
and writes epochs on subscribe, and any service writing to Redis directly), so that nothing
writes the old layout, or the new one, while keys move. The command refuses to start while a
gateway or ingestor health key (``<prefix>:health:...``) is live, unless ``--force``.

Only one server (``redis://``, ``rediss://``, ``unix://``) or a Sentinel-managed primary
(``redis+sentinel://``) can hold the old layout: it could not run on Redis Cluster, so a
``redis+cluster://`` URL is refused (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from shared.settings import CommonSettings, setting

T = TypeVar("T")

HELP = "move Redis data of the layout before hash tags to the new layout (stop publishers first)"

DESCRIPTION = (
    "Rename every key of the Redis layout before hash tags (<prefix>:stream:<type>, "
    "<prefix>:meta:<type>, <prefix>:idem:<type>:<key>) to the hash-tagged layout "
    "(<prefix>:{<type>}:stream, ...), keeping stream entry ids, epochs and TTLs; delete the old "
    "producer retry records; add every moved type to <prefix>:types. Existing keys of the new "
    "layout are never overwritten: such a type is reported as a conflict, left as it was, and "
    "the exit status is 1. Safe to run again, also after an interruption."
)

EPILOG = (
    "STOP THE PUBLISHERS FIRST: the ingestor, every gateway (HTTP publish; a subscribe writes "
    "epochs) and any service writing to Redis directly; start the new release once this "
    "command exits 0. It refuses to run while a gateway or ingestor health key is live, unless "
    "--force. Source: one server (redis://, rediss://, unix://) or redis+sentinel://; a "
    "redis+cluster:// URL is refused. Exit status: 0 done or nothing to do, 1 conflicts (see "
    "the lines on stderr) or Redis unreachable, 2 configuration error, cluster URL, or "
    "components still running. See docs/redis.md, \"Moving from the layout before hash tags\"."
)

# One type's stream and meta hash, moved together (RENAMENX semantics for the pair: if either
# new key exists, nothing moves). KEYS: old stream, new stream, old meta, new meta, type set.
# ARGV: event type, "1" for a dry run (nothing written).
# Reply: {stream state, meta state, 1 if the type is not in the type set yet, XLEN, epoch}
# with states 0 = no old key, 1 = moved (or would move), 2 = the new key exists (conflict),
# 3 = the old key is not of the expected Redis type.
MOVE_SCRIPT = """
local function state(old, new, want)
  local t = redis.call('TYPE', old)['ok']
  if t == 'none' then return 0 end
  if t ~= want then return 3 end
  if redis.call('EXISTS', new) == 1 then return 2 end
  return 1
end
local s = state(KEYS[1], KEYS[2], 'stream')
local m = state(KEYS[3], KEYS[4], 'hash')
local length, epoch = 0, ''
if s == 1 then length = redis.call('XLEN', KEYS[1]) end
if m == 1 then epoch = redis.call('HGET', KEYS[3], 'epoch') or '' end
local missing = 1 - redis.call('SISMEMBER', KEYS[5], ARGV[1])
if s >= 2 or m >= 2 or ARGV[2] == '1' then return {s, m, missing, length, epoch} end
redis.call('SADD', KEYS[5], ARGV[1])
if s == 1 then redis.call('RENAMENX', KEYS[1], KEYS[2]) end
if m == 1 then redis.call('RENAMENX', KEYS[3], KEYS[4]) end
return {s, m, missing, length, epoch}
"""

NO_OLD, MOVED, EXISTS, WRONG_TYPE = 0, 1, 2, 3
SHOWN_PER_KIND = 20  # names printed per kind of problem; the rest are counted


@dataclass(frozen=True, slots=True)
class MigrateKeysSettings(CommonSettings):
    """``REDIS_URL`` and ``KEY_PREFIX`` of the deployment to migrate, and the batch size."""

    batch: int = setting(
        1000, env="MIGRATE_BATCH",
        help="keys asked of each SCAN call, and renamed per pipelined round trip",
    )

    def __post_init__(self) -> None:
        CommonSettings.__post_init__(self)
        if not 1 <= self.batch <= 100_000:
            raise ValueError("MIGRATE_BATCH: expected 1 to 100000")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from shared.settings import add_arguments

    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.add_argument("--dry-run", dest="dry_run", action="store_true",
                        help="print what would be done; write nothing")
    parser.add_argument("--force", action="store_true",
                        help="run although gateway or ingestor health keys are live "
                             "(only when they belong to stopped processes)")
    add_arguments(parser, MigrateKeysSettings)


def run(args: argparse.Namespace) -> int:
    from shared.redisconn import CONNECTION_ERRORS, describe, parse_redis_url
    from shared.settings import from_args
    from shared.topology import SyncTopology

    settings = from_args(MigrateKeysSettings, args)
    url = settings.redis_url.reveal()
    if parse_redis_url(url).kind == "cluster":
        print(f"tickstream migrate-keys: {describe(url)} is a Redis Cluster; the layout before "
              "hash tags never ran on a cluster. Run this command against the single server or "
              "Sentinel-managed primary that holds the old keys (redis://, rediss://, unix:// "
              "or redis+sentinel://), then move the migrated keys to the cluster.",
              file=sys.stderr)
        return 2
    topology = SyncTopology(url, name="tickstream-migrate-keys", socket_timeout=60.0)
    try:
        client = topology.client_for(f"{settings.key_prefix}:types")
        migration = Migration(client, settings.key_prefix, dry_run=args.dry_run,
                              batch=settings.batch)
        running = migration.live_components()
        if running:
            names = ", ".join(running[:SHOWN_PER_KIND])
            if args.dry_run or args.force:
                print(f"tickstream migrate-keys: warning: these look alive (health keys): {names}",
                      file=sys.stderr)
            else:
                print(f"tickstream migrate-keys: stop the publishers first; these look alive "
                      f"(their health keys are live): {names}. Pass --force if they are stopped "
                      "and the keys are stale (they expire within a few heartbeats).",
                      file=sys.stderr)
                return 2
        report = migration.run()
    except CONNECTION_ERRORS as exc:
        print(f"tickstream migrate-keys: Redis at {describe(url)} is not reachable: {exc}",
              file=sys.stderr)
        return 1
    finally:
        topology.close()
    return report.print(sys.stdout, sys.stderr)


# --- the migration ----------------------------------------------------------------------------


@dataclass(slots=True)
class TypeResult:
    """What happened (or, on a dry run, would happen) to one event type."""

    stream_entries: int | None = None  # the stream moved, with this many entries
    epoch: str | None = None  # the meta hash moved, with this epoch ("" if it had none)
    registered: bool = False  # added to the type set
    idempotency_keys: int = 0
    producer_records: int = 0  # deleted
    conflict: str = ""  # why nothing of this type moved
    kept: int = 0  # idempotency keys and producer records not touched because of ``conflict``
    idempotency_conflicts: list[str] = field(default_factory=list)

    def moved(self) -> bool:
        return bool(self.stream_entries is not None or self.epoch is not None
                    or self.idempotency_keys or self.producer_records)


@dataclass(slots=True)
class Report:
    prefix: str
    dry_run: bool
    types: dict[str, TypeResult] = field(default_factory=dict)
    unparsed: list[str] = field(default_factory=list)

    def of(self, event_type: str) -> TypeResult:
        return self.types.setdefault(event_type, TypeResult())

    def conflicts(self) -> int:
        return sum(bool(r.conflict) + len(r.idempotency_conflicts) for r in self.types.values())

    def print(self, out: IO[str], err: IO[str]) -> int:
        """Print one line per type moved, problems on ``err``, a summary; return the exit status."""
        verb = "would move" if self.dry_run else "moved"
        deleted = "would delete" if self.dry_run else "deleted"
        moved = streams = metas = idem = producers = 0
        for name in sorted(self.types):
            r = self.types[name]
            if r.conflict:
                also = f" ({_count(r.kept, 'idempotency or producer key')} kept too)" if r.kept else ""
                print(f"conflict {name}: {r.conflict}; every key of this type is left as it "
                      f"was{also}", file=err)
            for key in r.idempotency_conflicts[:SHOWN_PER_KIND]:
                print(f"conflict {name}: {key} kept: its new-layout name already exists", file=err)
            if len(r.idempotency_conflicts) > SHOWN_PER_KIND:
                print(f"conflict {name}: and {len(r.idempotency_conflicts) - SHOWN_PER_KIND} more "
                      "idempotency keys already in the new layout", file=err)
            if not r.moved():
                continue
            moved += 1
            parts = []
            if r.stream_entries is not None:
                streams += 1
                parts.append(f"stream ({_count(r.stream_entries, 'entry', 'entries')})")
            if r.epoch is not None:
                metas += 1
                parts.append(f"meta (epoch {r.epoch or 'none'})")
            if r.idempotency_keys:
                idem += r.idempotency_keys
                parts.append(_count(r.idempotency_keys, "idempotency key"))
            if r.producer_records:
                producers += r.producer_records
                parts.append(f"{deleted} {_count(r.producer_records, 'producer record')}")
            if r.registered:
                parts.append(f"added to {self.prefix}:types")
            print(f"{verb} {name}: {', '.join(parts)}", file=out)
        for key in self.unparsed[:SHOWN_PER_KIND]:
            print(f"left alone: {key} (not an old-layout name: the event type must match "
                  "[a-z][a-z0-9_]{0,63})", file=err)
        if len(self.unparsed) > SHOWN_PER_KIND:
            print(f"left alone: and {len(self.unparsed) - SHOWN_PER_KIND} more", file=err)
        conflicts = self.conflicts()
        head = "tickstream migrate-keys" + (" (dry run, nothing written)" if self.dry_run else "")
        if moved == 0 and conflicts == 0:
            summary = (f"{head}: nothing to do: no keys of the layout before hash tags under "
                       f"prefix {self.prefix!r}")
        else:
            summary = (f"{head}: {_count(moved, 'type')} {verb} ({_count(streams, 'stream')}, "
                       f"{_count(metas, 'meta hash', 'meta hashes')}, "
                       f"{_count(idem, 'idempotency key')}; {deleted} "
                       f"{_count(producers, 'producer record')}); {_count(conflicts, 'conflict')}")
        if self.unparsed:
            summary += f"; {_count(len(self.unparsed), 'key')} left alone"
        print(summary, file=out)
        return 1 if conflicts else 0


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _show(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


class Migration:
    """One run over one Redis server (``client``: a plain, non-cluster ``redis.Redis``)."""

    def __init__(self, client: Any, prefix: str, *, dry_run: bool = False, batch: int = 1000) -> None:
        from shared.events import EVENT_TYPE_RE
        from shared.keys import Keys

        self.client = client
        self.keys = Keys(prefix)
        self.prefix = prefix
        self.dry_run = dry_run
        self.batch = batch
        self._type_re = EVENT_TYPE_RE
        self.report = Report(prefix, dry_run)
        self._registered: set[str] = set()

    # -- names --

    def _old(self, kind: str) -> bytes:
        return f"{self.prefix}:{kind}:".encode()

    def _scan(self, kind: str) -> Iterator[bytes]:
        pattern = _glob_escape(f"{self.prefix}:{kind}:") + "*"
        for key in self.client.scan_iter(match=pattern, count=self.batch):
            yield bytes(key)

    def _event_type(self, raw: bytes) -> str | None:
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            return None
        return name if self._type_re.fullmatch(name) else None

    def _split(self, key: bytes, kind: str) -> tuple[str, bytes] | None:
        """``<prefix>:<kind>:<type>:<rest>`` -> (type, rest), or None (reported)."""
        raw_type, sep, rest = key[len(self._old(kind)):].partition(b":")
        event_type = self._event_type(raw_type)
        if event_type is None or not sep or not rest:
            self.report.unparsed.append(_show(key))
            return None
        return event_type, rest

    # -- steps --

    def live_components(self) -> list[str]:
        """Gateways and ingestors whose health key is live (they delete it when they stop)."""
        found = []
        for component in ("ingestor", "gateway"):
            pattern = _glob_escape(f"{self.prefix}:health:{component}:") + "*"
            for key in self.client.scan_iter(match=pattern, count=self.batch):
                found.append(f"{component} {_show(bytes(key)).rsplit(':', 1)[-1]}")
        return sorted(found)

    def run(self) -> Report:
        self._streams_and_meta()
        self._idempotency_keys()
        self._producer_records()
        return self.report

    def _streams_and_meta(self) -> None:
        found: set[str] = set()
        for kind in ("stream", "meta"):
            for key in self._scan(kind):
                event_type = self._event_type(key[len(self._old(kind)):])
                if event_type is None:
                    self.report.unparsed.append(_show(key))
                else:
                    found.add(event_type)
        script = self.client.register_script(MOVE_SCRIPT)
        k = self.keys
        for event_type in sorted(found):
            reply = script(
                keys=[k.legacy_stream(event_type), k.stream(event_type),
                      k.legacy_meta(event_type), k.meta(event_type), k.types()],
                args=[event_type, "1" if self.dry_run else "0"])
            stream_state, meta_state, missing, length, epoch = reply
            result = self.report.of(event_type)
            problems = []
            for state, old, new, what in ((stream_state, k.legacy_stream(event_type),
                                           k.stream(event_type), "a stream"),
                                          (meta_state, k.legacy_meta(event_type),
                                           k.meta(event_type), "a hash")):
                if state == EXISTS:
                    problems.append(f"{new} already exists")
                elif state == WRONG_TYPE:
                    problems.append(f"{old} is not {what}")
            if problems:
                result.conflict = "; ".join(problems)
                continue
            self._registered.add(event_type)
            result.registered = bool(missing)
            if stream_state == MOVED:
                result.stream_entries = int(length)
            if meta_state == MOVED:
                result.epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)

    def _skipped(self, event_type: str) -> bool:
        result = self.report.types.get(event_type)
        if result is not None and result.conflict:
            result.kept += 1
            return True
        return False

    def _idempotency_keys(self) -> None:
        from redis.exceptions import ResponseError

        for chunk in _batched(self._scan("idem"), self.batch):
            moves: list[tuple[str, bytes, bytes]] = []
            for key in chunk:
                parsed = self._split(key, "idem")
                if parsed is None or self._skipped(parsed[0]):
                    continue
                event_type, name = parsed
                moves.append((event_type, key, self.keys.idempotency(event_type, "").encode() + name))
            if not moves:
                continue
            new_types = sorted({t for t, _, _ in moves} - self._registered)
            with self.client.pipeline(transaction=False) as pipe:
                for event_type in new_types:  # before the keys move: an interrupted run stays whole
                    pipe.sismember(self.keys.types(), event_type)
                    if not self.dry_run:
                        pipe.sadd(self.keys.types(), event_type)
                for _, old, new in moves:
                    if self.dry_run:
                        pipe.exists(new)
                    else:
                        pipe.renamenx(old, new)
                replies = pipe.execute(raise_on_error=False)
            step = 1 if self.dry_run else 2
            for index, event_type in enumerate(new_types):
                self._registered.add(event_type)
                if not replies[index * step]:
                    self.report.of(event_type).registered = True
            for (event_type, old, _), reply in zip(moves, replies[len(new_types) * step:], strict=True):
                result = self.report.of(event_type)
                if isinstance(reply, ResponseError):
                    if "no such key" in str(reply).lower():
                        continue  # expired since the SCAN (or returned twice by it)
                    raise reply
                # RENAMENX: 1 moved, 0 target exists; dry run EXISTS(new): 0 would move, 1 exists.
                if bool(reply) != self.dry_run:
                    result.idempotency_keys += 1
                else:
                    result.idempotency_conflicts.append(_show(old))

    def _producer_records(self) -> None:
        for chunk in _batched(self._scan("producer"), self.batch):
            doomed: list[tuple[str, bytes]] = []
            for key in chunk:
                parsed = self._split(key, "producer")
                if parsed is not None and not self._skipped(parsed[0]):
                    doomed.append((parsed[0], key))
            if not doomed:
                continue
            with self.client.pipeline(transaction=False) as pipe:
                for _, key in doomed:
                    if self.dry_run:
                        pipe.exists(key)
                    else:
                        pipe.delete(key)
                replies = pipe.execute()
            for (event_type, _), gone in zip(doomed, replies, strict=True):
                if gone:
                    self.report.of(event_type).producer_records += 1
