"""One request-rate budget per historian host across the whole producer fleet, kept in Redis.

A PI Web API or ACE IoT server limits requests per server, not per client process, so N
producer processes must share one budget. The in-process :class:`~.ratelimit.RateLimiter` is a
reservation form of GCRA; this is the same algorithm with its state (the *theoretical arrival
time* of the next request) in a Redis key, advanced atomically by a Lua script on Redis's own
clock, so every process of every machine reserves slots on one timeline:

``<prefix><host>:tat``
    microseconds (Redis ``TIME``) at which the next request may go, ``burst - 1`` intervals of
    tolerance aside. Expires when idle.
``<prefix><host>:pause``
    microseconds until which the host is paused because a server answered 429 with
    ``Retry-After``: every worker of every process waits it out, not only the one that got it.

If Redis cannot be reached, the request goes through the process-local limiter instead (a
warning is logged): the fleet may then exceed the budget by up to its number of processes, but a
backfill never stops because the cache is down. ``SOURCE_RATE_LIMIT_SCOPE=process`` uses the
local limiter only (no Redis traffic per request).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis
import structlog

from producer.sources.ratelimit import Clock, HostRateLimits, RateLimiter
from producer.sources.retry import Sleep

log = structlog.get_logger(__name__)

# KEYS[1] tat, KEYS[2] pause; ARGV[1] interval us, ARGV[2] tolerance us.
# Returns {wait us, slot us}: the caller sleeps `wait`; `slot` is the reserved moment (Redis clock).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
tat = math.max(tat, now, paused + tolerance)
local nxt = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', nxt),
           'PX', math.max(1000, math.floor((nxt - now) / 1000) + 1000))
local slot = math.max(now, tat - tolerance)
return {string.format('%.0f', slot - now), string.format('%.0f', slot)}
"""

# KEYS[1] pause; ARGV[1] seconds us. Only ever extends a pause.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untl = now + tonumber(ARGV[1])
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > old then
  redis.call('SET', KEYS[1], string.format('%.0f', untl),
             'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1000)
end
return string.format('%.0f', math.max(untl, old))
"""


class FleetRateLimiter:
    """A host's budget shared by every process through Redis; ``local`` when Redis is down."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        host: str,
        rate_per_s: float | None,
        burst: int | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.local = RateLimiter(rate_per_s, burst, clock=clock, sleep=sleep)
        interval = 0.0 if rate_per_s is None else 1.0 / rate_per_s
        size = burst if burst is not None else max(1, int(rate_per_s or 1))
        self._interval_us = round(interval * 1e6)
        self._tolerance_us = round(interval * 1e6 * (max(1, size) - 1))
        self._keys = [f"{prefix}{host}:tat", f"{prefix}{host}:pause"]
        self._reserve: Any = client.register_script(_RESERVE)
        self._pause: Any = client.register_script(_PAUSE)
        self._sleep = sleep
        self._clock = clock
        self._warned_at = float("-inf")

    def reserve_slot(self) -> tuple[float, int]:
        """Take the fleet's next slot for this host: (seconds to wait, slot in Redis µs)."""
        wait_us, slot_us = self._reserve(
            keys=self._keys, args=[self._interval_us, self._tolerance_us]
        )
        return int(wait_us) / 1e6, int(slot_us)

    def reserve(self) -> float:
        """Seconds to wait before the next request: the fleet's slot, the local one if Redis
        is unreachable."""
        try:
            return self.reserve_slot()[0]
        except redis.RedisError as exc:
            self._warn("rate_limit_redis_unavailable", exc)
            return self.local.reserve()

    async def acquire(self, sleep: Sleep | None = None) -> None:
        """Wait for this host's next slot in the fleet's budget."""
        wait = await asyncio.to_thread(self.reserve)
        if wait > 0:
            await (sleep or self._sleep)(wait)

    def pause(self, seconds: float) -> None:
        """Hold every worker of every process back from this host for ``seconds``."""
        self.local.pause(seconds)
        try:
            self._pause(keys=self._keys[1:], args=[round(seconds * 1e6)])
        except redis.RedisError as exc:
            self._warn("rate_limit_pause_not_shared", exc)

    def _warn(self, event: str, exc: Exception) -> None:
        now = self._clock()
        if now - self._warned_at >= 60.0:  # once a minute, not once per request
            self._warned_at = now
            log.warning(event, key=self._keys[0], error=str(exc))


class FleetBudgets:
    """A :class:`~.ratelimit.LimiterFactory`: each host's budget in Redis, one connection pool."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def __call__(
        self, host: str, rate_per_s: float | None, burst: int | None, clock: Clock, sleep: Sleep
    ) -> FleetRateLimiter:
        """The fleet-wide limiter of ``host``."""
        return FleetRateLimiter(
            self.client, self.prefix, host, rate_per_s, burst, clock=clock, sleep=sleep
        )


def host_rate_limits(
    scope: str, redis_url: str, prefix: str, *, sleep: Sleep = asyncio.sleep
) -> HostRateLimits:
    """The registry of host budgets for ``SOURCE_RATE_LIMIT_SCOPE`` (``fleet`` or ``process``)."""
    if scope == "process":
        return HostRateLimits(sleep=sleep)
    client = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    return HostRateLimits(sleep=sleep, factory=FleetBudgets(client, prefix))
