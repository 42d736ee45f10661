"""Time-aligned consumption of the backfill partitions: which ones to pause so all move together.

Why. A backfill request lands in Kafka much faster than QuestDB takes it, so the consumer
decides the order in which history reaches QuestDB. Left alone, it reads every backfill
partition at the same pace in bytes, and partitions holding fewer points run through time
faster: a partition with 5 points is months ahead of one with 13 after a while. Each flush then
spans months, and QuestDB merges its rows into partitions it wrote long before (out-of-order
commits, rewriting those partitions): measured, about 25 % more of its CPU per row than the
same data written window by window.

The rule. Each backfill partition's *position* is the newest timestamp of the last message
read from it. A message that would take its partition more than ``window`` ahead of the
slowest other partition is not taken (:meth:`TimeAligner.admit`): the loop puts it back (seeks
its partition to it) and pauses the partition, which resumes once the slowest has come within
``window`` of that message. Checking message by message matters: one fetch brings several
messages of a partition, often several windows of it. So every flush covers about one window
of time plus the span of one message.

What counts as the slowest. Only partitions that can still deliver: a partition whose end was
reached (Kafka's partition-EOF event), or that delivered nothing for ``idle_s`` while not
paused, is *idle* and does not hold the others back until it delivers again. A partition not
read yet has no position and neither holds back nor is held. The slowest partition is never
paused (it is within ``window`` of itself), so some partition always reads: no deadlock.
Paused partitions are never idle (they are not asked for data); partitions the loop holds for
its own reasons (real-time first, a rate cap) are given as ``held`` and count as paused.

The real-time topic is never given to this class: live values are never held back by it.
Pure logic (no Kafka, no clock of its own), so it is unit-tested without I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Key = tuple[str, int]


@dataclass
class TimeAligner:
    """Tracks backfill partitions' positions and says which to pause (see the module doc)."""

    window_us: int
    idle_s: float = 2.0
    _position: dict[Key, int] = field(default_factory=dict)
    _oldest: dict[Key, int] = field(default_factory=dict)
    _active_at: dict[Key, float] = field(default_factory=dict)
    _at_end: set[Key] = field(default_factory=set)
    _paused: set[Key] = field(default_factory=set)

    def observe(
        self, key: Key, newest_ts_us: int, now: float, oldest_ts_us: int | None = None
    ) -> None:
        """A message of ``key`` was read; its newest value is at ``newest_ts_us``."""
        self._position[key] = newest_ts_us
        self._oldest[key] = newest_ts_us if oldest_ts_us is None else oldest_ts_us
        self._active_at[key] = now
        self._at_end.discard(key)

    def admit(
        self, key: Key, newest_ts_us: int, now: float, oldest_ts_us: int | None = None
    ) -> bool:
        """Whether a message of ``key`` reaching ``newest_ts_us`` may be taken now. No when it
        would run more than ``window`` ahead of every other partition that can deliver: then
        ``key`` counts as paused at that position (the caller puts the message back and pauses
        the partition) until the slowest comes within ``window`` of it."""
        others = [
            pos
            for other, pos in self._position.items()
            if other != key and self._can_deliver(other, now, frozenset())
        ]
        if others and newest_ts_us > min(others) + self.window_us:
            self._position[key] = newest_ts_us
            self._active_at[key] = now
            self._at_end.discard(key)
            self._paused.add(key)
            return False
        self.observe(key, newest_ts_us, now, oldest_ts_us)
        return True

    def reached_end(self, key: Key) -> None:
        """Kafka said ``key`` has nothing more to read for now (partition EOF)."""
        self._at_end.add(key)

    def forget(self, keys: Iterable[Key]) -> None:
        """Partitions revoked or lost: another member reads them now."""
        for key in keys:
            self._position.pop(key, None)
            self._oldest.pop(key, None)
            self._active_at.pop(key, None)
            self._at_end.discard(key)
            self._paused.discard(key)

    def slowest(self, now: float, held: frozenset[Key] = frozenset()) -> int | None:
        """The smallest position among partitions that can still deliver, if any."""
        live = [pos for key, pos in self._position.items() if self._can_deliver(key, now, held)]
        return min(live) if live else None

    def cutoff(self, now: float, held: frozenset[Key] = frozenset()) -> int | None:
        """A time no partition that can still deliver is behind: the smallest oldest value of
        the last message taken from each. Data at or after it may yet be joined by older data
        of the slowest partitions; data before it, as far as their order goes, is complete.
        None when no partition can deliver (all drained or idle)."""
        live = [
            self._oldest[key]
            for key in self._position
            if key in self._oldest and self._can_deliver(key, now, held)
        ]
        return min(live) if live else None

    def to_pause(self, now: float, held: frozenset[Key] = frozenset()) -> frozenset[Key]:
        """The partitions to keep paused now; call often (it is cheap). A partition leaving
        the paused set starts a fresh idle clock, so it has ``idle_s`` to deliver."""
        for key in held | self._paused:  # not asked for data: their idle clocks stand still
            if key in self._active_at:
                self._active_at[key] = now
        slowest = self.slowest(now, held)
        if slowest is None:
            ahead: set[Key] = set()
        else:
            limit = slowest + self.window_us
            ahead = {key for key, pos in self._position.items() if pos > limit}
        for key in self._paused - ahead:
            self._active_at[key] = now  # resumed now: judged idle only after idle_s
        self._paused = ahead
        return frozenset(ahead)

    def _can_deliver(self, key: Key, now: float, held: frozenset[Key]) -> bool:
        if key in self._at_end:
            return False
        if key in self._paused or key in held:
            return True
        return now - self._active_at.get(key, now) <= self.idle_s
