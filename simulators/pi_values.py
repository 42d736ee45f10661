"""The values behind PI's stream methods other than recorded: interpolated, plot, value, end.

Pure functions over :mod:`simulators.data`'s events (no HTTP), as the PI Web API Reference
describes the methods (docs.aveva.com/bundle/pi-web-api-reference, "Stream GetInterpolated",
"Stream GetPlot", "Stream GetValue", "Stream GetEnd", "Stream GetRecorded"):

* interpolated: a value every ``interval`` from ``startTime`` to ``endTime``; linear between the
  recorded events around each time for continuous points, the previous event for step points
  (digital, string);
* plot: per interval (``intervals`` of them, default 24) at most five events: the first, the last,
  the lowest, the highest and one exceptional (bad) value;
* value / end: the event at or before a time (``GetValue`` without ``time``: the current value),
  the last recorded event (``GetEnd``);
* recorded with ``endTime`` before ``startTime``: the events in time-descending order, the page
  cut at ``maxCount`` from the ``startTime`` side.

Every result is an :class:`~simulators.data.Events`, so the PI simulator prints it like recorded
values.
"""

from __future__ import annotations

import re

import numpy as np

from simulators.data import BAD, Events, Int64Array, TagKind, TagSpec, count_events, events

_DENSE_LIMIT = 2_000_000  # events generated in one go to interpolate; sparser asks go per time
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)\s*$", re.IGNORECASE)
_INTERVAL_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86_400, "day": 86_400, "days": 86_400,
    "w": 604_800, "week": 604_800, "weeks": 604_800,
}  # fmt: skip


def parse_interval(text: str) -> int | None:
    """A PI time interval (``1h``, ``30m``, ``1.5h``, ``1d``) in microseconds, else ``None``."""
    match = _INTERVAL.match(text)
    if match is None or match.group(2).lower() not in _INTERVAL_UNITS:
        return None
    micros = round(float(match.group(1)) * _INTERVAL_UNITS[match.group(2).lower()] * 1_000_000)
    return micros if micros > 0 else None


def take(ev: Events, idx: Int64Array) -> Events:
    """The events at positions ``idx`` (in that order)."""
    return Events(
        ev.timestamps_us[idx],
        ev.ints_e4[idx],
        ev.values[idx],
        ev.quality[idx],
        None if ev.texts is None else [ev.texts[i] for i in idx.tolist()],
        None if ev.is_system is None else ev.is_system[idx],
    )


def _concat(parts: list[Events]) -> Events:
    texts = None if parts[0].texts is None else [t for p in parts for t in p.texts or []]
    system = parts[0].is_system
    return Events(
        np.concatenate([p.timestamps_us for p in parts]),
        np.concatenate([p.ints_e4 for p in parts]),
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.quality for p in parts]),
        texts,
        None
        if system is None
        else np.concatenate([p.is_system for p in parts if p.is_system is not None]),
    )


def reverse(ev: Events) -> Events:
    """The same events, last first."""
    return take(ev, np.arange(len(ev) - 1, -1, -1, dtype=np.int64))


def at_or_before(spec: TagSpec, t_us: int) -> Events:
    """The last recorded event at or before ``t_us`` (every grid instant holds one)."""
    k = t_us // spec.interval_us
    ev = events(spec, k * spec.interval_us, k * spec.interval_us + 1)
    return take(ev, np.array([len(ev) - 1], dtype=np.int64))


def _around(spec: TagSpec, times: Int64Array) -> Events:
    """Every event at the grid instants just before (or at) and just after each of ``times``."""
    iv = spec.interval_us
    lo = int(times.min()) // iv * iv
    hi = (int(times.max()) // iv + 1) * iv + 1
    if count_events(spec, lo, hi) <= _DENSE_LIMIT:
        return events(spec, lo, hi)
    ks = np.unique(np.concatenate([times // iv, times // iv + 1]))
    return _concat([events(spec, k * iv, k * iv + 1) for k in ks.tolist()])


def interpolate(spec: TagSpec, times: Int64Array) -> Events:
    """The interpolated value of ``spec`` at each of ``times``."""
    if len(times) == 0:
        return take(events(spec, 0, 0), np.zeros(0, dtype=np.int64))
    ev = _around(spec, times)
    after_i = np.searchsorted(ev.timestamps_us, times, side="right")
    before = take(ev, after_i - 1)
    step = spec.kind in (TagKind.DIGITAL, TagKind.STRING)
    exact = before.timestamps_us == times
    if step:
        return Events(
            times.copy(), before.ints_e4, before.values, before.quality, before.texts,
            before.is_system,
        )  # fmt: skip
    after = take(ev, np.minimum(after_i, len(ev) - 1))
    span = np.maximum(after.timestamps_us - before.timestamps_us, 1)
    frac = (times - before.timestamps_us) / span
    ints = np.rint(before.ints_e4 + (after.ints_e4 - before.ints_e4) * frac).astype(np.int64)
    ints = np.where(exact, before.ints_e4, ints)
    quality = np.where(exact, before.quality, before.quality | (after.quality & BAD))
    return Events(times.copy(), ints, ints / 1e4, quality.astype(np.uint8), None, None)


def interpolated(spec: TagSpec, start_us: int, end_us: int, interval_us: int) -> Events:
    """Values every ``interval_us`` from ``start_us`` towards ``end_us`` (descending if before)."""
    n = abs(end_us - start_us) // interval_us + 1
    direction = 1 if end_us >= start_us else -1
    times = start_us + direction * interval_us * np.arange(n, dtype=np.int64)
    return interpolate(spec, times)


def interpolated_count(start_us: int, end_us: int, interval_us: int) -> int:
    """How many values :func:`interpolated` returns."""
    return abs(end_us - start_us) // interval_us + 1


def recorded(spec: TagSpec, start_us: int, end_us: int, max_count: int) -> Events:
    """Recorded events between the two times, both included, at most ``max_count``: ascending
    from ``start_us`` or, when ``end_us`` is before it, descending from ``start_us``."""
    if end_us >= start_us:
        return events(spec, start_us, end_us + 1, max_count)
    lo, hi = end_us, start_us + 1  # [lo, hi)
    if count_events(spec, lo, hi) > max_count:
        # the latest start whose events up to ``hi`` still fill a page: binary search on time
        low, high = lo, hi
        while high - low > 1:
            mid = (low + high) // 2
            if count_events(spec, mid, hi) >= max_count:
                low = mid
            else:
                high = mid
        lo = low
    ev = events(spec, lo, hi)
    return reverse(take(ev, np.arange(max(0, len(ev) - max_count), len(ev), dtype=np.int64)))


def plot(spec: TagSpec, start_us: int, end_us: int, intervals: int) -> Events:
    """Per interval the first, last, lowest, highest and first bad event (descending if
    ``end_us`` is before ``start_us``)."""
    lo, hi = min(start_us, end_us), max(start_us, end_us)
    ev = events(spec, lo, hi + 1)
    n = len(ev)
    if n == 0:
        return ev
    bucket = np.minimum((ev.timestamps_us - lo) * intervals // max(1, hi - lo), intervals - 1)
    _, first = np.unique(bucket, return_index=True)
    _, from_end = np.unique(bucket[::-1], return_index=True)
    picks = [first, n - 1 - from_end]
    if spec.kind is not TagKind.STRING:
        order = np.lexsort((ev.ints_e4, bucket))
        sorted_buckets = bucket[order]
        starts = np.flatnonzero(np.r_[True, sorted_buckets[1:] != sorted_buckets[:-1]])
        ends = np.r_[starts[1:], n] - 1
        picks += [order[starts], order[ends]]
    bad = np.flatnonzero(ev.quality & BAD)
    if len(bad):
        _, first_bad = np.unique(bucket[bad], return_index=True)
        picks.append(bad[first_bad])
    chosen = take(ev, np.unique(np.concatenate(picks)).astype(np.int64))
    return chosen if end_us >= start_us else reverse(chosen)


SUMMARY_TYPES = (
    "Total", "Average", "Minimum", "Maximum", "Range", "StdDev", "PopulationStdDev", "Count",
    "PercentGood",
)  # fmt: skip
_DAY_US = 86_400_000_000


def summary(
    spec: TagSpec, start_us: int, end_us: int, types: list[str]
) -> list[tuple[str, int, float | None]]:
    """``(type, timestamp_us, value)`` per summary type over the recorded events between the two
    times. The simulator's grid is evenly spaced, so its event-weighted average is the
    time-weighted one PI computes by default; ``Total`` is that average times the days covered
    (PI's default rate unit), ``PercentGood`` is by events. ``None``: not defined (no good
    numeric values)."""
    lo, hi = min(start_us, end_us), max(start_us, end_us)
    ev = events(spec, lo, hi + 1)
    good = (ev.quality & BAD) == 0
    numeric = spec.kind not in (TagKind.DIGITAL, TagKind.STRING)
    values = ev.values[good] if numeric else np.zeros(0)
    at = ev.timestamps_us[good] if numeric else np.zeros(0, dtype=np.int64)
    out: list[tuple[str, int, float | None]] = []
    for kind in types:
        stamp, value = start_us, None
        if kind == "Count":
            value = float(len(ev))
        elif kind == "PercentGood":
            value = 100.0 * float(good.mean()) if len(ev) else None
        elif len(values):
            value, stamp = _numeric_summary(kind, values, at, hi - lo, start_us)
        out.append((kind, stamp, value))
    return out


def _numeric_summary(
    kind: str, values: np.ndarray, at: Int64Array, span_us: int, start_us: int
) -> tuple[float, int]:
    if kind == "Minimum":
        i = int(np.argmin(values))
        return round(float(values[i]), 4), int(at[i])
    if kind == "Maximum":
        i = int(np.argmax(values))
        return round(float(values[i]), 4), int(at[i])
    calculated = {
        "Average": lambda: float(values.mean()),
        "Total": lambda: float(values.mean()) * span_us / _DAY_US,
        "Range": lambda: float(values.max() - values.min()),
        "StdDev": lambda: float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "PopulationStdDev": lambda: float(values.std()),
    }
    return round(calculated[kind](), 6), start_us
