"""Query answers on the wire: JSON (small answers), NDJSON and Arrow IPC (streamed).

JSON is the seed's envelope with one series per point, columns as arrays (timestamps as
ISO-8601 strings). NDJSON is one row a line, written a batch at a time. Arrow IPC is the fast
path for large answers: one stream, a ``pointId`` column beside the archive's columns; a
year of 1-minute data crosses in a few MB.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from archive.fileformat import SCHEMA

BATCH = 65_536
ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
OUT_SCHEMA = pa.schema([pa.field("pointId", pa.string()), *SCHEMA]).remove_metadata()


def _iso(table: pa.Table) -> list[str]:
    out: list[str] = pc.strftime(table.column("ts"), "%Y-%m-%dT%H:%M:%S.%fZ").to_pylist()
    # %f gives microseconds with pyarrow's nanosecond-capable formatter: keep 6 digits
    return [s[:26] + "Z" if len(s) > 27 else s for s in out]


def _values(table: pa.Table) -> list[float | None]:
    values: list[float | None] = []
    for v in table.column("value").to_pylist():
        values.append(None if v is None or math.isnan(v) else v)  # NaN is not JSON
    return values


def to_json(answers: list[tuple[str, pa.Table]]) -> dict[str, Any]:
    series = []
    for point, table in answers:
        series.append(
            {
                "pointId": point,
                "count": table.num_rows,
                "timestamps": _iso(table),
                "values": _values(table),
                "quality": table.column("quality").to_pylist(),
                "text": table.column("text").to_pylist(),
            }
        )
    return {"success": True, "data": {"series": series}}


def ndjson_lines(answers: list[tuple[str, pa.Table]]) -> Iterator[str]:
    for point, table in answers:
        for batch in table.to_batches(BATCH):
            part = pa.Table.from_batches([batch])
            stamps, values = _iso(part), _values(part)
            quality, text = part.column("quality").to_pylist(), part.column("text").to_pylist()
            for i in range(part.num_rows):
                row = {
                    "pointId": point,
                    "ts": stamps[i],
                    "value": values[i],
                    "quality": quality[i],
                    "text": text[i],
                }
                yield json.dumps(row, separators=(",", ":")) + "\n"


def to_arrow_stream(answers: list[tuple[str, pa.Table]]) -> Iterator[bytes]:
    """Arrow IPC stream bytes, a batch at a time."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, OUT_SCHEMA) as writer:
        for point, table in answers:
            ids = pa.array([point] * table.num_rows, pa.string())
            full = pa.Table.from_arrays([ids, *table.columns], schema=OUT_SCHEMA)
            for batch in full.to_batches(BATCH):
                writer.write_batch(batch)
                yield sink.getvalue()
                sink.seek(0)
                sink.truncate()
    yield sink.getvalue()
