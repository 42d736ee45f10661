"""Writes to the PI simulator's history, as a PI server accepts them: edits, late values, deletes.

A real PI Data Archive lets a client change the past: an operator corrects a meter reading, a
lab result is entered hours late, an interface that buffered through an outage delivers old
timestamps. The PI Web API Reference documents the writes (docs.aveva.com/bundle/
pi-web-api-reference, "Stream UpdateValue" and "Stream UpdateValues"):

* ``POST streams/{webId}/value`` with one timed value as the body;
* ``POST streams/{webId}/recorded`` with an array of timed values;
* a timed value is ``{"Timestamp": "2014-07-22T14:00:00Z", "Value": 12.3, "Good": true,
  "Questionable": false, "Substituted": false, "Annotated": false, "UnitsAbbreviation": "m"}``
  (only ``Value`` is required; ``Timestamp`` defaults to now);
* ``updateOption`` (default ``Replace``): ``Replace`` (add, or replace the event at that time),
  ``Insert`` (the same here: the simulator keeps one event per timestamp), ``NoReplace`` (add
  only where none exists), ``ReplaceOnly`` (replace only an existing event), ``Remove`` (delete
  the event at that time); ``bufferOption`` is accepted and ignored (writes are applied at once);
* success is ``204 No Content``; a malformed body ``400``; a value the point cannot take ``409``.

The generated history stays generated: writes live in an overlay per tag (sorted arrays, small),
merged into ``recorded`` reads, so a written value is served exactly like a recorded one and a
page still holds ``maxCount`` events. Only numeric (``Float``) tags take writes here; a digital or
string tag answers 409 ("the data reference does not support this operation").
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from simulators.data import (
    ANNOTATED,
    BAD,
    QUESTIONABLE,
    SUBSTITUTED,
    Events,
    Int64Array,
    TagKind,
    TagSpec,
    UInt8Array,
)
from simulators.pi_time import PITimeError, parse_pi_time, to_micros

UPDATE_OPTIONS = ("Replace", "Insert", "NoReplace", "ReplaceOnly", "Remove")
REMOVED = 255
"""The overlay's quality byte for a deleted event (real qualities use the low five bits)."""


class WriteRefused(ValueError):
    """A write the server refuses: ``status`` (400 or 409) and PI's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _TagOverlay:
    """One tag's written events: sorted unique timestamps, values (x 1e4) and qualities."""

    timestamps_us: Int64Array = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ints_e4: Int64Array = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    quality: UInt8Array = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))


@dataclass(frozen=True, slots=True)
class TimedValue:
    """One parsed value of a write body."""

    timestamp_us: int
    ints_e4: int
    quality: int


def parse_body(raw: bytes, *, many: bool, now: datetime) -> list[TimedValue]:
    """The body's timed values (one object, or an array with ``many``); 400 when malformed."""
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise WriteRefused(400, f"The request body is not valid JSON: {exc}") from exc
    items = body if many else [body]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        shape = "an array of timed values" if many else "a timed value object"
        raise WriteRefused(400, f"The request body must be {shape}.")
    return [_timed_value(item, i, now) for i, item in enumerate(items)]


def _timed_value(item: dict[str, Any], index: int, now: datetime) -> TimedValue:
    value = item.get("Value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WriteRefused(400, f"Item {index}: Value must be a finite number, got {value!r}.")
    try:
        moment = parse_pi_time(str(item["Timestamp"]) if "Timestamp" in item else None, now)
    except PITimeError as exc:
        raise WriteRefused(400, f"Item {index}: Timestamp: {exc}") from exc
    quality = 0 if item.get("Good", True) else BAD
    for name, bit in (
        ("Questionable", QUESTIONABLE),
        ("Substituted", SUBSTITUTED),
        ("Annotated", ANNOTATED),
    ):
        if item.get(name):
            quality |= bit
    return TimedValue(to_micros(moment), round(float(value) * 10_000), quality)


class WriteOverlay:
    """Every tag's written events, merged into reads (thread-safe: one lock, short holds)."""

    def __init__(self) -> None:
        self._tags: dict[str, _TagOverlay] = {}
        self._lock = threading.Lock()
        self.writes = 0

    def clear(self) -> None:
        """Forget every write (back to the generated history)."""
        with self._lock:
            self._tags.clear()

    def apply(
        self,
        spec: TagSpec,
        values: list[TimedValue],
        option: str,
        now_us: int,
    ) -> None:
        """Apply ``values`` to ``spec`` under ``option``. The generated history has an event at
        every grid instant up to ``now_us`` (what NoReplace / ReplaceOnly / Remove look at)."""
        if spec.kind is not TagKind.FLOAT:
            raise WriteRefused(
                409, f"The data reference does not support this operation ({spec.name} is "
                f"{spec.kind.value}; the simulator takes writes to Float tags only).",
            )  # fmt: skip
        if option not in UPDATE_OPTIONS:
            raise WriteRefused(
                400, f"updateOption must be one of {', '.join(UPDATE_OPTIONS)}, got {option!r}."
            )
        with self._lock:
            tag = self._tags.setdefault(spec.name, _TagOverlay())
            written = dict(
                zip(
                    tag.timestamps_us.tolist(),
                    zip(tag.ints_e4.tolist(), tag.quality.tolist(), strict=True),
                    strict=True,
                )
            )
            for v in values:
                current = written.get(v.timestamp_us)
                present = (
                    current[1] != REMOVED
                    if current is not None
                    else v.timestamp_us % spec.interval_us == 0 and v.timestamp_us <= now_us
                )
                if option == "Remove":
                    if present:
                        written[v.timestamp_us] = (0, REMOVED)
                    continue
                # NoReplace adds only where nothing is; ReplaceOnly changes only what is there
                skip = present if option == "NoReplace" else option == "ReplaceOnly" and not present
                if not skip:
                    written[v.timestamp_us] = (v.ints_e4, v.quality)
            stamps = sorted(written)
            tag.timestamps_us = np.array(stamps, dtype=np.int64)
            tag.ints_e4 = np.array([written[t][0] for t in stamps], dtype=np.int64)
            tag.quality = np.array([written[t][1] for t in stamps], dtype=np.uint8)
            self.writes += len(values)

    def removed_between(self, name: str, lo_us: int, hi_us: int) -> int:
        """Deleted events of ``name`` in ``[lo_us, hi_us]``: how much longer a base page must be."""
        tag = self._tags.get(name)
        if tag is None:
            return 0
        inside = (tag.timestamps_us >= lo_us) & (tag.timestamps_us <= hi_us)
        return int(np.count_nonzero(inside & (tag.quality == REMOVED)))

    def merge(
        self, name: str, page: Events, lo_us: int, hi_us: int, max_count: int, descending: bool
    ) -> Events:
        """``page`` (generated events of ``[lo_us, hi_us]``, ascending or descending, cut at
        ``max_count`` plus the deletions in range) with the writes in that range applied, cut at
        ``max_count`` again. The base page held ``max_count`` events from its start, so the
        first ``max_count`` of the merge are exactly the first ``max_count`` of the history."""
        with self._lock:
            tag = self._tags.get(name)
            if tag is None:
                return page
            inside = (tag.timestamps_us >= lo_us) & (tag.timestamps_us <= hi_us)
            ts_w, ints_w, q_w = tag.timestamps_us[inside], tag.ints_e4[inside], tag.quality[inside]
        if len(ts_w) == 0:
            return page
        keep = ~np.isin(page.timestamps_us, ts_w)  # a written instant replaces what was there
        live = q_w != REMOVED
        ts = np.concatenate([page.timestamps_us[keep], ts_w[live]])
        ints = np.concatenate([page.ints_e4[keep], ints_w[live]])
        quality = np.concatenate([page.quality[keep], q_w[live]])
        order = np.argsort(ts, kind="stable")
        if descending:
            order = order[::-1]
        order = order[:max_count]
        ints = ints[order]
        return Events(ts[order], ints, ints / 1e4, quality[order].astype(np.uint8), None, None)
