"""Validating a backfill request: the seed's JSON body in, a :class:`BackfillRequest` out.

Shape errors (a missing field, a time that is not a time) are pydantic's and become 422; rule
errors (end before start, duplicate points, an unparseable or sub-minute chunk, an unknown or
unavailable connector, too many points) are :class:`RequestRejected` with the field's name and
become 400. Either way nothing is queued.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from producer.errors import RequestRejected
from producer.planner import ChunkSizeError, format_timespan, parse_chunk_size, plan
from producer.progress import BackfillRequest
from shared.batch import to_micros

CONNECTORS = ("PIWebApi", "AceIot", "Simulator")
AF_SDK_MESSAGE = (
    "PIAfSdk is not available: the PI AF SDK is a Windows-only .NET library. Use "
    "'PIWebApi', which reads the same PI Data Archive over HTTPS (set PI_WEB_API_URL)."
)
AVRO_BYTES_PER_VALUE = 18
"""Measured on the wire: a timestamp varint (8-9 bytes), a double (8) and a quality byte."""


class StartBody(BaseModel):
    """The body of ``POST /api/backfill/start`` (and of ``/estimate``), as in the seed."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    connector_type: str = Field(description="`PIWebApi`, `AceIot` or `Simulator`.")
    point_addresses: list[str] = Field(description="Point names (PI tags, ACE IoT point names).")
    start_time: datetime = Field(description="Start, inclusive (ISO-8601; no offset means UTC).")
    end_time: datetime = Field(description="End, exclusive (ISO-8601; no offset means UTC).")
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


def resolve_connector(name: str, unavailable: Mapping[str, str | None]) -> str:
    """The canonical connector name; ``unavailable`` maps each known one to why it cannot run
    here (``None``: it can)."""
    canonical = {c.lower(): c for c in CONNECTORS}
    key = name.strip().lower()
    if key in {"piafsdk", "afsdk", "pi_af_sdk"}:
        raise RequestRejected("connectorType", AF_SDK_MESSAGE)
    if key not in canonical:
        raise RequestRejected(
            "connectorType", f"unknown connector {name!r}; use one of {', '.join(CONNECTORS)}"
        )
    connector = canonical[key]
    reason = unavailable.get(connector)
    if reason:
        raise RequestRejected("connectorType", f"{connector} is not configured: {reason}")
    return connector


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def validate(
    body: StartBody,
    limits: Limits,
    unavailable: Mapping[str, str | None],
    *,
    now: datetime | None = None,
    request_id: str | None = None,
) -> BackfillRequest:
    """Check a body against the rules and fix its plan; ``RequestRejected`` names the field."""
    connector = resolve_connector(body.connector_type, unavailable)
    points = [p.strip() for p in body.point_addresses]
    if not points:
        raise RequestRejected("pointAddresses", "no points: give at least one point address")
    if any(not p for p in points):
        raise RequestRejected("pointAddresses", "empty point address")
    duplicates = sorted(p for p, n in Counter(points).items() if n > 1)
    if duplicates:
        raise RequestRejected("pointAddresses", f"duplicate points: {', '.join(duplicates[:10])}")
    if len(points) > limits.max_points:
        raise RequestRejected(
            "pointAddresses",
            f"{len(points)} points exceed the limit of {limits.max_points} per request "
            "(MAX_POINTS_PER_REQUEST); split the request",
        )
    start, end = _utc(body.start_time), _utc(body.end_time)
    if end <= start:
        raise RequestRejected("endTime", f"endTime {end.isoformat()} is not after startTime")
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
    return BackfillRequest(
        request_id=request_id or str(uuid.uuid4()),
        connector_type=connector,
        points=tuple(points),
        start_us=start_us,
        end_us=end_us,
        chunk_size=body.chunk_size if body.chunk_size is not None else format_timespan(chunk),
        chunk_us=chunk_us,
        step_us=grid.step_us,
        group_size=limits.group_size,
        queued_at=now or datetime.now(UTC),
    )


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
