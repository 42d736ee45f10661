"""The chunk planner: pure functions from a backfill request to its ordered list of chunks.

A request ``[start, end)`` over some points becomes *point groups* (``points_per_request``
points read together, as PI streamsets read them) times *time windows* (``chunk_size`` long;
the last one shorter). The work is ordered **time-major**: every group's window ``k`` comes
before any group's window ``k + 1``. QuestDB partitions by time, so writing the whole fleet's
January before anyone's February keeps its writes in order instead of rewriting partitions.

A window too dense for the memory/transaction bound (``max_values_per_chunk`` at the expected
sampling rate, lowered by :func:`transaction_values_bound` so that a chunk published under
``PUBLISH_MAX_VALUES_PER_SECOND`` commits well inside ``transaction.timeout.ms``) is split into
equal sub-windows; the split is the same for every window, so the
plan stays a plain grid and is reproducible from the request alone (resume relies on that).

Chunk sizes are accepted as the seed's .NET ``TimeSpan`` strings (``"30.00:00:00"``,
``"01:00:00"``), ISO-8601 durations (``"P30D"``, ``"PT1H"``) and CLI shorthand (``"30d"``,
``"1h30m"``). Everything here is integer microseconds, so the edges are exact.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

US_PER_SECOND = 1_000_000
MIN_CHUNK_US = 60 * US_PER_SECOND
"""Below a minute, a chunk costs more in transaction overhead than it carries in data."""

_TIMESPAN = re.compile(
    r"^(?:(?P<days>\d+)\.)?(?P<hours>\d{1,2}):(?P<minutes>\d{1,2})(?::(?P<seconds>\d{1,2})"
    r"(?:\.(?P<fraction>\d{1,7}))?)?$"
)
_ISO = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_SHORT = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>min|w|d|h|m|s)", re.IGNORECASE)
_SHORT_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "min": 60, "s": 1}


class ChunkSizeError(ValueError):
    """A chunk size that is not a TimeSpan, an ISO-8601 duration or shorthand, or too small."""


def parse_chunk_size(text: str) -> timedelta:
    """Parse ``"30.00:00:00"``, ``"01:00:00"``, ``"P30D"``, ``"PT1H"`` or ``"30d"``.

    ISO-8601 years and months are refused: their length depends on the date, and a chunk grid
    must be regular to be resumable.
    """
    raw = text.strip()
    if not raw:
        raise ChunkSizeError("empty chunk size")
    try:
        micros = _parse_micros(raw)
        span = None if micros is None else timedelta(microseconds=micros)
    except OverflowError:  # "99999999999d": past what a timedelta (or a float) holds
        raise ChunkSizeError(f"chunk size {text[:40]!r} is too long") from None
    if micros is None or span is None:
        raise ChunkSizeError(
            f"unparseable chunk size {text!r}: use a TimeSpan like '30.00:00:00' or '01:00:00', "
            "an ISO-8601 duration like 'P30D' or 'PT1H' (no years or months), or '30d'/'1h'"
        )
    if micros < MIN_CHUNK_US:
        raise ChunkSizeError(f"chunk size {text!r} is shorter than the minimum of one minute")
    return span


def _parse_micros(raw: str) -> int | None:
    match = _TIMESPAN.match(raw)
    if match:
        parts = match.groupdict()
        hours, minutes = int(parts["hours"]), int(parts["minutes"])
        seconds = int(parts["seconds"] or 0)
        if hours > 23 or minutes > 59 or seconds > 59:
            return None
        fraction = (parts["fraction"] or "").ljust(7, "0")  # .NET ticks: 100 ns
        whole = ((int(parts["days"] or 0) * 24 + hours) * 60 + minutes) * 60 + seconds
        return whole * US_PER_SECOND + int(fraction) // 10
    match = _ISO.match(raw.upper())
    if match and any(match.groupdict().values()) and not raw.upper().endswith("T"):
        factors = {"weeks": 604_800, "days": 86_400, "hours": 3_600, "minutes": 60, "seconds": 1}
        total = sum(float(v) * factors[k] for k, v in match.groupdict().items() if v)
        return round(total * US_PER_SECOND)
    pieces = list(_SHORT.finditer(raw))
    if pieces and "".join(p.group(0) for p in pieces).replace(" ", "") == raw.replace(" ", ""):
        total = sum(float(p["amount"]) * _SHORT_UNITS[p["unit"].lower()] for p in pieces)
        return round(total * US_PER_SECOND)
    return None


def format_timespan(delta: timedelta) -> str:
    """A duration as a .NET TimeSpan string, the seed's spelling (``30.00:00:00``)."""
    micros = delta // timedelta(microseconds=1)
    seconds, fraction = divmod(micros, US_PER_SECOND)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    if days:
        text = f"{days}.{text}"
    if fraction:
        text += f".{fraction * 10:07d}"
    return text


@dataclass(frozen=True, slots=True)
class Chunk:
    """One unit of work and of checkpointing: a point group over one time window."""

    index: int
    """Position in the time-major order; also the ``chunk_index`` of the data it publishes."""
    window_index: int
    group_index: int
    start_us: int
    end_us: int
    points: tuple[str, ...]

    @property
    def group_key(self) -> str:
        """A short, stable digest of the point group, for state-topic keys."""
        return points_digest(self.points)


def points_digest(points: Sequence[str]) -> str:
    """A stable 16-hex-digit digest of a list of point names (order-sensitive)."""
    return hashlib.sha256("\x1f".join(points).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Plan:
    """The grid of a request: windows of ``step_us`` times groups, enumerated time-major."""

    start_us: int
    end_us: int
    step_us: int
    groups: tuple[tuple[str, ...], ...]

    @property
    def windows(self) -> int:
        """Number of time windows."""
        return max(0, math.ceil((self.end_us - self.start_us) / self.step_us))

    @property
    def total_chunks(self) -> int:
        """Windows times groups."""
        return self.windows * len(self.groups)

    def window(self, k: int) -> tuple[int, int]:
        """``[start, end)`` of window ``k`` (the last one is cut at ``end_us``)."""
        start = self.start_us + k * self.step_us
        return start, min(start + self.step_us, self.end_us)

    def chunk(self, index: int) -> Chunk:
        """The chunk at ``index`` of the time-major order."""
        if not 0 <= index < self.total_chunks:
            raise IndexError(index)
        k, g = divmod(index, len(self.groups))
        start, end = self.window(k)
        return Chunk(index, k, g, start, end, self.groups[g])

    def __iter__(self) -> Iterator[Chunk]:
        """Every chunk, time-major: window 0 of every group, then window 1, ..."""
        return (self.chunk(i) for i in range(self.total_chunks))

    def __len__(self) -> int:
        return self.total_chunks


def group_points(points: Sequence[str], group_size: int) -> tuple[tuple[str, ...], ...]:
    """Consecutive groups of at most ``group_size`` points, in the order given."""
    if group_size < 1:
        raise ValueError("group_size must be >= 1")
    return tuple(tuple(points[i : i + group_size]) for i in range(0, len(points), group_size))


def split_factor(
    step_us: int, group_len: int, values_per_second: float, max_values_per_chunk: int
) -> int:
    """Into how many equal sub-windows a window must be cut to stay under the value bound.

    Never cuts below a minute: past that the bound is the page size's business, not the plan's.
    """
    expected = group_len * values_per_second * step_us / US_PER_SECOND
    if max_values_per_chunk <= 0 or expected <= max_values_per_chunk:
        return 1
    return max(1, min(math.ceil(expected / max_values_per_chunk), step_us // MIN_CHUNK_US))


TRANSACTION_BUDGET_FRACTION = 0.5
"""The share of ``transaction.timeout.ms`` a chunk's transaction may expect to take under the
publish cap: the rest is margin for a slow source, retries and the commit itself."""


def transaction_values_bound(
    max_values_per_chunk: int,
    publish_values_per_second: float,
    workers: int,
    transaction_timeout_s: float,
    fraction: float = TRANSACTION_BUDGET_FRACTION,
) -> int:
    """The most values a chunk may be planned to hold so that its transaction commits in time.

    ``PUBLISH_MAX_VALUES_PER_SECOND`` is one budget for all of a process's ``workers``, so under
    throttling a worker publishes at ``cap / workers``: a chunk of ``V`` values keeps its
    transaction open ``V * workers / cap`` seconds. That must stay under ``fraction`` of the
    timeout, or the broker aborts the transaction and the chunk is redone forever. Without a
    cap, ``max_values_per_chunk`` alone bounds it (``0``: no bound at all); with one, the bound
    applies even when ``max_values_per_chunk`` is ``0``.
    """
    if publish_values_per_second <= 0:
        return max_values_per_chunk
    bound = max(1, int(fraction * transaction_timeout_s * publish_values_per_second / workers))
    return bound if max_values_per_chunk <= 0 else min(max_values_per_chunk, bound)


def plan(
    start_us: int,
    end_us: int,
    chunk_us: int,
    points: Sequence[str],
    *,
    group_size: int,
    values_per_second: float = 1 / 60,
    max_values_per_chunk: int = 0,
) -> Plan:
    """The time-major chunk grid of a request; ``values_per_second`` is per point, expected.

    ``max_values_per_chunk`` of 0 disables splitting.
    """
    if end_us <= start_us:
        raise ValueError("end must be after start")
    if chunk_us < MIN_CHUNK_US:
        raise ValueError("chunk shorter than a minute")
    if not points:
        raise ValueError("no points")
    groups = group_points(points, group_size)
    widest = max(len(g) for g in groups)
    parts = split_factor(chunk_us, widest, values_per_second, max_values_per_chunk)
    step = -(-chunk_us // parts)  # ceiling: n parts, never an n+1-th sliver
    return Plan(start_us, end_us, step, groups)
