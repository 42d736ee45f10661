"""QuestDB: the ``point_data`` table, created idempotently and checked for its dedup keys.

Exactly-once *results* rest on this table: the consumer delivers at least once (it commits Kafka
offsets only after QuestDB accepted the rows), so a crash can replay rows that were already
written. ``DEDUP UPSERT KEYS(ts, source_address)`` makes such a replay overwrite the same row
instead of adding a second one. A table that exists without those keys would silently double
values, so services refuse to start on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from shared.errors import SchemaMismatchError, SinkError
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)

DEDUP_KEYS = ("ts", "source_address")

# value is the reading; quality holds shared.batch.Quality flags (0 = good); text_value carries
# digital-state names and string values; connector and request_id say where a row came from.
CREATE_POINT_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    ts TIMESTAMP,
    source_address SYMBOL CAPACITY 65536 CACHE,
    value DOUBLE,
    quality BYTE,
    text_value VARCHAR,
    connector SYMBOL CAPACITY 16 CACHE,
    request_id SYMBOL CAPACITY 4096 CACHE
) TIMESTAMP(ts) PARTITION BY DAY WAL
DEDUP UPSERT KEYS(ts, source_address)
"""

# One row per point: its engineering unit as the source last gave it (see consumer.point_units).
# ts is always the epoch, so the dedup keys make every write an upsert of the point's one row.
CREATE_POINTS_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    ts TIMESTAMP,
    source_address SYMBOL CAPACITY 65536 CACHE,
    unit SYMBOL CAPACITY 1024 CACHE,
    connector SYMBOL CAPACITY 16 CACHE,
    updated TIMESTAMP
) TIMESTAMP(ts) PARTITION BY YEAR WAL
DEDUP UPSERT KEYS(ts, source_address)
"""


def points_table(table: str) -> str:
    """The per-point table beside a value table: ``point_data`` -> ``point_data_points``."""
    return f"{table}_points"


class QuestDBSQL:
    """SQL over QuestDB's HTTP ``/exec`` endpoint (DDL, checks, counts)."""

    def __init__(
        self,
        base_url: str,
        auth: tuple[str, str] | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url, auth=auth, timeout=timeout, transport=transport
        )

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> QuestDBSQL:
        return cls(settings.qdb_http_url, settings.qdb_http_auth)

    def exec(self, query: str) -> dict[str, Any]:
        """Run one statement; errors come back as SinkError naming the query."""
        try:
            response = self._client.get("/exec", params={"query": query})
        except httpx.HTTPError as exc:
            raise SinkError(f"QuestDB unreachable at {self._client.base_url}: {exc}") from exc
        body: dict[str, Any] = response.json() if response.content else {}
        if response.status_code != 200 or "error" in body:
            raise SinkError(
                f"QuestDB rejected {query.strip()[:200]!r}: {body.get('error', response.text)}"
            )
        return body

    def rows(self, query: str) -> list[list[Any]]:
        dataset: list[list[Any]] = self.exec(query).get("dataset", [])
        return dataset

    def scalar(self, query: str) -> Any:
        rows = self.rows(query)
        return rows[0][0] if rows else None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> QuestDBSQL:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class TableCheck:
    """What QuestDB says about an existing table."""

    wal: bool
    dedup: bool
    upsert_keys: tuple[str, ...]
    designated_timestamp: str | None
    partition_by: str

    def problems(self) -> list[str]:
        found = []
        if self.designated_timestamp != "ts":
            found.append(f"designated timestamp is {self.designated_timestamp!r}, not 'ts'")
        if not self.wal:
            found.append("it is not a WAL table (dedup needs WAL)")
        if not self.dedup or set(self.upsert_keys) != set(DEDUP_KEYS):
            found.append(
                f"its dedup upsert keys are {list(self.upsert_keys) or 'none'}, "
                f"not {list(DEDUP_KEYS)}: replayed messages would be stored twice"
            )
        return found


def inspect_table(sql: QuestDBSQL, table: str) -> TableCheck | None:
    """Read a table's WAL/dedup/timestamp facts, or None when it does not exist."""
    quoted = table.replace("'", "''")
    # the table name is validated by settings (identifier characters) and quoted as a literal
    where = f"WHERE table_name = '{quoted}'"
    query = "SELECT walEnabled, dedup, designatedTimestamp, partitionBy FROM tables() " + where  # noqa: S608
    meta = sql.rows(query)
    if not meta:
        return None
    wal, dedup, designated, partition_by = meta[0]
    keys = sql.rows(
        f"SELECT \"column\" FROM table_columns('{quoted}') WHERE upsertKey"  # noqa: S608  # as above
    )
    return TableCheck(bool(wal), bool(dedup), tuple(k[0] for k in keys), designated, partition_by)


def ensure_point_table(sql: QuestDBSQL, table: str) -> TableCheck:
    """Create the table, and its points table, if missing; refuse (SchemaMismatchError) either
    without the dedup keys. A table made before the points table existed gets it here."""
    check = _ensure(sql, table, CREATE_POINT_TABLE)
    _ensure(sql, points_table(table), CREATE_POINTS_TABLE)
    return check


def _ensure(sql: QuestDBSQL, table: str, create: str) -> TableCheck:
    sql.exec(create.format(table=table))
    check = inspect_table(sql, table)
    if check is None:  # pragma: no cover - CREATE just succeeded
        raise SinkError(f"table {table} is missing right after CREATE TABLE")
    problems = check.problems()
    if problems:
        raise SchemaMismatchError(
            f"QuestDB table {table!r} exists but cannot give exactly-once results: "
            + "; ".join(problems)
            + f". Fix it (e.g. `ALTER TABLE {table} DEDUP ENABLE UPSERT KEYS(ts, source_address)`)"
            " or point QDB_TABLE at another table."
        )
    log.info("questdb_table_ready", table=table, partition_by=check.partition_by)
    return check
