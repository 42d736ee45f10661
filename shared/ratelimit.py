"""A cap on backfill values per second: published (producer) or ingested (consumer).

Real-time data never waits here, so a backfill can be slowed (``PUBLISH_MAX_VALUES_PER_SECOND``
in the producer, ``BACKFILL_MAX_VALUES_PER_SECOND`` in the consumer) without touching the live
stream. The form is a reservation token bucket (GCRA) counted in values with a one-second
burst: a page larger than the burst is allowed and paid for by the pages after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class ValueRateLimit:
    """At most ``rate`` values a second on average (``0``: no limit)."""

    def __init__(
        self,
        rate: float,
        *,
        burst_s: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = rate
        self._burst_s = burst_s
        self._clock = clock
        self._sleep = sleep
        self._tat = float("-inf")  # when the values reserved so far are paid for

    def reserve(self, values: int) -> float:
        """Reserve ``values``; the seconds to wait before publishing them."""
        if self.rate == 0 or values <= 0:
            return 0.0
        now = self._clock()
        start = max(self._tat, now - self._burst_s)
        self._tat = start + values / self.rate
        return max(0.0, start - now)

    def ready_in(self) -> float:
        """Seconds until values may flow again without waiting (0 when under the cap)."""
        if self.rate == 0:
            return 0.0
        return max(0.0, self._tat - self._burst_s - self._clock())

    async def acquire(self, values: int) -> None:
        """Wait until ``values`` may be published."""
        wait = self.reserve(values)
        if wait > 0:
            await self._sleep(wait)
