"""PI time strings, as the PI Web API reads ``startTime``, ``endTime``, ``time``...

Reference: PI Web API Reference, "Time Strings (Core Services)" (docs.aveva.com/bundle/
pi-web-api-reference/page/help/topics/time-strings.html) and the PI time abbreviations of the PI
DataLink documentation ("List of PI time abbreviations"). A time string is an optional date-time
part followed by an optional interval part:

* date-time part: ``*`` (now; an empty string is the same), ``t``/``today`` and ``y``/``yesterday``
  (midnight), a weekday name (its latest midnight, today included), a month name (today's day in
  that month of this year), a number below 32 (that day of this month), a four-digit year from 1970
  (today's month and day in that year), ``HH:MM[:SS]`` (today at that time), or an absolute date in
  the usual formats (ISO-8601, ``01-Jan-24 00:00:00``, ``2024-01-01 00:00:00``, ``1/31/2024 8:00
  PM``), optionally quoted;
* interval part: one or more ``+N unit`` / ``-N unit`` with units s, m, h, d, w, mo, y (and their
  long names); only s, m and h take fractions. Alone (``-1d``) it counts from now.

The simulator's server time zone is UTC: absolute times without a zone are UTC. ``now`` is passed
in, never read here, so tests fix it.
"""

from __future__ import annotations

import calendar
import math
import re
from datetime import UTC, datetime, timedelta

_UNITS = {
    "s": "s", "sec": "s", "second": "s", "seconds": "s",
    "m": "m", "min": "m", "minute": "m", "minutes": "m",
    "h": "h", "hr": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d",
    "w": "w", "week": "w", "weeks": "w",
    "mo": "mo", "month": "mo", "months": "mo",
    "y": "y", "year": "y", "years": "y",
}  # fmt: skip
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_TOKEN = re.compile(r"([+-])\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)\s*", re.IGNORECASE)
_TAIL = re.compile(r"(?:[+-]\s*(?:\d+(?:\.\d*)?|\.\d+)\s*[a-z]+\s*)+$", re.IGNORECASE)
_WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTH_NAMES = tuple(name.lower() for name in calendar.month_name[1:])
_FORMATS = (
    "%d-%b-%y %H:%M:%S.%f", "%d-%b-%y %H:%M:%S", "%d-%b-%y %H:%M", "%d-%b-%y",
    "%d-%b-%Y %H:%M:%S.%f", "%d-%b-%Y %H:%M:%S", "%d-%b-%Y %H:%M", "%d-%b-%Y",
    "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M",
    "%m/%d/%Y", "%d %b %Y %H:%M:%S", "%d %b %Y", "%b %d %Y %H:%M:%S", "%b %d %Y",
    "%Y-%m-%d %H:%M:%S:%f",  # the SQL form hh:mm:ss:fff
)  # fmt: skip
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:[.:](\d{1,6}))?)?$")


class PITimeError(ValueError):
    """A string the PI time syntax does not read."""


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _named(low: str, now: datetime) -> datetime | None:
    """``*``, today, yesterday, a weekday or a month name; ``None`` if ``low`` is none of them."""
    fixed = {"*": now, "t": _midnight(now), "today": _midnight(now)}
    fixed["y"] = fixed["yesterday"] = _midnight(now) - timedelta(days=1)
    if low in fixed:
        return fixed[low]
    if len(low) < 3 or not low.isalpha():
        return None
    weekday = next((i for i, name in enumerate(_WEEKDAY_NAMES) if name.startswith(low)), None)
    if weekday is not None:
        return _midnight(now) - timedelta(days=(now.weekday() - weekday) % 7)
    month = next((i for i, name in enumerate(_MONTH_NAMES) if name.startswith(low)), None)
    if month is not None:
        day = min(now.day, calendar.monthrange(now.year, month + 1)[1])
        return _midnight(now).replace(month=month + 1, day=day)
    return None


def _number(text: str, now: datetime) -> datetime:
    """A day of this month (below 32) or a year from 1970."""
    number = int(text)
    if number < 32 and 1 <= number <= calendar.monthrange(now.year, now.month)[1]:
        return _midnight(now).replace(day=number)
    if len(text) == 4 and number >= 1970:
        day = min(now.day, calendar.monthrange(number, now.month)[1])
        return _midnight(now).replace(year=number, day=day)
    raise PITimeError(f"'{text}' is not a day of the month or a year from 1970")


def _absolute(text: str, now: datetime) -> datetime:
    """The date-time part (already stripped, not empty)."""
    low = text.lower()
    named = _named(low, now)
    if named is not None:
        return named
    if low.isdigit():
        return _number(low, now)
    clock = _CLOCK.match(low)
    if clock:
        hours, minutes, seconds, fraction = clock.groups()
        micros = int((fraction or "0").ljust(6, "0"))
        return _midnight(now).replace(
            hour=int(hours), minute=int(minutes), second=int(seconds or 0), microsecond=micros
        )
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        for pattern in _FORMATS:
            try:
                moment = datetime.strptime(text, pattern)  # noqa: DTZ007 (UTC set below)
                break
            except ValueError:
                continue
        else:
            raise PITimeError(f"Cannot parse the time string '{text}'.") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _shift(moment: datetime, sign: str, amount: str, unit_text: str, whole: str) -> datetime:
    unit = _UNITS.get(unit_text.lower())
    if unit is None:
        raise PITimeError(f"'{unit_text}' in '{whole}' is not a PI time unit")
    value = float(amount) * (-1 if sign == "-" else 1)
    if unit in ("s", "m", "h"):
        return moment + timedelta(seconds=value * _SECONDS[unit])
    if value != math.floor(value):
        raise PITimeError(f"'{whole}': only seconds, minutes and hours take fractions")
    if unit in ("d", "w"):
        return moment + timedelta(seconds=int(value) * _SECONDS[unit])
    return _add_months(moment, int(value) * (12 if unit == "y" else 1))


def parse_pi_time(text: str | None, now: datetime) -> datetime:
    """The UTC moment ``text`` names (``None`` or empty: ``now``); :class:`PITimeError` if none."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    raw = (text or "").strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1].strip()
    if not raw:
        return now.astimezone(UTC)
    tail = _TAIL.search(raw)
    head = raw[: tail.start()].strip() if tail else raw
    moment = _absolute(head, now.astimezone(UTC)) if head else now.astimezone(UTC)
    if tail:
        for sign, amount, unit in _TOKEN.findall(tail.group(0)):
            moment = _shift(moment, sign, amount, unit, raw)
    return moment


def to_micros(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime (exact, no float rounding)."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
