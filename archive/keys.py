"""Object keys: ``timeseries/{year}/{month}/{point-id}.parquet``, and the months they cover.

The month is zero-padded (``timeseries/2024/01/...``) so keys sort in time order. A point id is
made safe for any object store by percent-encoding every byte of its UTF-8 form outside
``[A-Za-z0-9._-]`` as ``%XX`` (upper-case hex); ``.`` and ``..`` alone are encoded too, as they
are path names on a filesystem. Decoding is plain percent-decoding, so the mapping is reversible
and injective: ``\\\\SIMPI\\SINUSOID`` <-> ``%5C%5CSIMPI%5CSINUSOID``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

from archive.errors import BadArchiveRequest

PREFIX = "timeseries"
SUFFIX = ".parquet"
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_KEY = re.compile(r"^timeseries/(\d{4})/(\d{2})/([A-Za-z0-9._%-]+)\.parquet$")
MAX_KEY_BYTES = 1024  # S3's (and R2's) limit on a key


def encode_point(point: str) -> str:
    """The key-safe form of a point id (see the module docstring)."""
    if not point:
        raise BadArchiveRequest("pointIds", "a point id must not be empty")
    if point in {".", ".."}:
        return point.replace(".", "%2E")
    return "".join(ch if ch in _SAFE else "".join(f"%{b:02X}" for b in ch.encode()) for ch in point)


def decode_point(encoded: str) -> str:
    """The point id back from its key-safe form."""
    return unquote(encoded, errors="strict")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month in UTC."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or not 1970 <= self.year <= 9999:
            raise ValueError(f"no such month {self.year:04d}-{self.month:02d} (1970-01 or later)")

    @classmethod
    def parse(cls, text: str, field: str = "month") -> Month:
        """``2024-01`` -> Month(2024, 1); a BadArchiveRequest naming ``field`` otherwise."""
        found = _MONTH.match(text.strip())
        if not found:
            raise BadArchiveRequest(field, f"expected YYYY-MM, got {text!r}")
        try:
            return cls(int(found[1]), int(found[2]))
        except ValueError as exc:
            raise BadArchiveRequest(field, str(exc)) from None

    @classmethod
    def of(cls, when: datetime) -> Month:
        when = when.astimezone(UTC)
        return cls(when.year, when.month)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first instant of the next month (exclusive end)."""
        return self.next().start

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def months(first: Month, last: Month) -> list[Month]:
    """Every month from ``first`` to ``last``, both included."""
    found = []
    current = first
    while current <= last:
        found.append(current)
        current = current.next()
    return found


def object_key(point: str, month: Month, prefix: str = "") -> str:
    """``[prefix/]timeseries/2024/01/<encoded point>.parquet``."""
    key = f"{PREFIX}/{month.year:04d}/{month.month:02d}/{encode_point(point)}{SUFFIX}"
    full = f"{prefix.strip('/')}/{key}" if prefix.strip("/") else key
    if len(full.encode()) > MAX_KEY_BYTES:
        raise BadArchiveRequest(
            "pointIds", f"point {point[:80]!r}... makes a key longer than {MAX_KEY_BYTES} bytes"
        )
    return full


def parse_key(key: str) -> tuple[str, Month]:
    """The point and month a key (without the store prefix) names; ValueError otherwise."""
    found = _KEY.match(key)
    if not found:
        raise ValueError(f"not an archive key: {key!r}")
    return decode_point(found[3]), Month(int(found[1]), int(found[2]))
