"""The point table on a real QuestDB: created idempotently, dedup proven, bad tables refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from questdb import QuestDBError, Sender
from structlog.testing import capture_logs

from consumer.questdb_sink import QuestDBSink, RejectReason, StreamRejectedError
from shared.batch import PointBatch
from shared.errors import SchemaMismatchError
from shared.qdb import (
    CREATE_POINT_TABLE,
    PointTableLayout,
    QuestDBSQL,
    ensure_point_table,
    inspect_table,
    points_table,
)
from shared.settings import ConsumerSettings
from tests.helpers import wait_for

pytestmark = pytest.mark.stack


def _frame(n: int, address: str = "SINUSOID") -> pd.DataFrame:
    base_us = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
    return pd.DataFrame(
        {
            "source_address": pd.Categorical([address] * n),
            "value": np.linspace(0.0, 100.0, n),
            "quality": np.zeros(n, dtype=np.int64),
            "connector": pd.Categorical(["Simulator"] * n),
            "ts": pd.to_datetime(
                base_us + np.arange(n, dtype=np.int64) * 60_000_000, unit="us", utc=True
            ),
        }
    )


def _write(settings: ConsumerSettings, frame: pd.DataFrame) -> None:
    with Sender.from_conf(settings.qdb_client_conf.get_secret_value()) as sender:
        sender.dataframe(
            frame, table_name=settings.qdb_table, symbols=["source_address", "connector"], at="ts"
        )
        sender.flush()


def _count(qdb: QuestDBSQL, table: str) -> int:
    return int(qdb.scalar(f"SELECT count() FROM {table}"))


def _ten_points_and_a_replay() -> list[PointBatch]:
    """10 points x 2,000 values, then a replay of P3's first 500 with new values (-3.0), later
    in the same flush."""
    start = 1_704_067_200_000_000  # 2024-01-01
    stamps = start + np.arange(2_000, dtype=np.int64) * 60_000_000
    batches = [
        PointBatch(
            f"P{p}", "Simulator", stamps, np.full(2_000, float(p)), np.zeros(2_000, np.uint8)
        )
        for p in range(10)
    ]
    batches.append(
        PointBatch("P3", "Simulator", stamps[:500], np.full(500, -3.0), np.zeros(500, np.uint8))
    )
    return batches


def _assert_once_with_the_replay_winning(qdb: QuestDBSQL, table: str) -> None:
    """Every row of ``_ten_points_and_a_replay`` once, and the replay's values kept."""
    wait_for(lambda: _count(qdb, table) == 20_000)
    assert qdb.rows(
        f"SELECT count() FROM {table} WHERE source_address = 'P3' AND value = -3.0"
    ) == [[500]]
    doubled = qdb.rows(
        f"SELECT * FROM (SELECT ts, source_address, count() c FROM {table} "
        "GROUP BY ts, source_address) WHERE c > 1"
    )
    assert doubled == []


def test_table_is_created_with_wal_and_dedup_keys(
    settings: ConsumerSettings, qdb: QuestDBSQL
) -> None:
    """ensure_point_table creates a WAL, day-partitioned table keyed on (ts, source_address)."""
    ensure_point_table(qdb, settings.qdb_table)
    ensure_point_table(qdb, settings.qdb_table)  # idempotent: the second call changes nothing
    check = inspect_table(qdb, settings.qdb_table)
    assert check is not None
    assert check.wal
    assert check.dedup
    assert check.partition_by == "DAY"
    assert set(check.upsert_keys) == {"ts", "source_address"}
    assert check.designated_timestamp == "ts"


def test_rows_written_over_ilp_read_back_and_replay_is_deduplicated(
    settings: ConsumerSettings, qdb: QuestDBSQL
) -> None:
    """Rows sent over ILP/HTTP come back with SQL; sending them again leaves the count unchanged."""
    ensure_point_table(qdb, settings.qdb_table)
    frame = _frame(5_000)
    _write(settings, frame)
    wait_for(lambda: _count(qdb, settings.qdb_table) == 5_000)
    first = qdb.rows(f"SELECT ts, value FROM {settings.qdb_table} WHERE value = 100.0")
    assert first == [["2024-01-04T11:19:00.000000Z", 100.0]]

    # A replay (what a consumer does after a crash before committing) plus 10 new rows at the end.
    replay = pd.concat([frame, _frame(5_010).iloc[5_000:]], ignore_index=True)
    replay.loc[0, "value"] = -1.0  # the upsert keeps the newest write for a key
    _write(settings, replay)
    wait_for(lambda: _count(qdb, settings.qdb_table) == 5_010)
    doubled = qdb.rows(
        f"SELECT * FROM (SELECT ts, source_address, count() c FROM {settings.qdb_table} "
        "GROUP BY ts, source_address) WHERE c > 1"
    )
    assert doubled == []
    assert qdb.scalar(f"SELECT value FROM {settings.qdb_table} LIMIT 1") == -1.0


def test_table_without_dedup_keys_is_refused(settings: ConsumerSettings, qdb: QuestDBSQL) -> None:
    """A pre-existing table lacking the dedup keys stops start-up with the reason and the fix."""
    qdb.exec(
        f"CREATE TABLE {settings.qdb_table} (ts TIMESTAMP, source_address SYMBOL, value DOUBLE) "
        "TIMESTAMP(ts) PARTITION BY DAY WAL"
    )
    with pytest.raises(SchemaMismatchError, match=r"dedup upsert keys are none.*stored twice"):
        ensure_point_table(qdb, settings.qdb_table)


def test_an_existing_table_gets_its_points_table(
    settings: ConsumerSettings, qdb: QuestDBSQL
) -> None:
    """A point table made before units were stored keeps working: start-up adds the points
    table beside it (one upserted row per point: dedup keys on the epoch and the address)."""
    qdb.exec(CREATE_POINT_TABLE.format(table=settings.qdb_table))
    assert inspect_table(qdb, points_table(settings.qdb_table)) is None
    ensure_point_table(qdb, settings.qdb_table)
    check = inspect_table(qdb, points_table(settings.qdb_table))
    assert check is not None
    assert check.problems() == []
    assert check.designated_timestamp == "ts"


def test_a_new_table_has_no_request_id_column(settings: ConsumerSettings, qdb: QuestDBSQL) -> None:
    """The default layout leaves request_id out (the state topic says which request wrote
    what; the column cost about a fifth of the ingest rate)."""
    check = ensure_point_table(qdb, settings.qdb_table)
    assert not check.has_request_id
    assert {"ts", "source_address", "value", "quality", "text_value", "connector"} <= set(
        check.columns
    )


def test_an_existing_table_with_request_id_keeps_it_and_is_explained(
    settings: ConsumerSettings, qdb: QuestDBSQL
) -> None:
    """A table in the old layout keeps working: its request_id column stays (the consumer
    fills it) and start-up says what dropping it would gain."""
    qdb.exec(CREATE_POINT_TABLE.format(table=settings.qdb_table))
    with capture_logs() as logs:
        check = ensure_point_table(qdb, settings.qdb_table)
    assert check.has_request_id
    explained = [e for e in logs if e["event"] == "questdb_table_layout_differs"]
    assert len(explained) == 1
    assert "DROP COLUMN request_id" in explained[0]["explanation"]


def test_asking_for_request_id_adds_the_column_to_a_table_without_it(
    settings: ConsumerSettings, qdb: QuestDBSQL
) -> None:
    """QDB_REQUEST_ID_COLUMN=true on a table made without the column adds it at start-up."""
    ensure_point_table(qdb, settings.qdb_table)
    check = ensure_point_table(qdb, settings.qdb_table, PointTableLayout(request_id=True))
    assert check.has_request_id
    wait_for(lambda: inspect_table(qdb, settings.qdb_table).has_request_id)  # type: ignore[union-attr]


def test_a_flush_over_three_connections_lands_whole_with_replays_resolved_in_order(
    settings: ConsumerSettings, qdb: QuestDBSQL
) -> None:
    """QDB_CONNECTIONS > 1 against the real server: every row once, and where a flush holds a
    value and its replay (same point and time), the later one wins, as over one connection."""
    ensure_point_table(qdb, settings.qdb_table)
    batches = _ten_points_and_a_replay()
    sink = QuestDBSink(
        settings.qdb_client_conf.get_secret_value(),
        settings.qdb_table,
        request_rows=1_500,  # 14 requests over 3 connections
        connections=3,
    )
    try:
        assert sink.write(batches) == []
        assert sink.write(batches) == []  # the second flush goes out concurrently from the start
    finally:
        sink.close()
    _assert_once_with_the_replay_winning(qdb, settings.qdb_table)


def _stream_sink(settings: ConsumerSettings) -> QuestDBSink:
    return QuestDBSink(
        settings.qdb_client_conf.get_secret_value(),
        settings.qdb_table,
        request_rows=1_500,  # chunks of 1,500 rows: a flush of 20,500 goes out in 14
        stream=True,
        http_url=settings.qdb_http_url,
        http_auth=settings.qdb_http_auth,
    )


def test_a_streamed_flush_lands_whole_once_with_its_replays_resolved_in_order(
    settings: ConsumerSettings, qdb: QuestDBSQL
) -> None:
    """One request streamed in chunks against the real server: every row once (twice sent),
    and where the flush holds a value and its replay, the later one wins."""
    ensure_point_table(qdb, settings.qdb_table)
    batches = _ten_points_and_a_replay()
    sink = _stream_sink(settings)
    try:
        assert sink.write(batches) == []
        assert sink.write(batches) == []
    finally:
        sink.close()
    _assert_once_with_the_replay_winning(qdb, settings.qdb_table)


def test_a_bad_batch_in_a_streamed_flush_commits_nothing_of_it_then_only_it_is_refused(
    settings: ConsumerSettings, qdb: QuestDBSQL
) -> None:
    """A batch QuestDB cannot store (before 1970) in the middle of a streamed flush: QuestDB
    refuses the request and commits none of it (checked before the sink writes the rest
    again), then the bisection writes every other batch and names just that one."""
    ensure_point_table(qdb, settings.qdb_table)
    start = 1_704_067_200_000_000
    stamps = start + np.arange(2_000, dtype=np.int64) * 60_000_000
    good = [
        PointBatch(f"P{p}", "Simulator", stamps, np.ones(2_000), np.zeros(2_000, np.uint8))
        for p in range(4)
    ]
    bad = PointBatch(
        "OLD", "Simulator", np.array([-60_000_000], np.int64), np.ones(1), np.zeros(1, np.uint8)
    )
    table = settings.qdb_table
    committed = f"SELECT sequencerTxn FROM wal_tables() WHERE name = '{table}'"
    before = qdb.scalar(committed)
    sink = _stream_sink(settings)
    assert sink._stream is not None
    # the server refuses the row, or the client its timestamp mid-body (the body breaks off)
    with pytest.raises((StreamRejectedError, QuestDBError)):
        sink._stream.post(sink._chunks([*good[:2], bad, *good[2:]], {}, [0]))
    assert qdb.scalar(committed) == before  # not one transaction committed
    try:
        rejections = sink.write([*good[:2], bad, *good[2:]])
    finally:
        sink.close()
    assert [(r.index, r.code) for r in rejections] == [(2, RejectReason.TIMESTAMP_OUT_OF_RANGE)]
    wait_for(lambda: _count(qdb, table) == 8_000)
    assert qdb.rows(f"SELECT count() FROM {table} WHERE source_address = 'OLD'") == [[0]]
