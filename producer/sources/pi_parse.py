"""PI Web API recorded-values payloads -> columns, and the errors PI hides inside a 200.

A recorded value looks like ``{"Timestamp": "...Z", "Value": 12.3, "Good": true, "Questionable":
false, "Substituted": false, "Annotated": false}``; a digital state's ``Value`` is ``{"Name":
"Active", "Value": 1, "IsSystem": false}`` and becomes the numeric code plus the name as text (a
*system* state such as ``I/O Timeout`` or ``No Data`` is not a reading: NaN, flagged
``SYSTEM_STATE``); a string point's value is kept as text with NaN.

Errors inside a successful answer (see PI Web API "Error Handling"): a top-level ``WebException``
(the response stream broke; it carries the status to act on), a stream's ``Errors`` or
``Exception``, or a value carrying ``Errors``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from producer.sources.base import Columns
from producer.sources.errors import PointReadError, ProtocolError
from producer.sources.timestamps import parse_times
from shared.batch import Float64Array, Quality, UInt8Array

VALUE_FIELDS = ("Timestamp", "Value", "Good", "Questionable", "Substituted", "Annotated")
_GETTERS = [(name, itemgetter(name)) for name in VALUE_FIELDS]
_DEFAULTS: dict[str, Any] = {"Good": True, "Questionable": False, "Substituted": False}
STREAM_FIELDS = ";".join(
    [*(f"Items.{f}" for f in VALUE_FIELDS), "Items.Errors", "Errors", "WebException"]
)
STREAMSET_FIELDS = ";".join(
    [
        "Items.WebId",
        "Items.Errors",
        "Items.Exception",
        *(f"Items.Items.{f}" for f in VALUE_FIELDS),
        "Items.Items.Errors",
        "WebException",
    ]
)
POINT_FIELDS = "WebId;Name;Path;EngineeringUnits;PointType"
MULTIPLE_POINT_FIELDS = ";".join(
    [
        "Items.Identifier",
        "Items.Exception",
        *(f"Items.Object.{f}" for f in POINT_FIELDS.split(";")),
    ]
)


def _messages(errors: Any) -> str:
    """PI's error lists: strings, or ``{"FieldName": .., "Message": [..]}`` objects."""
    if isinstance(errors, dict):
        errors = errors.get("Errors") or errors.get("Message") or [errors]
    if not isinstance(errors, list):
        return str(errors)
    parts = []
    for error in errors:
        if isinstance(error, dict):
            message = error.get("Message", error)
            parts.append(
                "; ".join(map(str, message)) if isinstance(message, list) else str(message)
            )
        else:
            parts.append(str(error))
    return "; ".join(parts)


def web_exception(payload: Any) -> tuple[int, str] | None:
    """``(status, message)`` of a top-level ``WebException``, ``None`` if there is none."""
    if not isinstance(payload, dict) or not payload.get("WebException"):
        return None
    exc = payload["WebException"]
    status = exc.get("StatusCode", 500) if isinstance(exc, dict) else 500
    return int(status) if isinstance(status, int) else 500, _messages(exc)


def stream_error(stream: Any) -> str | None:
    """The error PI reported for a whole stream (``Errors`` or ``Exception``), if any."""
    if not isinstance(stream, dict):
        return "stream entry is not an object"
    for key in ("Exception", "Errors"):
        if stream.get(key):
            return _messages(stream[key])
    return None


def _digital(value: dict[str, Any]) -> tuple[float, str, bool]:
    name = value.get("Name")
    code = value.get("Value")
    system = bool(value.get("IsSystem"))
    number = float(code) if isinstance(code, int | float) and not system else math.nan
    return number, "" if name is None else str(name), system


def _fields(items: list[Any]) -> list[Sequence[Any]]:
    """The six value fields as columns; :class:`PointReadError` if a value carries ``Errors``."""
    columns: list[Sequence[Any]] = []
    complete = True
    for name, getter in _GETTERS:  # one C-level pass per field: no per-value row objects
        try:
            columns.append(list(map(getter, items)))
        except KeyError:  # a field left out: its documented default
            complete = False
            default = _DEFAULTS.get(name, False)
            columns.append([item.get(name, default) for item in items])
    # values holding exactly the six fields cannot hold "Errors": look only when one differs
    exact = complete and (not items or min(map(len, items)) == max(map(len, items)) == 6)
    if not exact and any("Errors" in item for item in items):
        bad = next(item for item in items if "Errors" in item)
        raise PointReadError(f"PI reported a value error: {_messages(bad['Errors'])}")
    return columns


def _mixed(raw_values: Sequence[Any], quality: UInt8Array) -> tuple[Float64Array, list[str]]:
    """Values that are not all numbers: digital states, strings, nulls (``quality`` updated)."""
    values = np.empty(len(raw_values), dtype=np.float64)
    texts = [""] * len(raw_values)
    for i, value in enumerate(raw_values):
        kind = type(value)
        if kind is float or kind is int or kind is bool:
            values[i] = float(value)
        elif kind is dict:
            values[i], texts[i], system = _digital(value)
            if system:
                quality[i] |= Quality.SYSTEM_STATE
        elif kind is str:
            values[i], texts[i] = math.nan, value
        elif value is None:
            values[i] = math.nan
            quality[i] |= Quality.BAD
        else:
            values[i], texts[i] = math.nan, str(value)
    return values, texts


def parse_values(items: Any) -> Columns:
    """A stream's ``Items`` -> columns. Raises :class:`PointReadError` when a value carries
    ``Errors`` and :class:`ProtocolError` when the items are not recorded values."""
    if not isinstance(items, list):
        raise ProtocolError("stream Items is not a list")
    try:
        stamps, raw_values, good, questionable, substituted, annotated = _fields(items)
        timestamps = parse_times(stamps)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"recorded values are not shaped as PI documents: {exc}") from exc
    quality = np.where(np.array(good, dtype=bool), 0, Quality.BAD).astype(np.uint8)
    for flags, bit in (
        (questionable, Quality.QUESTIONABLE),
        (substituted, Quality.SUBSTITUTED),
        (annotated, Quality.ANNOTATED),
    ):
        quality |= np.array(flags, dtype=bool).astype(np.uint8) * np.uint8(bit)
    if set(map(type, raw_values)) <= {float, int}:
        return Columns(timestamps, np.array(raw_values, dtype=np.float64), quality)
    values, texts = _mixed(raw_values, quality)
    return Columns(timestamps, values, quality, texts)
