"""The deterministic history every simulator serves, generated on demand and never stored.

The in-process ``Simulator`` source, the PI Web API simulator and the ACE IoT simulator all draw
from this one module, so the count a test or the verify step expects (:func:`expected_count`) is by
construction the count every simulator serves.

Events of a tag sit on a fixed grid, ``k * interval`` microseconds since the epoch for every
integer ``k``, so any window can be generated without generating what lies before it. Numeric
values are whole multiples of 1e-4 (``ints_e4 / 1e4``): the decimal text a server prints parses back
to exactly the float the in-process source yields.

Kinds of tag:

* ``FLOAT``: sine waves (``SINUSOID``, ``SINUSOIDU``, the generated ``SIMTAGnnnnn``) and ``CDT158``
  with deterministic noise and some Questionable / Substituted / Annotated values.
* ``DIGITAL`` (``BA:ACTIVE.1``): states Inactive/Active/Manual, and every 50th event the system
  state ``I/O Timeout`` (not good, value NaN).
* ``STRING`` (``BA:BATCH.1``): text values, numeric value NaN.
* ``MULTI`` (``MULTI.1``): ``1 + k % 3`` events share each timestamp (paging at shared instants).

Like a real historian, a catalog has no values after *now*: :meth:`TagCatalog.until` cuts every
window at the catalog's clock (injectable; UTC), so an event with a timestamp after the moment
of the request is never served nor counted. History before now is the same whatever the clock.
"""

from __future__ import annotations

import base64
import enum
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
UInt8Array = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]

# Quality bits, the same values as shared.batch.Quality (kept literal: simulators stand alone).
GOOD, BAD, QUESTIONABLE, SUBSTITUTED, ANNOTATED, SYSTEM_STATE = 0, 1, 2, 4, 8, 16

DIGITAL_STATES = ("Inactive", "Active", "Manual")
SYSTEM_STATE_NAME = "I/O Timeout"
SYSTEM_STATE_CODE = 246
_GENERATED = re.compile(r"SIMTAG(\d{5})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Clock = Callable[[], datetime]
"""A wall clock answering timezone-aware UTC datetimes (``datetime.now(UTC)`` by default)."""


def utc_now() -> datetime:
    """The real wall clock, UTC."""
    return datetime.now(UTC)


class TagKind(enum.Enum):
    """How a tag's values look."""

    FLOAT = "Float32"
    DIGITAL = "Digital"
    STRING = "String"
    MULTI = "Float64"


@dataclass(frozen=True, slots=True)
class TagSpec:
    """One simulated tag: its grid, its kind and the parameters of its value function."""

    name: str
    kind: TagKind
    interval_us: int
    point_id: int
    descriptor: str = ""
    units: str = ""
    base: float = 50.0
    amplitude: float = 50.0
    period_s: float = 43_200.0
    phase: float = 0.0
    noise: float = 0.0
    flagged: bool = False

    @property
    def web_id(self) -> str:
        """A stable WebID-like identifier (PI's ``P1DP`` prefix + the tag name, base64url)."""
        return "P1DP" + base64.urlsafe_b64encode(self.name.encode()).decode().rstrip("=")


@dataclass(frozen=True, slots=True, eq=False)
class Events:
    """A run of consecutive events of one tag, as parallel arrays."""

    timestamps_us: Int64Array
    ints_e4: Int64Array  # numeric value * 1e4 (exact); 0 where the value is NaN
    values: Float64Array
    quality: UInt8Array
    texts: list[str] | None  # digital state names / string values, "" elsewhere
    is_system: BoolArray | None  # digital tags only

    def __len__(self) -> int:
        return len(self.timestamps_us)


def web_id_to_name(web_id: str) -> str | None:
    """Invert :attr:`TagSpec.web_id`; ``None`` for anything this simulator did not issue."""
    if not web_id.startswith("P1DP"):
        return None
    raw = web_id[4:]
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


class TagCatalog:
    """The tags a simulator knows: the PI demo defaults plus ``generated_tags`` sine waves."""

    def __init__(
        self, interval_s: float = 60.0, generated_tags: int = 0, clock: Clock | None = None
    ) -> None:
        if interval_s <= 0 or generated_tags < 0:
            raise ValueError("interval_s must be > 0 and generated_tags >= 0")
        self.clock: Clock = clock or utc_now
        self.interval_us = max(1, round(interval_s * 1_000_000))
        self.generated_tags = generated_tags
        iv = self.interval_us
        defaults = [
            TagSpec("SINUSOID", TagKind.FLOAT, iv, 1, "12 Hour Sine Wave"),
            TagSpec("SINUSOIDU", TagKind.FLOAT, iv, 2, "12 Hour Sine Wave", "gal", phase=1.0),
            TagSpec(
                "CDT158",
                TagKind.FLOAT,
                iv,
                3,
                "Light Naphtha End Point",
                "degC",
                base=170.0,
                amplitude=5.0,
                period_s=86_400.0,
                noise=1.0,
                flagged=True,
            ),
            TagSpec("BA:ACTIVE.1", TagKind.DIGITAL, iv, 4, "Batch active state"),
            TagSpec("BA:BATCH.1", TagKind.STRING, iv, 5, "Batch identifier"),
            TagSpec("MULTI.1", TagKind.MULTI, iv, 6, "Several events per timestamp"),
        ]
        self._defaults = {spec.name: spec for spec in defaults}

    def names(self) -> list[str]:
        """Every tag name, defaults first."""
        return [*self._defaults, *(f"SIMTAG{i:05d}" for i in range(self.generated_tags))]

    def get(self, name: str) -> TagSpec | None:
        """The tag called ``name`` (PI tag names are case-insensitive), or ``None``."""
        key = name.strip().upper()
        if key in self._defaults:
            return self._defaults[key]
        match = _GENERATED.fullmatch(key)
        if match is None or int(match.group(1)) >= self.generated_tags:
            return None
        i = int(match.group(1))
        return TagSpec(
            key,
            TagKind.FLOAT,
            self.interval_us,
            1000 + i,
            f"Generated sine wave {i}",
            base=100.0 + (i % 7) * 10,
            amplitude=10.0 + (i % 5),
            period_s=3_600.0 * (1 + i % 24),
            phase=(i % 360) * math.pi / 180,
        )

    def until(self, end_us: int) -> int:
        """``end_us`` (exclusive) cut at the clock: events up to and including *now* exist, none
        after it, as in a historian that cannot hold values it has not received yet."""
        return min(end_us, _micros(self.clock()) + 1)

    def expected_count(self, tag: str, start: datetime, end: datetime) -> int:
        """How many events ``tag`` has in ``[start, end)`` as of now (nothing after the clock);
        raises ``KeyError`` for unknown tags."""
        spec = self.get(tag)
        if spec is None:
            raise KeyError(tag)
        return count_events(spec, _micros(start), self.until(_micros(end)))


def expected_count(
    tag: str,
    start: datetime,
    end: datetime,
    *,
    interval_s: float = 60.0,
    generated_tags: int = 0,
    clock: Clock | None = None,
) -> int:
    """Events of ``tag`` in ``[start, end)`` for a simulator started with these options, as of
    ``clock`` (now by default: a simulator serves nothing after it)."""
    return TagCatalog(interval_s, generated_tags, clock).expected_count(tag, start, end)


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: simulators work in timezone-aware UTC")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _grid_range(spec: TagSpec, start_us: int, end_us: int) -> tuple[int, int]:
    """Grid indices ``[k0, k1)`` whose timestamps fall in ``[start_us, end_us)``."""
    k0 = -(-start_us // spec.interval_us)
    k1 = -(-end_us // spec.interval_us)
    return k0, max(k0, k1)


def _multi_cumulative(k: int) -> int:
    """Events of a MULTI tag at grid indices ``[0, k)`` (negative below 0): 1, 2, 3, 1, 2, 3..."""
    q, r = divmod(k, 3)
    return 6 * q + r * (r + 1) // 2


def count_events(spec: TagSpec, start_us: int, end_us: int) -> int:
    """Events of ``spec`` with timestamps in ``[start_us, end_us)``."""
    k0, k1 = _grid_range(spec, start_us, end_us)
    if spec.kind is TagKind.MULTI:
        return _multi_cumulative(k1) - _multi_cumulative(k0)
    return k1 - k0


def _hash01(k: Int64Array) -> Float64Array:
    """A deterministic pseudo-random number in [0, 1) per grid index (integer arithmetic only)."""
    h = (k.astype(np.uint64) * np.uint64(2_654_435_761)) % np.uint64(4_294_967_296)
    return h.astype(np.float64) / 4_294_967_296.0


def events(spec: TagSpec, start_us: int, end_us: int, limit: int | None = None) -> Events:
    """The first ``limit`` events (all if ``None``) of ``spec`` in ``[start_us, end_us)``."""
    k0, k1 = _grid_range(spec, start_us, end_us)
    if limit is not None:
        k1 = min(k1, k0 + max(0, limit))  # every grid index carries at least one event
    k = np.arange(k0, k1, dtype=np.int64)
    ts = k * spec.interval_us
    texts: list[str] | None = None
    is_system: BoolArray | None = None
    quality = np.zeros(len(k), dtype=np.uint8)
    if spec.kind is TagKind.FLOAT:
        t_s = ts.astype(np.float64) / 1e6
        raw = spec.base + spec.amplitude * np.sin(2 * np.pi * t_s / spec.period_s + spec.phase)
        if spec.noise:
            raw = raw + spec.noise * (_hash01(k) - 0.5)
        ints = np.rint(raw * 1e4).astype(np.int64)
        if spec.flagged:
            quality[k % 97 == 0] |= QUESTIONABLE
            quality[k % 89 == 0] |= SUBSTITUTED
            quality[k % 211 == 0] |= ANNOTATED
    elif spec.kind is TagKind.DIGITAL:
        codes = (k // 3) % len(DIGITAL_STATES)
        is_system = k % 50 == 49
        codes[is_system] = SYSTEM_STATE_CODE
        ints = codes * 10_000
        quality[is_system] = BAD | SYSTEM_STATE
        texts = [
            SYSTEM_STATE_NAME if system else DIGITAL_STATES[code]
            for code, system in zip(codes.tolist(), is_system.tolist(), strict=True)
        ]
    elif spec.kind is TagKind.STRING:
        ints = np.zeros(len(k), dtype=np.int64)
        texts = [f"Batch-{i % 100_000:05d}" for i in k.tolist()]
    else:  # MULTI: 1 + k % 3 events per timestamp, valued (k % 1000) * 10 + j for the j-th
        multiplicity = 1 + k % 3
        first = np.repeat(np.cumsum(multiplicity) - multiplicity, multiplicity)
        j = np.arange(int(multiplicity.sum()), dtype=np.int64) - first
        ts = np.repeat(ts, multiplicity)
        ints = (np.repeat(k % 1000, multiplicity) * 10 + j) * 10_000
        quality = np.zeros(len(ts), dtype=np.uint8)
        if limit is not None:
            ts, ints, quality = ts[:limit], ints[:limit], quality[:limit]
    values = ints / 1e4
    if is_system is not None:
        values[is_system] = np.nan
    if spec.kind is TagKind.STRING:
        values[:] = np.nan
    return Events(ts, ints, values, quality, texts, is_system)
