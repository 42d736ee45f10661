"""Validating a backfill request: the seed's JSON body in, a :class:`BackfillRequest` out.

Shape errors (a missing field, a time that is not a time) are pydantic's and become 422; rule
errors are :class:`RequestRejected` with the field's name and become 400. Either way nothing is
queued and no work starts: every rule here is checked before the request is planned, saved or
read, and the cheap ones first (the number of points before anything walks the names).

The rules, by field:

* ``connectorType``: known, and configured here (``PIAfSdk`` explains it is Windows-only).
* ``pointAddresses``: 1..``MAX_POINTS_PER_REQUEST`` points, each non-empty, at most
  ``MAX_POINT_NAME_LENGTH`` characters, without control characters (PI forbids them in tag
  names), no duplicates; for ``PIWebApi`` without ``PI_DEFAULT_SERVER`` every point a full
  ``\\\\SERVER\\TAG`` path; and the whole request small enough for its state record to fit one
  Kafka message.
* ``startTime``: not before 1970 (QuestDB's designated timestamp cannot hold earlier times) and
  not after now (nothing to read yet).
* ``endTime``: after ``startTime``, and at most ``MAX_WINDOW_DAYS`` later. It may be after now:
  a chunk reaching past the moment it is read is cut there, and only what was read is recorded
  as done, so a later run reads the rest.
* ``chunkSize``: parseable, at least a minute, not absurdly long, and leaving the plan at most
  ``MAX_CHUNKS_PER_REQUEST`` chunks (windows x point groups).

The HTTP layer adds the body-level rules: a body over ``API_MAX_BODY_BYTES`` is a 413 before
it is parsed, and a body that is not JSON is a 400 naming line and column (:mod:`producer.api.app`).
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from producer.errors import RequestRejected
from producer.planning.planner import (
    ChunkSizeError,
    format_timespan,
    parse_chunk_size,
    plan,
    transaction_values_bound,
)
from producer.sources.pi_web_api import is_point_path
from producer.state import checkpoints as cp
from producer.state.progress import BackfillRequest, Status, iso
from producer.worker.publisher import TRANSACTION_TIMEOUT_MS
from shared.batch import to_micros
from shared.kafka import PRODUCER_MESSAGE_MAX_BYTES
from shared.settings import ProducerSettings

CONNECTORS = ("PIWebApi", "AceIot", "Simulator")
AF_SDK_MESSAGE = (
    "PIAfSdk is not available: the PI AF SDK is a Windows-only .NET library. Use "
    "'PIWebApi', which reads the same PI Data Archive over HTTPS (set PI_WEB_API_URL)."
)
AVRO_BYTES_PER_VALUE = 18
"""Measured on the wire: a timestamp varint (8-9 bytes), a double (8) and a quality byte."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest start: QuestDB's designated timestamp cannot be before the Unix epoch
(https://questdb.com/docs/query/functions/date-time.md, "Designated timestamp restriction")."""

MAX_RECORD_BYTES = PRODUCER_MESSAGE_MAX_BYTES - 1024 * 1024
"""The most a request's state record may take at submit. The record (every point name) is one
Kafka message; the MiB left is for what it gains later (up to 20 errors, status, times)."""

_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""C0 and C1 control characters, DEL, and lone UTF-16 surrogates (JSON's ``\\ud800`` escapes
make them; they cannot be encoded to UTF-8, so Kafka keys and digests would fail on them)."""


class StartBody(BaseModel):
    """The body of ``POST /api/backfill/start`` (and of ``/estimate``), as in the seed."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    connector_type: str = Field(description="`PIWebApi`, `AceIot` or `Simulator`.")
    point_addresses: list[str] = Field(
        description="Point names (PI tags or `\\\\SERVER\\TAG` paths, ACE IoT point names); "
        "at most MAX_POINTS_PER_REQUEST, each at most MAX_POINT_NAME_LENGTH characters, no "
        "control characters."
    )
    start_time: datetime = Field(
        description="Start, inclusive (ISO-8601; no offset means UTC); from 1970 to now."
    )
    end_time: datetime = Field(
        description="End, exclusive (ISO-8601; no offset means UTC); at most MAX_WINDOW_DAYS "
        "after startTime. After now is allowed: what is not recorded yet is read by a later run."
    )
    chunk_size: str | None = Field(
        None,
        description="Chunk length: TimeSpan `30.00:00:00`, ISO-8601 `P30D`, or `30d`; "
        "default DEFAULT_CHUNK_SIZE.",
    )


@dataclass(frozen=True, slots=True)
class Limits:
    """What the service accepts and how it plans, from its settings."""

    max_points: int
    group_size: int
    default_chunk: str
    max_values_per_chunk: int
    values_per_second: float
    max_name_length: int = 2048
    max_window_days: int = 36_500
    max_chunks: int = 1_000_000
    pi_default_server: str | None = None
    max_record_bytes: int = MAX_RECORD_BYTES

    @classmethod
    def from_settings(cls, settings: ProducerSettings) -> Limits:
        """The limits a service with these settings applies (the API's and ``verify``'s)."""
        return cls(
            max_points=settings.max_points_per_request,
            group_size=settings.points_per_request,
            default_chunk=settings.default_chunk_size,
            max_values_per_chunk=transaction_values_bound(
                settings.max_values_per_chunk,
                settings.publish_max_values_per_second,
                settings.backfill_workers,
                TRANSACTION_TIMEOUT_MS / 1000,
            ),
            values_per_second=1.0 / settings.expected_sample_interval_seconds,
            max_name_length=settings.max_point_name_length,
            max_window_days=settings.max_window_days,
            max_chunks=settings.max_chunks_per_request,
            pi_default_server=settings.pi_default_server,
        )


def resolve_connector(name: str, unavailable: Mapping[str, str | None]) -> str:
    """The canonical connector name; ``unavailable`` maps each known one to why it cannot run
    here (``None``: it can)."""
    canonical = {c.lower(): c for c in CONNECTORS}
    key = name.strip().lower()
    if key in {"piafsdk", "afsdk", "pi_af_sdk"}:
        raise RequestRejected("connectorType", AF_SDK_MESSAGE)
    if key not in canonical:
        raise RequestRejected(
            "connectorType", f"unknown connector {name[:40]!r}; use one of {', '.join(CONNECTORS)}"
        )
    connector = canonical[key]
    reason = unavailable.get(connector)
    if reason:
        raise RequestRejected("connectorType", f"{connector} is not configured: {reason}")
    return connector


def shown(text: str, width: int = 40) -> str:
    """``text`` escaped for a message, cut to ``width`` characters (a name may be megabytes)."""
    return repr(text[:width]) + (f"... ({len(text):,} characters)" if len(text) > width else "")


def check_points(raw: list[str], connector: str, limits: Limits) -> list[str]:
    """The request's point names, stripped; ``RequestRejected`` names the first bad one by its
    index in ``pointAddresses``."""
    if not raw:
        raise RequestRejected("pointAddresses", "no points: give at least one point address")
    if len(raw) > limits.max_points:  # before anything walks the names
        raise RequestRejected(
            "pointAddresses",
            f"{len(raw):,} points exceed the limit of {limits.max_points:,} per request "
            "(MAX_POINTS_PER_REQUEST); split the request",
        )
    points = [p.strip() for p in raw]
    for index, point in enumerate(points):
        where = f"pointAddresses[{index}]"
        if not point:
            raise RequestRejected("pointAddresses", f"{where} is an empty point address")
        if len(point) > limits.max_name_length:
            # PI's interfaces document tag names of at most 1023 characters (PI API 1.6.0.2+
            # with Data Archive 3.4.370+; 255 before), e.g. https://docs.aveva.com/bundle/
            # pi-universal-interface-uniint-framework/page/1026155.html; a `\\SERVER\` prefix
            # and ACE IoT's path-like names (site/device/point) need more: 2048 by default.
            raise RequestRejected(
                "pointAddresses",
                f"{where} is {len(point):,} characters long, over the limit of "
                f"{limits.max_name_length:,} (MAX_POINT_NAME_LENGTH): {shown(point)}",
            )
        bad = _FORBIDDEN.search(point)
        if bad is not None:
            char = bad.group()
            kind = (
                "an unpaired surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
            )
            # PI: "Control characters such as linefeeds or tabs are illegal" in tag names (same
            # page); an ACE or simulator name holding one is a pasting accident.
            raise RequestRejected(
                "pointAddresses",
                f"{where} {shown(point)} contains {kind} (U+{ord(char):04X}) at position "
                f"{bad.start()}; point names cannot contain control characters",
            )
    duplicates = sorted(p for p, n in Counter(points).items() if n > 1)
    if duplicates:
        named = ", ".join(shown(p) for p in duplicates[:10])
        raise RequestRejected("pointAddresses", f"duplicate points: {named}")
    if connector == "PIWebApi" and not limits.pi_default_server:
        # The PI source reads a bare tag on PI_DEFAULT_SERVER (PIWebApiSource.path_of): without
        # one, every read of it would fail after the request was accepted.
        for index, point in enumerate(points):
            if not is_point_path(point):
                raise RequestRejected(
                    "pointAddresses",
                    f"pointAddresses[{index}] {shown(point)} is a bare tag name and "
                    "PI_DEFAULT_SERVER is not set: give the full path (\\\\SERVER\\TAG) or set "
                    "PI_DEFAULT_SERVER to the PI Data Archive that holds the tag",
                )
    return points


def _utc(field: str, moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 or 9999-12-31T23:59-14:00
        raise RequestRejected(
            field, f"{field} {moment.isoformat()} is out of range once converted to UTC"
        ) from None


def check_window(body: StartBody, limits: Limits, now: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC, or ``RequestRejected`` naming ``startTime`` or ``endTime``."""
    start, end = _utc("startTime", body.start_time), _utc("endTime", body.end_time)
    if start < EPOCH:
        raise RequestRejected(
            "startTime",
            f"startTime {iso(start)} is before 1970-01-01T00:00:00Z: QuestDB's designated "
            "timestamp cannot hold earlier times",
        )
    if start > now:
        raise RequestRejected(
            "startTime", f"startTime {iso(start)} is after now ({iso(now)}): nothing to read yet"
        )
    if end <= start:
        raise RequestRejected("endTime", f"endTime {iso(end)} is not after startTime")
    if end - start > timedelta(days=limits.max_window_days):
        raise RequestRejected(
            "endTime",
            f"the window from startTime to endTime {iso(end)} is {(end - start).days:,} days, "
            f"over the limit of {limits.max_window_days:,} days (MAX_WINDOW_DAYS); "
            "split it into several requests",
        )
    return start, end


def validate(
    body: StartBody,
    limits: Limits,
    unavailable: Mapping[str, str | None],
    *,
    now: datetime | None = None,
    request_id: str | None = None,
) -> BackfillRequest:
    """Check a body against the rules (module docstring) and fix its plan; ``RequestRejected``
    names the field. ``now`` (default: the clock) is the moment ``startTime`` may not pass;
    an ``endTime`` after it is accepted, the read cuts it."""
    now = now or datetime.now(UTC)
    connector = resolve_connector(body.connector_type, unavailable)
    points = check_points(body.point_addresses, connector, limits)
    start, end = check_window(body, limits, now)
    chunk_text = body.chunk_size if body.chunk_size is not None else limits.default_chunk
    try:
        chunk = parse_chunk_size(chunk_text)
    except ChunkSizeError as exc:
        raise RequestRejected("chunkSize", str(exc)) from exc
    start_us, end_us = to_micros(start), to_micros(end)
    chunk_us = chunk // timedelta(microseconds=1)
    grid = plan(
        start_us,
        end_us,
        chunk_us,
        points,
        group_size=limits.group_size,
        values_per_second=limits.values_per_second,
        max_values_per_chunk=limits.max_values_per_chunk,
    )
    if grid.total_chunks > limits.max_chunks:
        # Each chunk is a checkpoint record and an entry in the request's progress, and an
        # estimate walks them all: 29 M one-minute chunks over 1970-2026 blocked the API 84 s.
        raise RequestRejected(
            "chunkSize",
            f"the plan has {grid.total_chunks:,} chunks ({grid.windows:,} windows x "
            f"{len(grid.groups):,} point groups), over the limit of {limits.max_chunks:,} "
            "(MAX_CHUNKS_PER_REQUEST): use a longer chunkSize or split the request",
        )
    request = BackfillRequest(
        request_id=request_id or str(uuid.uuid4()),
        connector_type=connector,
        points=tuple(points),
        start_us=start_us,
        end_us=end_us,
        chunk_size=body.chunk_size if body.chunk_size is not None else format_timespan(chunk),
        chunk_us=chunk_us,
        step_us=grid.step_us,
        group_size=limits.group_size,
        queued_at=now,
    )
    size = len(cp.encode(request.to_record(Status.QUEUED)))
    if size > limits.max_record_bytes:
        raise RequestRejected(
            "pointAddresses",
            f"{len(points):,} point addresses make a request record of {size:,} bytes, over "
            f"the {limits.max_record_bytes:,} bytes a request's state record may take (it is "
            "one Kafka message); split the request",
        )
    return request


def estimate(
    request: BackfillRequest,
    values: int,
    *,
    exact: bool,
    values_per_second: float,
) -> dict[str, object]:
    """A dry run's answer: chunks, values, bytes on the wire and time, without queuing."""
    grid = request.plan()
    seconds = values / values_per_second if values_per_second > 0 else None
    return {
        "connectorType": request.connector_type,
        "pointCount": len(request.points),
        "chunkSize": request.chunk_size,
        "chunkSeconds": request.step_us / 1e6,
        "windows": grid.windows,
        "totalChunks": grid.total_chunks,
        "estimatedValues": values,
        "valuesExact": exact,
        "estimatedBytes": values * AVRO_BYTES_PER_VALUE,
        "assumedValuesPerSecond": values_per_second,
        "estimatedSeconds": None if seconds is None else round(seconds, 3),
    }
