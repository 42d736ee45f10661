"""One archive object: a point-month as a Parquet file that can be checked on its own.

Columns: ``ts`` timestamp[us, UTC], ``value`` double, ``quality`` int8 (shared.batch.Quality
flags), ``text`` string (null for numeric values), ``connector`` dictionary string. Rows are
sorted by ``ts``, each timestamp once (QuestDB's dedup keys guarantee it for the source).

The footer's key-value metadata makes an object checkable without trusting its name: the
schema version, the point id and month it holds, the row count, the first and last timestamps,
and ``histfill.sha256``: a SHA-256 over the columns' canonical bytes (see :func:`checksum`).
An object whose metadata is missing, names another point or month, or disagrees with its own
rows is corrupt (truncated, foreign or damaged) and gets rewritten.

Encodings were chosen by measurement on the simulator's 1-minute data (README, "Archive
format"): DELTA_BINARY_PACKED for ``ts`` (regular spacing packs to a few bits a row), a
dictionary for ``value`` (sensor values repeat: quantised readings, periodic signals; the
writer falls back to PLAIN by itself once the dictionary passes 1 MiB), dictionaries for
``quality``, ``text`` and ``connector``, ZSTD level 3 over everything (level 9 saved 1 % for
3x the CPU; BYTE_STREAM_SPLIT for ``value`` measured 1.4-2x larger than the dictionary).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from archive.errors import CorruptObjectError
from archive.keys import Month

SCHEMA_VERSION = "1"
SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("quality", pa.int8()),
        pa.field("text", pa.string()),
        pa.field("connector", pa.dictionary(pa.int8(), pa.string())),
    ]
)
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3
ENCODINGS = {"ts": "DELTA_BINARY_PACKED"}
DICTIONARY = ["value", "quality", "text", "connector"]
META_PREFIX = "histfill."
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ObjectMeta:
    """What an object's footer says about it."""

    point: str
    month: Month
    rows: int
    first_ts: datetime | None
    last_ts: datetime | None
    sha256: str


def conform(table: pa.Table) -> pa.Table:
    """The table in the archive schema, sorted by time (columns by name; text optional)."""
    n = table.num_rows
    text = table.column("text") if "text" in table.column_names else pa.nulls(n, pa.string())
    columns = [
        table.column("ts").cast(pa.timestamp("us", tz="UTC")),
        table.column("value").cast(pa.float64()),
        table.column("quality").cast(pa.int8()),
        text.cast(pa.string()),
        table.column("connector").cast(pa.string()).dictionary_encode().cast(SCHEMA[4].type),
    ]
    out = pa.Table.from_arrays(columns, schema=SCHEMA)
    if n > 1:
        out = out.sort_by("ts")
    return out.combine_chunks()


def _string_bytes(column: pa.ChunkedArray | pa.Array) -> tuple[bytes, bytes, bytes]:
    """Validity, lengths and data of a string column, independent of its physical layout
    (chunks, slicing, dictionary encoding): read from the Arrow buffers, no Python strings."""
    array = column.cast(pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    valid = np.asarray(pc.is_valid(array), dtype=np.uint8).tobytes()
    filled = pc.fill_null(array, "")
    lengths = np.asarray(pc.binary_length(filled), dtype="<i4")
    if len(filled) == 0 or not lengths.any():
        return valid, lengths.tobytes(), b""
    offsets = np.frombuffer(filled.buffers()[1], dtype="<i4")
    first, last = offsets[filled.offset], offsets[filled.offset + len(filled)]
    data = filled.buffers()[2].to_pybytes()[first:last]
    return valid, lengths.tobytes(), data


def checksum(table: pa.Table) -> str:
    """SHA-256 over the columns in schema order: ts as little-endian int64 microseconds,
    value as little-endian float64, quality as int8, then text and connector each as a
    validity byte per row, int32 lengths and UTF-8 bytes. Layout-independent, so the same rows
    give the same sum whichever writer or reader produced them."""
    digest = hashlib.sha256()
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    digest.update(np.ascontiguousarray(ts, dtype="<i8").tobytes())
    value = np.asarray(pc.fill_null(table.column("value"), np.nan).to_numpy(), dtype="<f8")
    digest.update(value.tobytes())
    quality = pc.fill_null(table.column("quality"), 0).to_numpy()
    digest.update(np.ascontiguousarray(quality, dtype="i1").tobytes())
    for name in ("text", "connector"):
        for part in _string_bytes(table.column(name)):
            digest.update(part)
    return digest.hexdigest()


def _iso(ts: datetime | None) -> str:
    return "" if ts is None else ts.isoformat()


def _bounds(table: pa.Table) -> tuple[datetime | None, datetime | None]:
    """First and last ``ts`` as UTC datetimes. Read as int64 microseconds, not through
    ``TimestampScalar.as_py()``: that imports pandas (~45 MB RSS) on its first call."""
    if table.num_rows == 0:
        return None, None
    ts = table.column("ts").cast(pa.int64())
    first, last = ts[0].as_py(), ts[table.num_rows - 1].as_py()
    return _EPOCH + timedelta(microseconds=first), _EPOCH + timedelta(microseconds=last)


def encode(table: pa.Table, point: str, month: Month) -> tuple[bytes, ObjectMeta]:
    """The Parquet bytes of one point-month (``table`` already conformed) and its metadata."""
    first, last = _bounds(table)
    meta = ObjectMeta(point, month, table.num_rows, first, last, checksum(table))
    kv = {
        "schema_version": SCHEMA_VERSION,
        "point_id": point,
        "month": str(month),
        "rows": str(meta.rows),
        "first_ts": _iso(first),
        "last_ts": _iso(last),
        "sha256": meta.sha256,
    }
    schema = SCHEMA.with_metadata({f"{META_PREFIX}{k}": v for k, v in kv.items()})
    sink = io.BytesIO()
    pq.write_table(
        table.replace_schema_metadata(schema.metadata),
        sink,
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
        use_dictionary=DICTIONARY,
        column_encoding=ENCODINGS,
        write_statistics=["ts"],
        store_schema=True,
    )
    return sink.getvalue(), meta


def decode(data: bytes, key: str, point: str, month: Month) -> tuple[pa.Table, ObjectMeta]:
    """Read and check an object: parse, footer metadata present and naming this point-month,
    rows, bounds, time order and checksum all as the footer says. CorruptObjectError otherwise."""
    try:
        table = pq.ParquetFile(io.BytesIO(data)).read(use_threads=False)
    except (pa.ArrowException, OSError) as exc:
        raise CorruptObjectError(key, f"not a readable Parquet file ({exc})") from None
    raw = {
        k.decode(): v.decode()
        for k, v in (table.schema.metadata or {}).items()
        if k.startswith(META_PREFIX.encode())
    }
    kv = {k.removeprefix(META_PREFIX): v for k, v in raw.items()}
    needed = ("schema_version", "point_id", "month", "rows", "first_ts", "last_ts", "sha256")
    if any(k not in kv for k in needed):
        raise CorruptObjectError(key, "foreign object: no histfill footer metadata")
    if kv["schema_version"] != SCHEMA_VERSION:
        raise CorruptObjectError(key, f"unknown schema version {kv['schema_version']!r}")
    if kv["point_id"] != point or kv["month"] != str(month):
        raise CorruptObjectError(
            key, f"foreign object: holds {kv['point_id']!r} {kv['month']}, not {point!r} {month}"
        )
    if table.schema.remove_metadata() != SCHEMA:
        raise CorruptObjectError(key, f"schema differs from the archive's: {table.schema}")
    table = table.replace_schema_metadata(None).combine_chunks()
    first, last = _bounds(table)
    meta = ObjectMeta(
        point,
        month,
        int(kv["rows"]),
        datetime.fromisoformat(kv["first_ts"]) if kv["first_ts"] else None,
        datetime.fromisoformat(kv["last_ts"]) if kv["last_ts"] else None,
        kv["sha256"],
    )
    problems = []
    if table.num_rows != meta.rows:
        problems.append(f"{table.num_rows} rows, footer says {meta.rows}")
    if (first, last) != (meta.first_ts, meta.last_ts):
        problems.append(
            f"rows span {_iso(first)}..{_iso(last)}, footer says "
            f"{_iso(meta.first_ts)}..{_iso(meta.last_ts)}"
        )
    if first is not None and last is not None and (first < month.start or last >= month.end):
        problems.append(f"rows outside {month}")
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    if len(ts) > 1 and not bool(np.all(np.diff(ts) > 0)):
        problems.append("timestamps not strictly increasing")
    if not problems and checksum(table) != meta.sha256:
        problems.append("content checksum differs from the footer's")
    if problems:
        raise CorruptObjectError(key, "; ".join(problems))
    return table, meta


def empty() -> pa.Table:
    return SCHEMA.empty_table()


def utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC)
