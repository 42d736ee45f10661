"""QuestDB: the ``point_data`` table, created idempotently and checked for its dedup keys.

Exactly-once *results* rest on this table: the consumer delivers at least once (it commits Kafka
offsets only after QuestDB accepted the rows), so a crash can replay rows that were already
written. ``DEDUP UPSERT KEYS(ts, source_address)`` makes such a replay overwrite the same row
instead of adding a second one. A table that exists without those keys would silently double
values, so services refuse to start on it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import httpx
import structlog

from shared.errors import SchemaMismatchError, SinkError
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)

DEDUP_KEYS = ("ts", "source_address")

# value is the reading; quality holds shared.batch.Quality flags (0 = good); text_value carries
# digital-state names and string values; connector says which historian a row came from.
# {extra} is the optional request_id column, {partition_by} the layout's partitioning.
_POINT_TABLE_TEMPLATE = """
CREATE TABLE IF NOT EXISTS {{table}} (
    ts TIMESTAMP,
    source_address SYMBOL CAPACITY 65536 CACHE,
    value DOUBLE,
    quality BYTE,
    text_value VARCHAR,
    connector SYMBOL CAPACITY 16 CACHE{extra}
) TIMESTAMP(ts) PARTITION BY {partition_by} WAL
DEDUP UPSERT KEYS(ts, source_address)
"""

PARTITIONINGS = ("DAY", "WEEK", "MONTH", "YEAR")


@dataclass(frozen=True)
class PointTableLayout:
    """How a new point table is laid out: its partitioning, and whether each row names the
    backfill request that wrote it (a symbol column; the state topic records that too).

    Measured side by side on the same data (``bench/ceiling.py``, README "Benchmarks"): the
    ``request_id`` column costs 7-28 % of QuestDB's ingest rate (19 more ILP bytes per
    row, one more column for every out-of-order rewrite), so it is off by default. Day
    partitions stay: weeks and months were no faster and rewrite more per out-of-order commit,
    and the archive's hot window drops whole days.
    """

    partition_by: str = "DAY"
    request_id: bool = False

    def __post_init__(self) -> None:
        if self.partition_by not in PARTITIONINGS:
            raise ValueError(f"partition_by must be one of {PARTITIONINGS}: {self.partition_by!r}")

    @property
    def name(self) -> str:
        return self.partition_by + ("+request_id" if self.request_id else "")

    @classmethod
    def parse(cls, name: str) -> PointTableLayout:
        """``DAY``, ``MONTH+request_id``, ... (the form :attr:`name` gives)."""
        partition, *options = name.strip().split("+")
        if any(option.lower() != "request_id" for option in options):
            raise ValueError(f"unknown layout option in {name!r} (only '+request_id')")
        return cls(partition.upper(), request_id=bool(options))

    def ddl(self, table: str) -> str:
        extra = ",\n    " + REQUEST_ID_COLUMN if self.request_id else ""
        template = _POINT_TABLE_TEMPLATE.format(extra=extra, partition_by=self.partition_by)
        return template.format(table=table)


REQUEST_ID_COLUMN = "request_id SYMBOL CAPACITY 4096 CACHE"

# The table as it was before the layout became configurable (day partitions, request_id).
CREATE_POINT_TABLE = PointTableLayout("DAY", request_id=True).ddl("{table}")

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
    columns: frozenset[str] = frozenset()

    @property
    def has_request_id(self) -> bool:
        """Whether rows carry the request that wrote them: the consumer writes the column
        exactly when the table has it."""
        return "request_id" in self.columns

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

    def differences(self, table: str, layout: PointTableLayout) -> list[str]:
        """How an existing table differs from the layout a new one would get, and what that
        means; none of these stops a service (unlike :meth:`problems`)."""
        found = []
        if self.has_request_id and not layout.request_id:
            found.append(
                f"{table} has a request_id column (the layout before QDB_REQUEST_ID_COLUMN): "
                "the consumer keeps filling it; `ALTER TABLE "
                f"{table} DROP COLUMN request_id` makes QuestDB's ingest 7-28 % faster "
                "(the state topic still records which request wrote which points and times)"
            )
        if self.partition_by != layout.partition_by:
            found.append(
                f"{table} is partitioned by {self.partition_by}, not {layout.partition_by}: "
                "it works; the archive's hot window drops only day partitions"
            )
        return found


def inspect_table(sql: QuestDBSQL, table: str) -> TableCheck | None:
    """Read a table's WAL/dedup/timestamp facts and columns, or None when it does not exist."""
    quoted = table.replace("'", "''")
    # the table name is validated by settings (identifier characters) and quoted as a literal
    where = f"WHERE table_name = '{quoted}'"
    query = "SELECT walEnabled, dedup, designatedTimestamp, partitionBy FROM tables() " + where  # noqa: S608
    meta = sql.rows(query)
    if not meta:
        return None
    wal, dedup, designated, partition_by = meta[0]
    columns = sql.rows(
        f"SELECT \"column\", upsertKey FROM table_columns('{quoted}')"  # noqa: S608  # as above
    )
    keys = tuple(c[0] for c in columns if c[1])
    names = frozenset(c[0] for c in columns)
    return TableCheck(bool(wal), bool(dedup), keys, designated, partition_by, names)


def ensure_point_table(
    sql: QuestDBSQL, table: str, layout: PointTableLayout | None = None
) -> TableCheck:
    """Create the table (in ``layout``, default :class:`PointTableLayout`) and its points table
    if missing; refuse (SchemaMismatchError) either without the dedup keys. An existing table
    keeps its layout, and what differs is logged with what it means; a layout asking for
    ``request_id`` adds the column to a table without it. A table made before the points
    table existed gets it here."""
    layout = layout or PointTableLayout()
    check = _ensure(sql, table, layout.ddl("{table}"))
    if layout.request_id and not check.has_request_id:
        sql.exec(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {REQUEST_ID_COLUMN}")
        log.warning("questdb_column_added", table=table, column="request_id")
        # a WAL table applies the change asynchronously, in order before any later write
        check = replace(check, columns=check.columns | {"request_id"})
    for difference in check.differences(table, layout):
        log.warning("questdb_table_layout_differs", table=table, explanation=difference)
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
