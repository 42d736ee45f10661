"""The per-host request budget shared through Redis by every producer process of a fleet."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
import redis

from producer.sources.fleet_ratelimit import FleetRateLimiter, host_rate_limits
from producer.sources.ratelimit import HostRateLimits

pytestmark = pytest.mark.stack
REDIS_URL = "redis://127.0.0.1:6379/0"


def _fleet_limiter(limits: HostRateLimits, host: str, rate: float) -> FleetRateLimiter:
    limiter = limits.for_host(host, rate, burst=1)
    assert isinstance(limiter, FleetRateLimiter)
    return limiter


@pytest.fixture
def prefix(stack: None) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    tag = f"test:{uuid.uuid4().hex[:10]}:ratelimit:"
    yield tag
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{tag}*"):
        client.delete(key)


def test_two_processes_share_one_budget_per_host(prefix: str) -> None:
    """Two registries (as two processes hold, each with its own Redis connection) reserve slots
    on one timeline: never two slots closer than 1/rate, and the second process's first request
    waits for the first's (a budget per process would let both go at once)."""
    rate = 2.0  # one slot every 500 ms: far above any scheduling delay between the calls
    first = _fleet_limiter(host_rate_limits("fleet", REDIS_URL, prefix), "pi.example:443", rate)
    second = _fleet_limiter(host_rate_limits("fleet", REDIS_URL, prefix), "PI.example:443", rate)
    slots: list[int] = []
    waits: list[float] = []
    for limiter in [first, second] * 4:
        wait, slot = limiter.reserve_slot()
        waits.append(wait)
        slots.append(slot)
    assert slots == sorted(slots)
    assert all(b - a >= 500_000 for a, b in itertools.pairwise(slots))
    assert waits[1] > 0.25, "the second process's first request must wait for the first's"
    # another host has a budget of its own
    other = _fleet_limiter(host_rate_limits("fleet", REDIS_URL, prefix), "ace.example", rate)
    assert other.reserve_slot()[0] == 0.0


def test_a_429_in_one_process_pauses_every_process(prefix: str) -> None:
    """Retry-After seen by one process holds back the next request of another for that long."""
    first = _fleet_limiter(host_rate_limits("fleet", REDIS_URL, prefix), "pi.example:443", 50.0)
    second = _fleet_limiter(host_rate_limits("fleet", REDIS_URL, prefix), "pi.example:443", 50.0)
    first.pause(30.0)
    wait, _ = second.reserve_slot()
    assert 20.0 < wait <= 30.0


def test_without_redis_the_process_budget_still_holds(prefix: str) -> None:
    """Redis unreachable: requests are limited by the process-local budget, not unlimited."""
    limits = host_rate_limits("fleet", "redis://127.0.0.1:1/0", prefix)
    limiter = _fleet_limiter(limits, "pi.example:443", 2.0)
    waits = [limiter.reserve() for _ in range(3)]
    assert waits[0] == 0.0
    assert waits[2] > 0.5
    limiter.pause(5.0)  # must not raise either


def test_process_scope_keeps_the_budget_in_memory(prefix: str) -> None:
    """SOURCE_RATE_LIMIT_SCOPE=process: the limiter is the local one, no Redis involved."""
    limiter = host_rate_limits("process", "redis://127.0.0.1:1/0", prefix).for_host("h", 5.0)
    assert not isinstance(limiter, FleetRateLimiter)
