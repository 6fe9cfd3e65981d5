"""The client's settings, checked once when it is created."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.client.wire import MAX_BATCH_MS

Format = Literal["json", "msgpack"]


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """See :func:`shared.client.connect` for what each one means."""

    format: Format = "json"
    batch: bool = False
    batch_ms: int | None = None
    queue_size: int = 10_000
    heartbeat_timeout: float = 10.0
    ping_interval: float = 15.0
    open_timeout: float = 10.0
    reconnect_base: float = 0.5
    reconnect_cap: float = 30.0
    stable_after: float = 30.0
    max_auth_failures: int = 3
    origin: str | None = None

    def __post_init__(self) -> None:
        if self.format not in ("json", "msgpack"):
            raise ValueError(f"format must be 'json' or 'msgpack', not {self.format!r}")
        if self.batch_ms is not None and not 0 <= self.batch_ms <= MAX_BATCH_MS:
            raise ValueError(f"batch_ms must be from 0 to {MAX_BATCH_MS}")
        if self.queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        for name in ("heartbeat_timeout", "ping_interval", "open_timeout", "reconnect_base",
                     "reconnect_cap"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.reconnect_cap < self.reconnect_base:
            raise ValueError("reconnect_cap must be at least reconnect_base")
        if self.max_auth_failures < 1:
            raise ValueError("max_auth_failures must be at least 1")
