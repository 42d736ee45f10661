"""ISO-8601 UTC text <-> epoch microseconds, vectorised for pages of 150,000 timestamps.

Historians print ``2024-01-01T00:00:00Z``, with 1-7 fractional digits when needed (PI keeps
100 ns ticks; microseconds are kept, the rest truncated). Strings of equal length are parsed
together as a byte matrix; anything else (offsets, odd shapes) goes through
``datetime.fromisoformat`` one by one. A timestamp without a zone is taken as UTC, the zone both
APIs document.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from shared.batch import Int64Array, from_micros, to_micros

_DIGIT_COLUMNS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)
_SEPARATORS = ((4, ord("-")), (7, ord("-")), (10, ord("T")), (13, ord(":")), (16, ord(":")))


def format_time(micros: int) -> str:
    """Epoch microseconds -> ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``."""
    moment = from_micros(micros)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{moment.microsecond:06d}Z" if moment.microsecond else f"{text}Z"


def parse_time(text: str) -> int:
    """One ISO-8601 timestamp -> epoch microseconds (``ValueError`` if it is not one)."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_micros(moment)


def _number(d: npt.NDArray[np.uint8], first: int, width: int) -> npt.NDArray[np.int64]:
    out = np.zeros(d.shape[0], dtype=np.int64)
    for col in range(first, first + width):
        out = out * 10 + d[:, col]
    return out


def _parse_fixed(strings: Sequence[str], width: int) -> Int64Array | None:
    """Strings of one length ``width`` shaped ``YYYY-MM-DDTHH:MM:SS[.f+]Z``; ``None`` otherwise."""
    fraction = width - 21 if width >= 22 else 0
    if width != 20 and not fraction:
        return None
    try:
        raw = "".join(strings).encode("ascii")
    except UnicodeEncodeError:
        return None
    m = np.frombuffer(raw, dtype=np.uint8).reshape(-1, width)
    separators = [*_SEPARATORS, (width - 1, ord("Z"))] + ([(19, ord("."))] if fraction else [])
    if any(not (m[:, col] == sep).all() for col, sep in separators):
        return None
    d = m - np.uint8(ord("0"))  # bytes below "0" wrap around to > 9: one check catches both
    digit_cols = list(_DIGIT_COLUMNS) + list(range(20, 20 + fraction))
    if (d[:, digit_cols] > 9).any():
        return None
    year, month, day = _number(d, 0, 4), _number(d, 5, 2), _number(d, 8, 2)
    hour, minute, second = _number(d, 11, 2), _number(d, 14, 2), _number(d, 17, 2)
    months = (year - 1970) * 12 + (month - 1)
    month_start = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    next_month = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    out_of_range = (month < 1) | (month > 12) | (day < 1) | (day > next_month - month_start)
    if (out_of_range | (hour > 23) | (minute > 59) | (second > 59)).any():
        return None
    seconds = (month_start + day - 1) * 86_400 + hour * 3600 + minute * 60 + second
    micros = np.zeros(len(seconds), dtype=np.int64)
    if fraction:
        kept = min(fraction, 6)
        micros = _number(d, 20, kept) * 10 ** (6 - kept)
    result: Int64Array = seconds * 1_000_000 + micros
    return result


def parse_times(strings: Sequence[str]) -> Int64Array:
    """ISO-8601 timestamps -> epoch microseconds (``ValueError`` on anything unparseable)."""
    n = len(strings)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=n)
    out = np.empty(n, dtype=np.int64)
    for width in np.unique(lengths).tolist():
        where = np.flatnonzero(lengths == width)
        group = strings if len(where) == n else [strings[i] for i in where.tolist()]
        parsed = _parse_fixed(group, int(width))
        if parsed is None:
            parsed = np.fromiter(map(parse_time, group), dtype=np.int64, count=len(group))
        out[where] = parsed
    return out
