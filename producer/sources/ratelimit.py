"""One request-rate budget per historian host, shared by every worker that talks to it.

The limiter is a reservation form of a token bucket (GCRA): each request reserves the next free
slot and sleeps until it; ``burst`` requests may go back to back. Reserving is plain arithmetic
under a thread lock, never held across an ``await``, so one limiter serves every task and event
loop of the process. A 429 pauses the whole host (:meth:`RateLimiter.pause`), not only the worker
that got it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Protocol

from producer.sources.retry import Sleep

Clock = Callable[[], float]


class Limiter(Protocol):
    """What an HTTP client needs of a host's budget (this module's or the fleet's in Redis)."""

    rate_per_s: float | None

    async def acquire(self, sleep: Sleep | None = None) -> None:
        """Wait for the host's next slot."""

    def pause(self, seconds: float) -> None:
        """Hold every request to the host back for ``seconds``."""


LimiterFactory = Callable[[str, "float | None", "int | None", Clock, Sleep], Limiter]
"""``(host, rate_per_s, burst, clock, sleep) -> Limiter``: where a host's budget lives."""


class RateLimiter:
    """At most ``rate_per_s`` requests a second on average, ``burst`` at once; ``None``: no limit
    (pauses still apply)."""

    def __init__(
        self,
        rate_per_s: float | None,
        burst: int | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate_per_s is not None and rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive or None, got {rate_per_s}")
        self.rate_per_s = rate_per_s
        self._interval = 0.0 if rate_per_s is None else 1.0 / rate_per_s
        size = burst if burst is not None else max(1, int(rate_per_s or 1))
        self._tolerance = self._interval * (max(1, size) - 1)
        self._tat = float("-inf")  # theoretical arrival time of the next request
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take the next slot; the seconds to wait before using it."""
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            self._tat = tat + self._interval
            return max(0.0, tat - self._tolerance - now)

    async def acquire(self, sleep: Sleep | None = None) -> None:
        """Wait for a slot (with the caller's ``sleep`` if given, so tests stay instant)."""
        wait = self.reserve()
        if wait > 0:
            await (sleep or self._sleep)(wait)

    def pause(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` from now (the server said ``Retry-After``)."""
        with self._lock:
            self._tat = max(self._tat, self._clock() + seconds + self._tolerance)


def _local(
    _host: str, rate_per_s: float | None, burst: int | None, clock: Clock, sleep: Sleep
) -> Limiter:
    return RateLimiter(rate_per_s, burst, clock=clock, sleep=sleep)


class HostRateLimits:
    """The limiter of each host; the first caller for a host sets its rate. ``factory`` says
    where a budget lives: this process (default) or the fleet's Redis
    (:class:`producer.sources.fleet_ratelimit.FleetBudgets`)."""

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        factory: LimiterFactory = _local,
    ) -> None:
        self._limiters: dict[str, Limiter] = {}
        self._clock = clock
        self._sleep = sleep
        self._factory = factory
        self._lock = threading.Lock()

    def for_host(self, host: str, rate_per_s: float | None, burst: int | None = None) -> Limiter:
        """The limiter shared by every client of ``host`` (case-insensitive, port included)."""
        key = host.lower()
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = self._factory(key, rate_per_s, burst, self._clock, self._sleep)
                self._limiters[key] = limiter
            return limiter


# The process-wide registry the clients use unless given their own: "one budget per host across
# all concurrent workers" means workers must find the same limiter without being wired together.
SHARED_HOST_LIMITS = HostRateLimits()
