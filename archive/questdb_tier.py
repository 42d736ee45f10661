"""The hot tier: reading point-months (and query windows) out of QuestDB as Arrow tables.

QuestDB's HTTP ``/exp`` endpoint exports a query's result as Parquet (``fmt=parquet``): the
columns arrive typed and compressed, and pyarrow reads them without a row-by-row parse, which
is what makes >= 500 k values/s possible (CSV was 3-4x slower to parse). One request is one
point over one bounded window (a month, or a query's range), so memory stays bounded by a
point-month whatever the run's range.
"""

from __future__ import annotations

import io
import threading
import time
from datetime import datetime

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from archive.errors import ArchiveError
from archive.fileformat import conform, empty
from shared.errors import SinkError
from shared.qdb import QuestDBSQL
from shared.settings import CommonSettings

EXPORT_SLOTS = 2  # QuestDB's default http_export_connections
EXPORT_RETRIES = 60


def literal(text: str) -> str:
    """A SQL string literal (QuestDB: single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def ts_literal(moment: datetime) -> str:
    return literal(moment.isoformat().replace("+00:00", "Z"))


class QuestTier:
    """Reads from one QuestDB table over HTTP (``/exp`` Parquet, ``/exec`` for counts)."""

    def __init__(
        self, base_url: str, table: str, auth: tuple[str, str] | None = None, timeout: float = 60
    ) -> None:
        self.table = table
        self._client = httpx.Client(base_url=base_url, auth=auth, timeout=timeout)
        self.sql = QuestDBSQL(base_url, auth, timeout)
        self._exports = threading.BoundedSemaphore(EXPORT_SLOTS)

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> QuestTier:
        return cls(settings.qdb_http_url, settings.qdb_table, settings.qdb_http_auth)

    def close(self) -> None:
        self._client.close()
        self.sql.close()

    def _where(self, point: str, start: datetime, end: datetime) -> str:
        return (
            f"source_address = {literal(point)} AND ts >= {ts_literal(start)} "
            f"AND ts < {ts_literal(end)}"
        )

    def read(
        self, point: str, start: datetime, end: datetime, limit: int | None = None
    ) -> pa.Table:
        """One point's rows in ``[start, end)``, time-ordered, in the archive schema."""
        query = (
            "SELECT ts, value, quality, text_value AS text, connector "  # noqa: S608  # literals escaped
            f"FROM {self.table} WHERE {self._where(point, start, end)} ORDER BY ts"
            + (f" LIMIT {int(limit)}" if limit is not None else "")
        )
        response = self.export(query)
        if response.status_code != 200:
            if "does not exist" in response.text:
                return empty()
            raise SinkError(f"QuestDB refused the export of {point!r}: {response.text[:300]}")
        try:
            table = pq.ParquetFile(io.BytesIO(response.content)).read(use_threads=False)
        except (pa.ArrowException, OSError) as exc:
            raise ArchiveError(f"QuestDB's export of {point!r} is not Parquet: {exc}") from exc
        if table.num_rows == 0:
            return empty()
        return conform(table)

    def export(self, query: str) -> httpx.Response:
        """GET /exp as Parquet. QuestDB serves few exports at once (``http_export_connections``,
        2 by default) and refuses the rest: at most that many here, and a refusal is retried
        with backoff (other processes may hold the slots)."""
        delay = 0.02
        with self._exports:
            for _ in range(EXPORT_RETRIES):
                try:
                    response = self._client.get("/exp", params={"query": query, "fmt": "parquet"})
                except httpx.HTTPError as exc:
                    raise SinkError(
                        f"QuestDB unreachable at {self._client.base_url}: {exc}"
                    ) from exc
                if response.status_code == 200 or "connection limit" not in response.text:
                    return response
                time.sleep(delay)  # a refused slot, not a test wait
                delay = min(delay * 2, 1.0)
        return response

    def day_counts(self, point: str, start: datetime, end: datetime) -> dict[int, int]:
        """Rows of one point per UTC day in ``[start, end)``: {days since 1970: rows}."""
        query = (
            f"SELECT ts, count() FROM {self.table} WHERE {self._where(point, start, end)} "  # noqa: S608
            "SAMPLE BY 1d ALIGN TO CALENDAR"
        )
        try:
            rows = self.sql.rows(query)
        except SinkError as exc:
            if "does not exist" in str(exc):
                return {}
            raise
        out: dict[int, int] = {}
        for ts, count in rows:
            day = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() // 86_400
            out[int(day)] = int(count)
        return out

    def count(self, point: str, start: datetime, end: datetime) -> int:
        """Rows of one point in ``[start, end)`` (0 when the table does not exist)."""
        query = f"SELECT count() FROM {self.table} WHERE {self._where(point, start, end)}"  # noqa: S608
        try:
            return int(self.sql.scalar(query) or 0)
        except SinkError as exc:
            if "does not exist" in str(exc):
                return 0
            raise
