"""The simulator's settings: constructor arguments in Python, flags and environment in the CLI.

Every field is a :func:`shared.settings.setting`, so ``tickstream simulator --help`` lists
them with their environment variable; flags win over the environment, which wins over the
defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from shared.logsetup import checked_log_format, parse_log_format
from shared.settings import parse_duration, setting
from simulator.faults import DROP_MODES
from simulator.symbols import DEFAULT_SYMBOLS, parse_symbols


def _optional_duration(text: str) -> float | None:
    return None if not text.strip() else parse_duration(text)


DEFAULT_PORT = 9443


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    host: str = setting("127.0.0.1", env="HOST", help="interface to bind")
    port: int = setting(
        DEFAULT_PORT, env="PORT", help="TCP port for REST and WebSocket (0 = any free port)"
    )
    symbols: tuple[str, ...] = setting(
        DEFAULT_SYMBOLS, env="SIMULATOR_SYMBOLS", help="comma list of symbols to simulate"
    )
    rate: float = setting(
        50.0, env="SIMULATOR_RATE",
        help="market events (book actions) per second over all symbols; 0 = none",
    )
    seed: int = setting(1, env="SIMULATOR_SEED", help="seed of the market model")
    lifetime: float = setting(
        86400.0, env="SIMULATOR_LIFETIME", parse=parse_duration,
        help="WebSocket connection lifetime before the server closes it (e.g. 24h)",
    )
    ping_interval: float = setting(
        20.0, env="SIMULATOR_PING_INTERVAL", parse=parse_duration,
        help="seconds between server pings (0 = no pings)",
    )
    pong_timeout: float = setting(
        60.0, env="SIMULATOR_PONG_TIMEOUT", parse=parse_duration,
        help="disconnect when a ping's pong has not arrived within this",
    )
    message_rate: int = setting(
        5, env="SIMULATOR_MESSAGE_RATE", help="incoming WebSocket messages allowed per second"
    )
    max_streams: int = setting(
        1024, env="SIMULATOR_MAX_STREAMS", help="streams allowed per connection"
    )
    weight_limit: int = setting(
        6000, env="SIMULATOR_WEIGHT_LIMIT", help="REST request weight allowed per IP per window"
    )
    weight_window: float = setting(
        60.0, env="SIMULATOR_WEIGHT_WINDOW", parse=parse_duration,
        help="length of the REST weight window",
    )
    history: int = setting(
        100_000, env="SIMULATOR_HISTORY", help="trades and aggTrades kept per symbol for REST"
    )
    kline_history: int = setting(
        1500, env="SIMULATOR_KLINE_HISTORY", help="closed klines kept per symbol and interval"
    )
    book_levels: int = setting(
        1000, env="SIMULATOR_BOOK_LEVELS", help="maximum order book levels per side"
    )
    replay: str | None = setting(
        None, env="SIMULATOR_REPLAY", help="replay this JSONL capture instead of the market model"
    )
    replay_speed: float = setting(
        1.0, env="SIMULATOR_REPLAY_SPEED", help="replay speed factor (0 = as fast as possible)"
    )
    replay_autostart: bool = setting(
        True, env="SIMULATOR_REPLAY_AUTOSTART", help="start replaying at start-up"
    )
    faults: str | None = setting(
        None, env="SIMULATOR_FAULTS",
        help="JSON fault spec applied at start (as POST /admin/faults)",
    )
    drop_every: float | None = setting(
        None, env="SIMULATOR_DROP_EVERY", parse=_optional_duration,
        help="drop every connection this often",
    )
    drop_mode: str = setting(
        "reset", env="SIMULATOR_DROP_MODE", help="how --drop-every drops: reset, eof or close"
    )
    silence_every: float | None = setting(
        None, env="SIMULATOR_SILENCE_EVERY", parse=_optional_duration,
        help="go silent this often (for --silence-for)",
    )
    silence_for: float = setting(
        5.0, env="SIMULATOR_SILENCE_FOR", parse=parse_duration,
        help="how long each silence of --silence-every lasts",
    )
    gap_every: float | None = setting(
        None, env="SIMULATOR_GAP_EVERY", parse=_optional_duration,
        help="drop a diff-depth event of a random symbol this often",
    )
    malformed_every: int | None = setting(
        None, env="SIMULATOR_MALFORMED_EVERY",
        help="send a malformed frame after every N good frames",
    )
    rest_fail_rate: float = setting(
        0.0, env="SIMULATOR_REST_FAIL_RATE", help="share of REST requests that fail (0..1)"
    )
    rest_fail_status: int = setting(
        503, env="SIMULATOR_REST_FAIL_STATUS", help="HTTP status of failed REST requests"
    )
    rest_delay_ms: int = setting(
        0, env="SIMULATOR_REST_DELAY_MS", help="delay added to every REST response (ms)"
    )
    shutdown_every: float | None = setting(
        None, env="SIMULATOR_SHUTDOWN_EVERY", parse=_optional_duration,
        help="send serverShutdown (then close) this often",
    )
    log_level: str = setting("INFO", env="LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR")
    log_format: str = setting(
        "text", env="LOG_FORMAT", parse=parse_log_format,
        help="text, or json: one JSON object per line (ts, level, logger, msg, event)",
    )

    def __post_init__(self) -> None:
        parse_symbols(self.symbols)
        if not 0 <= self.port <= 65535:
            raise ValueError("PORT: expected 0..65535")
        checks = {
            "SIMULATOR_RATE": self.rate >= 0,
            "SIMULATOR_LIFETIME": self.lifetime > 0,
            "SIMULATOR_PING_INTERVAL": self.ping_interval >= 0,
            "SIMULATOR_PONG_TIMEOUT": self.pong_timeout > 0,
            "SIMULATOR_MESSAGE_RATE": self.message_rate >= 1,
            "SIMULATOR_MAX_STREAMS": self.max_streams >= 1,
            "SIMULATOR_WEIGHT_LIMIT": self.weight_limit >= 1,
            "SIMULATOR_WEIGHT_WINDOW": self.weight_window > 0,
            "SIMULATOR_HISTORY": self.history >= 1,
            "SIMULATOR_KLINE_HISTORY": self.kline_history >= 1,
            "SIMULATOR_BOOK_LEVELS": self.book_levels >= 20,
            "SIMULATOR_SILENCE_FOR": self.silence_for > 0,
            "SIMULATOR_MALFORMED_EVERY": (
                self.malformed_every is None or self.malformed_every >= 1
            ),
            "SIMULATOR_REST_FAIL_RATE": 0.0 <= self.rest_fail_rate <= 1.0,
            "SIMULATOR_REST_FAIL_STATUS": 400 <= self.rest_fail_status <= 599,
            "SIMULATOR_REST_DELAY_MS": self.rest_delay_ms >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: value out of range")
        for name, every in (
            ("SIMULATOR_DROP_EVERY", self.drop_every),
            ("SIMULATOR_SILENCE_EVERY", self.silence_every),
            ("SIMULATOR_GAP_EVERY", self.gap_every),
            ("SIMULATOR_SHUTDOWN_EVERY", self.shutdown_every),
        ):
            if every is not None and every <= 0:
                raise ValueError(f"{name}: expected a positive duration")
        if self.drop_mode not in DROP_MODES:
            raise ValueError(f"SIMULATOR_DROP_MODE: expected one of {', '.join(DROP_MODES)}")
        if self.replay is not None and not Path(self.replay).is_file():
            raise ValueError(f"SIMULATOR_REPLAY: no such file {self.replay!r}")
        if self.faults is not None:
            try:
                spec = orjson.loads(self.faults)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"SIMULATOR_FAULTS: invalid JSON ({exc})") from None
            if not isinstance(spec, dict):
                raise ValueError("SIMULATOR_FAULTS: expected a JSON object")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"LOG_LEVEL: unknown level {self.log_level!r}")
        object.__setattr__(self, "log_format", checked_log_format(self.log_format))
