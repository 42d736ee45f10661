"""One request-rate budget per historian host, shared by every worker, paused by a 429."""

from __future__ import annotations

import asyncio

import pytest

from producer.sources.ratelimit import HostRateLimits, RateLimiter
from tests.unit.sources.sources_fakes import FakeClock, RecordingSleep


def test_burst_passes_then_requests_are_spaced_at_the_rate() -> None:
    """At 4 req/s with a burst of 2: two go at once, then one every 0.25 s."""
    clock = FakeClock()
    limiter = RateLimiter(4.0, burst=2, clock=clock)
    assert [limiter.reserve() for _ in range(5)] == [0.0, 0.0, 0.25, 0.5, 0.75]


def test_budget_refills_as_time_passes() -> None:
    """After waiting out the reservations the bucket is full again."""
    clock = FakeClock()
    limiter = RateLimiter(2.0, burst=1, clock=clock)
    assert (limiter.reserve(), limiter.reserve()) == (0.0, 0.5)
    clock.now += 10
    assert limiter.reserve() == 0.0


def test_no_rate_means_no_wait_but_pauses_still_hold() -> None:
    """Without a rate nothing waits, except after a server said ``Retry-After``."""
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock)
    assert {limiter.reserve() for _ in range(100)} == {0.0}
    limiter.pause(3.0)
    assert limiter.reserve() == pytest.approx(3.0)
    clock.now += 3.0
    assert limiter.reserve() == 0.0


def test_pause_holds_back_every_worker_of_the_host() -> None:
    """A 429 seen by one worker delays the next request of all of them."""
    clock = FakeClock()
    limiter = HostRateLimits(clock=clock).for_host("pi:443", 10.0)
    limiter.pause(2.0)
    assert limiter.reserve() == pytest.approx(2.0)


def test_hosts_share_one_limiter_and_differ_from_each_other() -> None:
    """Clients of the same host (any case) get the same limiter; other hosts get their own."""
    limits = HostRateLimits()
    first = limits.for_host("PI.example.com:443", 5.0)
    assert limits.for_host("pi.example.com:443", 50.0) is first
    assert first.rate_per_s == 5.0
    assert limits.for_host("ace.example.com", 5.0) is not first


def test_concurrent_workers_are_spread_over_the_budget() -> None:
    """Ten workers acquiring at once wait 0, 0.1, ... 0.9 s at 10 req/s (burst 1)."""
    clock = FakeClock()
    sleep = RecordingSleep()
    limiter = RateLimiter(10.0, burst=1, clock=clock, sleep=sleep)

    async def workers() -> None:
        await asyncio.gather(*(limiter.acquire() for _ in range(10)))

    asyncio.run(workers())
    assert sorted(sleep.waits) == pytest.approx([0.1 * i for i in range(1, 10)])


def test_rate_must_be_positive() -> None:
    """A zero or negative rate is a configuration error."""
    with pytest.raises(ValueError, match="rate_per_s"):
        RateLimiter(0)
