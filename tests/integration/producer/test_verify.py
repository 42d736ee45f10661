"""``histfill verify`` on the real stack: a faithful table verifies, a deleted range does not."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from consumer.questdb_sink import QuestDBSink
from producer.planning.requests import Limits, StartBody, validate
from producer.sources.base import TimeWindow
from producer.sources.simulator import SimulatorSource
from producer.state import checkpoints as cp
from producer.state.progress import Status
from producer.state.reader import read_state
from producer.worker.publisher import PlainPublisher
from shared.batch import PointBatch, to_micros
from shared.codec import BatchCodec
from shared.qdb import QuestDBSQL, ensure_point_table
from shared.settings import ProducerSettings
from simulators.data import expected_count
from tests.helpers import wait_for
from verify.verifier import verify_command

pytestmark = [pytest.mark.stack, pytest.mark.slow]

POINTS = ("SINUSOID", "SINUSOIDU", "CDT158")
DAY = datetime(2026, 1, 9, tzinfo=UTC)
LOST_FROM, LOST_TO = DAY + timedelta(hours=10), DAY + timedelta(hours=11)
WINDOWS = [(DAY + timedelta(hours=h), DAY + timedelta(hours=h + 6)) for h in (0, 6, 12, 18)]

app = typer.Typer()
app.command()(verify_command)  # a one-command app, as `histfill verify` without the name


def _rows(qdb: QuestDBSQL, table: str) -> int:
    return int(qdb.scalar(f"SELECT count() FROM {table}") or 0)


def _write_day(settings: ProducerSettings, qdb: QuestDBSQL) -> int:
    """The simulator's day of the three points, written with the consumer's own sink."""

    async def history() -> list[PointBatch]:
        reader = SimulatorSource().read(POINTS, TimeWindow(DAY, DAY + timedelta(days=1)))
        return [item async for item in reader if isinstance(item, PointBatch)]

    ensure_point_table(qdb, settings.qdb_table)
    sink = QuestDBSink(settings.qdb_client_conf.get_secret_value(), settings.qdb_table)
    try:
        assert sink.write(asyncio.run(history())) == []
    finally:
        sink.close()
    total = sum(expected_count(p, DAY, DAY + timedelta(days=1)) for p in POINTS)
    wait_for(lambda: _rows(qdb, settings.qdb_table) == total, timeout=60, interval=0.2)
    return total


def _submit_request(settings: ProducerSettings) -> str:
    """A finished backfill request over the day on the state topic, as the producer writes it."""
    body = StartBody(
        connector_type="Simulator",
        point_addresses=list(POINTS),
        start_time=DAY,
        end_time=DAY + timedelta(days=1),
        chunk_size="06:00:00",
    )
    limits = Limits(10, settings.points_per_request, "30d", 0, 1 / 60)
    request = validate(body, limits, {"Simulator": None})
    publisher = PlainPublisher(settings, BatchCodec())
    record = request.to_record(Status.COMPLETED)
    publisher.put_state(cp.request_key(request.request_id), cp.encode(record))
    publisher.close()
    return request.request_id


@pytest.fixture
def runner(producer_env: dict[str, str]) -> CliRunner:
    """A CLI runner whose environment is this test's topics and table, on a wide terminal."""
    return CliRunner(env={**producer_env, "COLUMNS": "250"})


def _verified(settings: ProducerSettings) -> dict[datetime, dict[str, object]]:
    """The latest ``verified:`` record of each 6-hour chunk, by window start."""
    view = read_state(settings)
    found = {}
    for start, end in WINDOWS:
        key = cp.verified_key("Simulator", to_micros(start), to_micros(end), POINTS)
        found[start] = view.verified[key]
    return found


def test_verify_passes_then_reports_the_deleted_range(
    producer_settings: ProducerSettings, qdb: QuestDBSQL, runner: CliRunner
) -> None:
    """A faithful day verifies (exit 0, every chunk marked ok on its request); after CDT158's
    10:00-11:00 hour is deleted, verify exits 1 naming that count mismatch and that gap, in
    that point and chunk only.

    QuestDB has no ``DELETE``: the way to remove rows is to copy the rows one keeps into a table
    ``LIKE`` the original (same WAL, partitioning and dedup keys) and swap the names, which is
    what an operator purging a bad hour would do; here it stands for an hour of one point lost
    between the historian and the table.
    """
    settings, table = producer_settings, producer_settings.qdb_table
    total = _write_day(settings, qdb)
    request_id = _submit_request(settings)

    passed = runner.invoke(app, ["--request-id", request_id])
    assert passed.exit_code == 0, passed.output
    assert "4/4 chunks verified" in passed.output
    marks = _verified(settings)
    assert all(m["ok"] and m["requestId"] == request_id for m in marks.values())
    assert [m["chunkIndex"] for m in marks.values()] == [0, 1, 2, 3]

    keep = f"{table}_keep"
    try:
        qdb.exec(f"CREATE TABLE {keep} (LIKE {table})")
        qdb.exec(
            f"INSERT INTO {keep} SELECT * FROM {table} WHERE NOT (source_address = 'CDT158' "
            f"AND ts >= '{LOST_FROM.isoformat()}' AND ts < '{LOST_TO.isoformat()}')"
        )
        wait_for(lambda: _rows(qdb, keep) == total - 60, timeout=60, interval=0.2)
        qdb.exec(f"DROP TABLE {table}")
        qdb.exec(f"RENAME TABLE {keep} TO {table}")
    finally:
        qdb.exec(f"DROP TABLE IF EXISTS {keep}")
    assert _rows(qdb, table) == total - 60

    args = ["--connector", "Simulator", "--points", ",".join(POINTS), "--chunk", "06:00:00"]
    args += ["--start", DAY.isoformat(), "--end", (DAY + timedelta(days=1)).isoformat()]
    failed = runner.invoke(app, args)
    assert failed.exit_code == 1, failed.output
    assert "3/4 chunks verified" in failed.output
    assert "count 300 vs source 360 (-60)" in failed.output
    assert "1 gap(s) with values in the source" in failed.output
    tables = [[c.strip() for c in line.split("│")[1:-1]] for line in failed.output.splitlines()]
    lost = [cells for cells in tables if cells and cells[-1] == "lost"]
    assert lost == [
        ["CDT158", "2026-01-09T09:59:00Z", "2026-01-09T11:00:00Z", "1h 1m", "60", "lost"]
    ]

    marks = _verified(settings)
    assert [start for start, m in marks.items() if not m["ok"]] == [DAY + timedelta(hours=6)]
    assert marks[DAY + timedelta(hours=6)]["problems"] == {
        "CDT158": ["count 300 vs source 360 (-60)", "1 gap(s) with values in the source"]
    }
    assert marks[DAY + timedelta(hours=6)]["requestId"] is None


def test_verify_reports_values_outside_the_range(
    producer_settings: ProducerSettings, qdb: QuestDBSQL, runner: CliRunner
) -> None:
    """With --max 100 the CDT158 rows (about 170 degC) fail in every chunk; the sines pass."""
    _write_day(producer_settings, qdb)
    args = ["--connector", "Simulator", "--points", ",".join(POINTS), "--chunk", "12:00:00"]
    args += ["--start", DAY.isoformat(), "--end", (DAY + timedelta(days=1)).isoformat()]
    result = runner.invoke(app, [*args, "--min", "0", "--max", "100", "--no-mark"])
    assert result.exit_code == 1, result.output
    assert result.output.count("720 value(s) outside [0, 100]") == 2
    assert "0/2 chunks verified (4/6 point checks)" in result.output


def test_verify_exits_2_when_the_table_is_missing(
    producer_settings: ProducerSettings, runner: CliRunner
) -> None:
    """A table that does not exist is an error to fix (exit 2), not a mismatch."""
    args = ["--connector", "Simulator", "--points", "SINUSOID", "--no-mark"]
    args += ["--start", DAY.isoformat(), "--end", (DAY + timedelta(hours=1)).isoformat()]
    result = runner.invoke(app, [*args, "--table", "no_such_table_here"])
    assert result.exit_code == 2, result.output
    assert "no_such_table_here" in result.output


def test_verify_piped_prints_the_summary_without_a_line_per_chunk(
    producer_env: dict[str, str], producer_settings: ProducerSettings, qdb: QuestDBSQL
) -> None:
    """`histfill verify` with its output piped (as `make run | less`, where logs are JSON):
    no log line per chunk at the default level INFO, and the summary is there."""
    _write_day(producer_settings, qdb)
    args = ["--connector", "Simulator", "--points", ",".join(POINTS), "--chunk", "01:00:00"]
    args += ["--start", DAY.isoformat(), "--end", (DAY + timedelta(days=1)).isoformat()]
    env = {**os.environ, **producer_env, "LOG_LEVEL": "INFO", "COLUMNS": "250"}
    done = subprocess.run(
        [sys.executable, "-m", "histfill", "verify", *args, "--no-mark"],
        env=env,
        capture_output=True,  # pipes, not a terminal
        text=True,
        timeout=240,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "24/24 chunks verified" in output
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    per_chunk = [entry for entry in logs if "chunk" in entry or "chunk_start" in entry]
    assert per_chunk == [], per_chunk[:3]
    assert any(entry["event"] == "verify_done" for entry in logs)
