"""Lag in seconds and a drain ETA: what an operator can act on, where messages say little.

1,000 messages behind can be a second of live data or a month of backfill. So, per partition:

    lag_seconds = now - CreateTime of the oldest message the group has not committed

(the message at the committed offset, or at the log start where the group never committed), and
0 where the message lag is 0. It is how long the oldest unread message has been waiting, the
figure Burrow and kminion call time lag; it keeps growing while a stuck consumer reads nothing,
which a span between two message timestamps would not. The timestamps are the producers'
CreateTime (Kafka's default ``message.timestamp.type``): our producers set them when they send.

Reading them costs one fetch per partition whose committed offset moved since the last refresh
and that has lag (a fetch returns at least one record batch, up to a producer's batch size):
:class:`TimestampReader` keeps the last answer per (partition, offset) and fetches nothing for
a caught-up partition.

The drain ETA of a topic is its lag divided by the rate at which the group's committed offsets
advanced over the last ``window`` seconds (:class:`DrainRate`): the time to catch up if the
consumers keep their recent pace and nothing new arrives; ``+Inf`` while the lag is not falling
because nothing is committed.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from shared.kafka_peek import Peeker

log = structlog.get_logger(__name__)

Key = tuple[str, int]

NOTHING_UNREAD = -2
"""What :class:`TimestampReader` answers for a partition whose only records between the offset
and the log end are transaction markers (or aborted data): the backfill topic is written in
transactions, so a group that read everything sits one marker short of the log end, a lag of
1 message that is no lag at all."""


def lag_seconds(lag: int, oldest_unread_ms: int | None, now_s: float) -> float | None:
    """Seconds the oldest unread message has waited; 0 when nothing is unread.

    ``None`` when there is lag but the timestamp is unknown (not read yet, or the broker did
    not answer in time): an unknown is not exported as 0.
    """
    if lag <= 0 or oldest_unread_ms == NOTHING_UNREAD:
        return 0.0
    if oldest_unread_ms is None or oldest_unread_ms < 0:
        return None
    return max(now_s - oldest_unread_ms / 1000.0, 0.0)


class DrainRate:
    """Messages per second the group commits, per topic, over a sliding window; and the ETA."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._window = window_s
        self._clock = clock
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def add(self, consumed: Mapping[str, int]) -> None:
        """Record each topic's total committed position (sum of committed offsets)."""
        now = self._clock()
        for topic, total in consumed.items():
            samples = self._samples.setdefault(topic, deque())
            samples.append((now, total))
            while len(samples) > 2 and now - samples[1][0] >= self._window:
                samples.popleft()

    def rate(self, topic: str) -> float | None:
        """Messages/s committed over the window; None before two samples."""
        samples = self._samples.get(topic)
        if not samples or len(samples) < 2:
            return None
        (t0, c0), (t1, c1) = samples[0], samples[-1]
        if t1 <= t0:
            return None
        return max(c1 - c0, 0) / (t1 - t0)

    def eta(self, topic: str, lag: int) -> float | None:
        """Seconds to drain ``lag`` at the recent rate: 0 with no lag, +Inf with no progress."""
        if lag <= 0:
            return 0.0
        rate = self.rate(topic)
        if rate is None:
            return None
        return lag / rate if rate > 0 else math.inf


class TimestampReader:
    """The CreateTime of the first committed message at an offset, per partition (see
    :class:`shared.kafka_peek.Peeker`), remembered while the offset stays the same."""

    def __init__(self, config: Mapping[str, Any], timeout_s: float = 3.0) -> None:
        self._peeker = Peeker(config, timeout_s)
        self._known: dict[Key, tuple[int, int]] = {}

    def oldest_unread(self, wanted: Mapping[Key, int]) -> dict[Key, int | None]:
        """(topic, partition) -> CreateTime (ms) of the first committed message at or after
        the offset given; :data:`NOTHING_UNREAD` where there is none before the log end; None
        without an answer in time."""
        out: dict[Key, int | None] = {}
        fetch: dict[Key, int] = {}
        for key, offset in wanted.items():
            known = self._known.get(key)
            if known is not None and known[0] == offset:
                out[key] = known[1]  # the first message at an offset stays the first
            else:
                fetch[key] = offset  # "nothing unread" is never kept: new data may follow
        answers = self._peeker.first_visible(fetch)
        for key in fetch:
            if key not in answers:
                out[key] = None  # no answer in time
            else:
                answer = answers[key]
                out[key] = NOTHING_UNREAD if answer is None else answer[1]
        self._known = {
            k: (wanted[k], ts) for k, ts in out.items() if ts is not None and ts != NOTHING_UNREAD
        }
        return out

    def close(self) -> None:
        self._peeker.close()


def time_lags(
    rows: Iterable[Any], reader: TimestampReader | None, now_s: float
) -> dict[Key, float | None]:
    """Seconds of lag per partition for ``consumer.lag.PartitionLag`` rows (see module doc)."""
    rows = list(rows)
    wanted = {
        (r.topic, r.partition): (r.start if r.committed is None else r.committed)
        for r in rows
        if r.lag > 0
    }
    stamps = reader.oldest_unread(wanted) if reader is not None and wanted else {}
    return {
        (r.topic, r.partition): lag_seconds(r.lag, stamps.get((r.topic, r.partition)), now_s)
        for r in rows
    }


def consumed_totals(rows: Iterable[Any]) -> dict[str, int]:
    """Per topic, the sum of the group's committed offsets (the log start where none):
    its increase over time is the group's consumption rate."""
    out: dict[str, int] = {}
    for r in rows:
        out[r.topic] = out.get(r.topic, 0) + (r.start if r.committed is None else r.committed)
    return out


def effective_totals(rows: Iterable[Any], seconds: Mapping[Key, float | None]) -> dict[str, int]:
    """Lag per topic, leaving out partitions whose lag in seconds is 0 (only a transaction
    marker left to read): the drain ETA of a caught-up topic is 0, not "no progress"."""
    out: dict[str, int] = {}
    for r in rows:
        late = seconds.get((r.topic, r.partition))
        out[r.topic] = out.get(r.topic, 0) + (0 if late == 0.0 else r.lag)
    return out
