"""The archive object: schema, footer metadata, and detection of damaged or foreign objects."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive.errors import CorruptObjectError
from archive.fileformat import SCHEMA, checksum, conform, decode, encode
from archive.keys import Month

MONTH = Month(2024, 1)


def month_table(n: int = 44_640, text: bool = False) -> pa.Table:
    start = int(MONTH.start.timestamp() * 1_000_000)
    ts = start + np.arange(n, dtype=np.int64) * 60_000_000
    values = np.round(50 + 50 * np.sin(np.arange(n) / 300), 4)
    return conform(
        pa.table(
            {
                "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "value": values,
                "quality": pa.array(np.arange(n) % 3, pa.int8()),
                "text": pa.array([f"s{i % 5}" if text else None for i in range(n)], pa.string()),
                "connector": pa.array(["Simulator"] * n),
            }
        )
    )


def test_round_trip_keeps_rows_and_footer() -> None:
    """Encoded then decoded: same rows, schema, and footer facts (rows, first/last, sum)."""
    table = month_table(text=True)
    data, meta = encode(table, "P", MONTH)
    back, read_meta = decode(data, "k", "P", MONTH)
    assert back.schema == SCHEMA
    assert back.equals(table)
    assert read_meta == meta
    assert meta.rows == 44_640
    assert meta.first_ts == datetime(2024, 1, 1, tzinfo=UTC)
    assert meta.last_ts == datetime(2024, 1, 31, 23, 59, tzinfo=UTC)


def test_simulator_like_month_is_well_under_six_bytes_a_value() -> None:
    """A 1-minute sine month packs far below the 6 bytes/value goal."""
    data, meta = encode(month_table(), "P", MONTH)
    assert len(data) / meta.rows < 6


def test_checksum_is_layout_independent() -> None:
    """The same rows in other chunks give the same sum; one changed value changes it."""
    table = month_table(1000)
    rechunked = pa.concat_tables([table.slice(0, 10), table.slice(10)])
    assert checksum(rechunked) == checksum(table)
    values = table.column("value").to_numpy().copy()
    values[500] += 1e-9
    assert checksum(table.set_column(1, "value", pa.array(values))) != checksum(table)


def test_truncated_object_is_detected() -> None:
    """A cut-off object is corrupt, naming the key."""
    data, _ = encode(month_table(), "P", MONTH)
    with pytest.raises(CorruptObjectError, match="the/key"):
        decode(data[: len(data) // 2], "the/key", "P", MONTH)


def test_foreign_objects_are_detected() -> None:
    """Another point's or month's object, or a Parquet file without our footer, is foreign."""
    data, _ = encode(month_table(), "P", MONTH)
    with pytest.raises(CorruptObjectError, match="foreign"):
        decode(data, "k", "Q", MONTH)
    with pytest.raises(CorruptObjectError, match="foreign"):
        decode(data, "k", "P", Month(2024, 2))
    sink = io.BytesIO()
    pq.write_table(month_table(), sink)
    with pytest.raises(CorruptObjectError, match="no histfill footer"):
        decode(sink.getvalue(), "k", "P", MONTH)


def test_rows_disagreeing_with_the_footer_are_detected() -> None:
    """An object whose rows were altered but kept its footer fails the checksum."""
    table = month_table(100)
    data, _ = encode(table, "P", MONTH)
    footer = pq.read_table(io.BytesIO(data)).schema.metadata
    values = table.column("value").to_numpy().copy()
    values[3] = -1.0
    forged = table.set_column(1, "value", pa.array(values)).replace_schema_metadata(footer)
    sink = io.BytesIO()
    pq.write_table(forged, sink)
    with pytest.raises(CorruptObjectError, match="checksum"):
        decode(sink.getvalue(), "k", "P", MONTH)
