"""What QuestDB holds for a batch of points over a window: one query, columns, no row loop.

The re-pull compares the source with QuestDB for hundreds of points at a time. One ``/exp``
request per batch of points answers as Parquet (QuestDB's typed, compressed export: pyarrow reads
it without parsing text, as the archive's hot tier does), and the rows are split per point with
one sort and a search over the point column, so the cost is a few array operations per batch,
not a Python object per value.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx
import numpy as np

from producer.upkeep.diff import Rows, no_rows
from shared.batch import from_micros
from shared.errors import SinkError
from shared.settings import CommonSettings

if TYPE_CHECKING:
    import pyarrow as pa

EXPORT_SLOTS = 2
"""QuestDB's default ``http_export_connections``: more at once are refused."""
_EMPTY = no_rows()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ts(micros: int) -> str:
    return _literal(from_micros(micros).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def window_query(table: str, points: Sequence[str], start_us: int, end_us: int) -> str:
    """The rows of ``points`` in ``[start_us, end_us)``, ordered by point and time."""
    names = ", ".join(_literal(p) for p in points)
    return (
        "SELECT source_address, cast(ts AS long) t, value, quality, text_value "  # noqa: S608  # literals escaped, table from settings
        f"FROM {table} WHERE ts >= {_ts(start_us)} AND ts < {_ts(end_us)} "
        f"AND source_address IN ({names})"
    )


def split_by_point(table: pa.Table, points: Sequence[str]) -> dict[str, Rows]:
    """Per point its rows, time-sorted (points without rows are absent)."""
    if table.num_rows == 0:
        return {}
    names = table.column("source_address").combine_chunks().dictionary_encode()
    dictionary = names.dictionary.to_pylist()
    codes = names.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ts = table.column("t").to_numpy().astype(np.int64)
    values = table.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    quality_column = table.column("quality").combine_chunks().fill_null(0)
    quality = quality_column.to_numpy(zero_copy_only=False).astype(np.uint8)
    texts_column = table.column("text_value").combine_chunks()
    has_texts = texts_column.null_count < len(texts_column)
    texts = texts_column.to_pylist() if has_texts else None
    order = np.lexsort((ts, codes))
    codes = codes[order]
    bounds = np.searchsorted(codes, np.arange(len(dictionary) + 1))
    wanted = set(points)
    out: dict[str, Rows] = {}
    for code, name in enumerate(dictionary):
        if name not in wanted:
            continue
        idx = order[bounds[code] : bounds[code + 1]]
        point_texts = None
        if texts is not None:
            point_texts = [texts[i] or "" for i in idx.tolist()]
            if not any(point_texts):
                point_texts = None
        out[name] = Rows(ts[idx], values[idx], quality[idx], point_texts)
    return out


class QuestDBRows:
    """Reads windows of many points from the settings' table over QuestDB's HTTP ``/exp``."""

    def __init__(self, settings: CommonSettings, timeout_s: float = 60.0) -> None:
        self.table = settings.qdb_table
        self._client = httpx.Client(
            base_url=settings.qdb_http_url, auth=settings.qdb_http_auth, timeout=timeout_s
        )
        self._slots = threading.BoundedSemaphore(EXPORT_SLOTS)

    def close(self) -> None:
        self._client.close()

    def read(self, points: Sequence[str], start_us: int, end_us: int) -> dict[str, Rows]:
        """Each point's rows in ``[start_us, end_us)`` (an empty table for a point without)."""
        query = window_query(self.table, points, start_us, end_us)
        response = self._export(query)
        if response.status_code != 200:
            if "does not exist" in response.text:
                return dict.fromkeys(points, _EMPTY)
            raise SinkError(f"QuestDB refused the re-pull's read: {response.text[:300]}")
        try:
            # imported here: pyarrow is ~30 MB of the producer's memory, needed by re-pulls only
            import pyarrow as pa  # noqa: PLC0415
            import pyarrow.parquet as pq  # noqa: PLC0415

            table = pq.ParquetFile(io.BytesIO(response.content)).read(use_threads=False)
        except (pa.ArrowException, OSError) as exc:
            raise SinkError(f"QuestDB's export is not Parquet: {exc}") from exc
        found = split_by_point(table, points)
        return {p: found.get(p, _EMPTY) for p in points}

    def _export(self, query: str) -> httpx.Response:
        """GET /exp as Parquet; a refused export slot (other readers hold them) is retried."""
        delay = 0.02
        with self._slots:
            for _ in range(60):
                try:
                    response = self._client.get("/exp", params={"query": query, "fmt": "parquet"})
                except httpx.HTTPError as exc:
                    raise SinkError(f"QuestDB unreachable: {exc}") from exc
                if response.status_code == 200 or "connection limit" not in response.text:
                    return response
                time.sleep(delay)  # backoff on a refused slot, not a test wait
                delay = min(delay * 2, 1.0)
        return response

    def wal_pending(self) -> tuple[int, int] | None:
        """``(writerTxn, sequencerTxn)`` of the table: rows the consumer wrote are visible to a
        query once the writer has applied the sequencer's transactions (WAL tables apply
        asynchronously). ``None`` when the table does not exist yet."""
        query = (
            "SELECT writerTxn, sequencerTxn FROM wal_tables() "  # noqa: S608  # literal escaped
            f"WHERE name = {_literal(self.table)}"
        )
        try:
            response = self._client.get("/exec", params={"query": query})
        except httpx.HTTPError as exc:
            raise SinkError(f"QuestDB unreachable: {exc}") from exc
        dataset = response.json().get("dataset") if response.status_code == 200 else None
        if not dataset:
            return None
        return int(dataset[0][0]), int(dataset[0][1])
