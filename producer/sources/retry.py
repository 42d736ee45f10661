"""Retries with exponential backoff and jitter, honouring ``Retry-After``.

Only errors marked ``retriable`` are retried (5 attempts in all, 1 s base, as the backfill seeds
do); the rest go straight to the caller. Sleep and randomness are injected so tests never wait.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import structlog

from shared.errors import SourceError

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to try and how long to wait between tries."""

    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError(f"invalid retry policy {self!r}")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Wait before retry number ``retry`` (1-based): half of ``base * 2**(retry-1)`` (capped)
        plus up to as much again at random, so workers that failed together do not return
        together."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)

    def delay(self, error: SourceError, retry: int, rng: random.Random) -> float:
        """The server's ``Retry-After`` when it gave one (bounded), else :meth:`backoff`."""
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after >= 0:
            return min(float(retry_after), self.max_retry_after_s)
        return self.backoff(retry, rng)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` if absent/invalid."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    what: str = "request",
) -> T:
    """Await ``call()``; on a retriable :class:`SourceError` wait and try again, up to
    ``policy.attempts`` tries in all, then re-raise the last error."""
    chance = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    attempt = 1
    while True:
        try:
            return await call()
        except SourceError as error:
            if not error.retriable or attempt >= policy.attempts:
                raise
            wait = policy.delay(error, attempt, chance)
            log.warning(
                "source_request_retry",
                what=what,
                attempt=attempt,
                attempts=policy.attempts,
                delay_s=round(wait, 3),
                error=str(error),
            )
            await sleep(wait)
            attempt += 1
