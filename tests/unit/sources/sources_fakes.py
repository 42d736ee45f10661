"""Test doubles for the source unit tests: time that only moves when told to."""

from __future__ import annotations


class RecordingSleep:
    """An injected ``sleep`` that returns at once and remembers what it was asked to wait."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.waits: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds


class FakeClock:
    """A monotonic clock for rate limiters; advance ``now`` by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
