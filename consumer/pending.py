"""What the consume loop has polled and not yet committed, and which of it a flush writes now.

Decoded batches are not kept: a batch is summed up (its value count, its oldest and newest
value) when polled, and decoded again from its message when written (see ``LazyBatches``).

Holding back. A flush need not write everything it holds. Given a *cutoff* (a time no backfill
partition still being read is behind: see ``TimeAligner.cutoff``), :meth:`Pending.split`
carries to the next flush every backfill batch whose oldest value is at or after it. Those
values would land among rows a later flush brings, so QuestDB would merge them out of order
twice; written later, they go in once, in time order. Real-time batches and poison messages
are never carried. Measured (``bench/e2e.py``, 100 points x 1 year): QuestDB's CPU per row
fell from 1.05-1.21 to 1.00-1.07 s per million rows, the same as a time-ordered direct write
(1.05-1.09), and end to end went from 79-85 % to 87-94 % of that direct write's rate.

Offsets stay safe: a flush stores, per partition, no offset past its first carried message
(``commit_limit``). The messages written after that one are remembered by their offsets alone
(a ``Written`` marker, no payload) among the carried ones, so the flush that writes the carried
messages stores the partition's offset past them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Message

from consumer.decode import Poison
from consumer.latest_cache import Latest, newest_in
from shared.batch import PointBatch

Key = tuple[str, int]


@dataclass
class Pending:
    """Messages polled since the last commit, in poll order (so in offset order per partition)."""

    messages: list[Message | Written] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    """Values per message (0 for a poison), parallel to ``messages``."""
    oldest: list[int | None] = field(default_factory=list)
    """Oldest value (µs) of each message that may be held back, else None; parallel to
    ``messages``."""
    batch_messages: list[Message] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    newest: list[Latest | None] = field(default_factory=list)
    poisons: list[Poison] = field(default_factory=list)
    values: int = 0
    size: int = 0
    since: float | None = None
    """When the oldest message still pending was polled (carried messages keep theirs)."""
    dead_lettered: set[tuple[str, int, int]] = field(default_factory=set)
    """Messages already acknowledged by the DLQ: a retried write does not send them again."""
    commit_limit: dict[Key, int] = field(default_factory=dict)
    """Per partition, the offset a flush of these messages stores at most (its first message
    carried to the next flush)."""
    _scan: tuple[int | None, int, int, int] = field(
        default=(None, 0, 0, 0), repr=False, compare=False
    )
    """``writable``'s memo: (cutoff, messages scanned, writable values, writable messages)."""

    def add(
        self,
        message: Message,
        decoded: PointBatch | Poison,
        now: float,
        oldest: int | None = None,
    ) -> None:
        """Take ``message``; ``oldest`` (its oldest value, µs) if it may be held back."""
        self.messages.append(message)
        self.size += len(message.value() or b"")
        if self.since is None:
            self.since = now
        if isinstance(decoded, Poison):
            self.poisons.append(decoded)
            self.counts.append(0)
            self.oldest.append(None)
        else:
            self.batch_messages.append(message)
            self.lengths.append(len(decoded))
            self.newest.append(newest_in(decoded))
            self.values += len(decoded)
            self.counts.append(len(decoded))
            self.oldest.append(oldest)

    @staticmethod
    def concat(first: Pending, second: Pending) -> Pending:
        """``first``'s messages followed by ``second``'s (offsets stay in order). No commit
        limit: ``second`` holds the messages ``first``'s limit stood for (a flush that could
        not be written goes back in front of what it held back)."""
        since = [s for s in (first.since, second.since) if s is not None]
        return Pending(
            messages=first.messages + second.messages,
            counts=first.counts + second.counts,
            oldest=first.oldest + second.oldest,
            batch_messages=first.batch_messages + second.batch_messages,
            lengths=first.lengths + second.lengths,
            newest=first.newest + second.newest,
            poisons=first.poisons + second.poisons,
            values=first.values + second.values,
            size=first.size + second.size,
            since=min(since) if since else None,
            dead_lettered=first.dead_lettered | second.dead_lettered,
        )

    def keep_only(self, keep: Callable[[Message | Written], bool]) -> None:
        """Drop the messages of partitions we no longer own (their new owner re-reads them)."""
        self.__dict__.update(self._select({id(m) for m in self.messages if keep(m)}).__dict__)

    def writable(self, cutoff: int) -> tuple[int, int]:
        """(values, messages) a flush at ``cutoff`` would write now (see :meth:`split`).

        Cheap when called after every message: the scan resumes where it stopped until the
        cutoff moves."""
        at, scanned, values, messages = self._scan
        if at != cutoff or scanned > len(self.messages):
            scanned, values, messages = 0, 0, 0
        for i in range(scanned, len(self.messages)):
            if not self._held(i, cutoff) and not isinstance(self.messages[i], Written):
                values += self.counts[i]
                messages += 1
        self._scan = (cutoff, len(self.messages), values, messages)
        return values, messages

    def cutoff_freeing(self, values: int) -> int | None:
        """The lowest cutoff at which a flush would write at least ``values`` values (the
        oldest batches first); None if that takes writing everything."""
        freed = sum(c for c, o in zip(self.counts, self.oldest, strict=True) if o is None)
        last: int | None = None
        for oldest, count in sorted(
            (o, c) for c, o in zip(self.counts, self.oldest, strict=True) if o is not None
        ):
            if freed >= values and (last is None or oldest > last):
                return oldest
            freed, last = freed + count, oldest
        return None

    def split(self, cutoff: int) -> tuple[Pending, Pending]:
        """(what to write now, what to carry to the next flush), by the module's rules."""
        held = [self._held(i, cutoff) for i in range(len(self.messages))]
        first_held: dict[Key, int] = {}
        for message, is_held in zip(self.messages, held, strict=True):
            if is_held:
                first_held.setdefault(_key(message), message.offset() or 0)
        write = self._select({id(m) for m, h in zip(self.messages, held, strict=True) if not h})
        write.commit_limit = first_held
        carry = self._select(
            {id(m) for m, h in zip(self.messages, held, strict=True) if h}, first_held
        )
        return write, carry

    def _held(self, i: int, cutoff: int) -> bool:
        oldest = self.oldest[i]
        return oldest is not None and oldest >= cutoff

    def _select(self, ids: set[int], marks_after: dict[Key, int] | None = None) -> Pending:
        """The messages in ``ids``; with ``marks_after``, also, by their offsets alone, the
        others after a partition's offset there (in offset order either way)."""
        kept = Pending(dead_lettered=self.dead_lettered)
        for message, count, oldest in zip(self.messages, self.counts, self.oldest, strict=True):
            if id(message) in ids:
                kept.messages.append(message)
                kept.counts.append(count)
                kept.oldest.append(oldest)
                kept.size += len(message.value() or b"")
            elif marks_after and (message.offset() or 0) > marks_after.get(_key(message), 1 << 62):
                kept.messages.append(_written(message))
                kept.counts.append(0)
                kept.oldest.append(None)
        for message, length, newest in zip(
            self.batch_messages, self.lengths, self.newest, strict=True
        ):
            if id(message) in ids:
                kept.batch_messages.append(message)
                kept.lengths.append(length)
                kept.newest.append(newest)
                kept.values += length
        kept.poisons = [p for p in self.poisons if id(p.message) in ids]
        kept.since = self.since if kept.messages else None
        kept.commit_limit = self.commit_limit
        return kept


@dataclass(frozen=True)
class Written:
    """A message already written by an earlier flush, kept for its offset only."""

    t: str
    p: int
    o: int

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def value(self) -> bytes:
        return b""


def _written(message: Message | Written) -> Written:
    if isinstance(message, Written):
        return message
    return Written(message.topic() or "", message.partition() or 0, message.offset() or 0)


def _key(message: Message | Written) -> Key:
    return (message.topic() or "", message.partition() or 0)
