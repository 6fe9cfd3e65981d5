"""The Binance REST client: request weights, 429/418 with Retry-After, retries with backoff.

Binance counts request *weight* per IP per minute (6000 by default, announced in exchangeInfo)
and reports the total in ``X-MBX-USED-WEIGHT-1M``. A client that goes over gets 429 with
``Retry-After``; one that keeps sending after a 429 is banned (418, from 2 minutes to 3 days).
So:

* every request declares its weight; when the last reported use plus this request would pass
  ``weight_budget`` of the limit, the request waits for the next minute instead of being sent;
* a 429 or 418 stops *every* request of this client until ``Retry-After`` has passed (the ban
  is per IP, not per endpoint), then the request is retried;
* 5xx replies and network failures are retried with full-jitter backoff, ``attempts`` times;
* other 4xx replies raise :class:`RestError` at once (retrying cannot help).

At most ``concurrency`` requests are in flight. The client never sends more than one request
during a Retry-After wait, so it cannot earn a ban by itself.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping

import httpx
import orjson

from ingestor.metrics import IngestorMetrics
from shared.backoff import delays
from shared.errors import TickstreamError

log = logging.getLogger("tickstream.ingestor.rest")

WEIGHT_HEADER = "x-mbx-used-weight-1m"
DEFAULT_WEIGHT_LIMIT = 6000


class RestError(TickstreamError):
    """A REST request failed for good (after retries, or with a 4xx that retrying cannot fix)."""

    code = "rest"

    def __init__(self, message: str, status: int | None = None, api_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.api_code = api_code


def depth_weight(limit: int) -> int:
    """Weight of ``GET /api/v3/depth`` for a ``limit``."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return 60.0  # no usable header: a minute is what Binance's windows are


def _error_of(response: httpx.Response) -> tuple[str, int | None]:
    try:
        body = orjson.loads(response.content)
        return str(body.get("msg", "")), body.get("code")
    except (orjson.JSONDecodeError, AttributeError):
        return response.text[:200], None


class RestClient:
    def __init__(
        self,
        base_url: str,
        metrics: IngestorMetrics,
        *,
        timeout: float = 10.0,
        attempts: int = 5,
        concurrency: int = 8,
        weight_budget: float = 0.9,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.metrics = metrics
        self.attempts = attempts
        self.weight_limit = DEFAULT_WEIGHT_LIMIT
        self.weight_budget = weight_budget
        self.used_weight = 0
        self._used_at = 0.0  # wall-clock second of the last weight report
        self._blocked_until = 0.0  # monotonic: no request before this (429/418)
        self._gate = asyncio.Lock()
        self._slots = asyncio.Semaphore(concurrency)
        self._http = client or httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=concurrency * 2),
            headers={"user-agent": "tickstream-ingestor"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, path: str, params: Mapping[str, str | int] | None, weight: int) -> bytes:
        """GET ``path``; the body of a 200 reply. Raises :class:`RestError`."""
        waits = delays(0.25, 10.0)
        endpoint = path.rsplit("/", 1)[-1]
        last_problem = ""
        for attempt in range(1, self.attempts + 1):
            async with self._slots:
                await self._wait_turn(weight)
                try:
                    response = await self._http.get(self.base_url + path, params=params)
                except httpx.HTTPError as exc:
                    self.metrics.rest_requests.labels(endpoint, "error").inc()
                    last_problem = f"{type(exc).__name__}: {exc}"
                    response = None
            if response is not None:
                self.metrics.rest_requests.labels(endpoint, str(response.status_code)).inc()
                self._note_weight(response)
                status = response.status_code
                if status == 200:
                    return response.content
                message, api_code = _error_of(response)
                if status in (418, 429):
                    self._block(status, _retry_after(response), path)
                    last_problem = f"{status} {message}"
                    continue  # the wait happens in _wait_turn; it does not use up an attempt's delay
                if 400 <= status < 500:
                    raise RestError(f"GET {self.base_url}{path} answered {status}: {message}", status,
                                    api_code)
                last_problem = f"{status} {message}"
            if attempt < self.attempts:
                delay = next(waits)
                log.warning("GET %s failed (%s); retry %d/%d in %.2f s", path, last_problem, attempt,
                            self.attempts - 1, delay)
                await asyncio.sleep(delay)
        raise RestError(f"GET {self.base_url}{path} failed after {self.attempts} attempts: "
                        f"{last_problem}")

    def _block(self, status: int, seconds: float, path: str) -> None:
        self.metrics.rest_rate_limited.labels(str(status)).inc()
        until = time.monotonic() + seconds
        if until > self._blocked_until:
            self._blocked_until = until
        what = "IP banned (418)" if status == 418 else "rate limited (429)"
        log.error("GET %s: %s; no REST request for %.0f s (Retry-After)", path, what, seconds)

    def _note_weight(self, response: httpx.Response) -> None:
        raw = response.headers.get(WEIGHT_HEADER)
        if raw is not None and raw.isdigit():
            self.used_weight = int(raw)
            self._used_at = time.time()

    async def _wait_turn(self, weight: int) -> None:
        """Wait out a Retry-After, and the minute's end when the weight budget is spent."""
        async with self._gate:  # one request at a time decides; the others queue behind it
            while True:
                now = time.monotonic()
                if now < self._blocked_until:
                    await asyncio.sleep(self._blocked_until - now)
                    continue
                wall = time.time()
                same_minute = math.floor(wall / 60) == math.floor(self._used_at / 60)
                used = self.used_weight if same_minute else 0
                if used + weight <= self.weight_limit * self.weight_budget:
                    self.used_weight = used + weight  # count it until the reply says better
                    self._used_at = wall
                    return
                pause = 60.0 - wall % 60 + 0.05
                log.warning("REST weight %d of %d used this minute; waiting %.1f s", used,
                            self.weight_limit, pause)
                await asyncio.sleep(pause)
