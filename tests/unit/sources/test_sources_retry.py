"""Retries: exponential backoff with jitter, Retry-After honoured, only retriable errors retried."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from producer.sources.errors import AuthError, RateLimited, ServerError
from producer.sources.retry import RetryPolicy, parse_retry_after, retrying
from tests.unit.sources.sources_fakes import RecordingSleep

pytestmark = pytest.mark.anyio


class Flaky:
    """Fails with the given errors, then answers ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_backoff_doubles_from_one_second_with_jitter_in_the_upper_half() -> None:
    """Retry n waits between half and all of ``1 s * 2**(n-1)``, capped at ``max_delay_s``."""
    policy, rng = RetryPolicy(), random.Random(7)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 30.0)]:
        waits = [policy.backoff(retry, rng) for _ in range(200)]
        assert min(waits) >= ceiling / 2
        assert max(waits) <= ceiling
        assert len(set(waits)) > 100  # jittered, not one fixed value


async def test_retriable_errors_are_retried_until_success(sleep: RecordingSleep) -> None:
    """Two 500s then an answer: three calls, two backoff waits."""
    call = Flaky(ServerError("boom"), ServerError("boom"))
    assert await retrying(call, RetryPolicy(), sleep=sleep, rng=random.Random(1)) == "ok"
    assert call.calls == 3
    assert len(sleep.waits) == 2
    assert 0.5 <= sleep.waits[0] <= 1.0
    assert 1.0 <= sleep.waits[1] <= 2.0


async def test_retry_after_is_waited_exactly(sleep: RecordingSleep) -> None:
    """A 429 with ``Retry-After: 7`` waits 7 s, not the backoff."""
    call = Flaky(RateLimited("slow down", retry_after=7.0))
    assert await retrying(call, RetryPolicy(), sleep=sleep) == "ok"
    assert sleep.waits == [7.0]


async def test_retry_after_is_capped(sleep: RecordingSleep) -> None:
    """An absurd ``Retry-After`` is bounded by ``max_retry_after_s``."""
    call = Flaky(RateLimited("slow down", retry_after=86_400.0))
    await retrying(call, RetryPolicy(max_retry_after_s=60), sleep=sleep)
    assert sleep.waits == [60.0]


async def test_non_retriable_errors_are_raised_at_once(sleep: RecordingSleep) -> None:
    """A 401 is not retried."""
    call = Flaky(AuthError("no"))
    with pytest.raises(AuthError):
        await retrying(call, RetryPolicy(), sleep=sleep)
    assert (call.calls, sleep.waits) == (1, [])


async def test_after_five_attempts_the_last_error_is_raised(sleep: RecordingSleep) -> None:
    """Five 500s in a row: five calls, four waits, then the error."""
    call = Flaky(*[ServerError(f"boom {i}") for i in range(6)])
    with pytest.raises(ServerError, match="boom 4"):
        await retrying(call, RetryPolicy(), sleep=sleep)
    assert (call.calls, len(sleep.waits)) == (5, 4)


def test_retry_after_header_forms() -> None:
    """``Retry-After`` as delta-seconds or as an HTTP date; garbage is ignored."""
    now = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Mon, 01 Jan 2024 00:00:30 GMT", now) == 30.0
    assert parse_retry_after("Sun, 31 Dec 2023 23:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_invalid_policies_are_refused() -> None:
    """Zero attempts or a negative delay is a configuration error."""
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(attempts=0)
