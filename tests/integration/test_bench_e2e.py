"""``bench/e2e.py`` at a tiny size on the real stack: it runs the whole pipeline, counts exactly
what the simulator serves, and writes a complete, consistent JSON, a chart, and no leftovers."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from shared.kafka import base_config
from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings, load_settings
from simulators.data import expected_count

pytestmark = [pytest.mark.stack, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
POINTS = 3
START, END = datetime(2026, 1, 9, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC)
STAGES = ("producer_publish", "consumer_ingest", "questdb_visible")


def run_bench(tmp_path: Path, connector: str) -> dict[str, Any]:
    out = tmp_path / "e2e.json"
    argv = [sys.executable, "bench/e2e.py", "--points", str(POINTS), "--days", "1"]
    argv += ["--end", "2026-01-10T00:00:00Z", "--connector", connector, "--out", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@pytest.mark.parametrize("connector", ["Simulator", "PIWebApi"])
def test_tiny_run_reports_every_figure_and_cleans_up(
    stack: None, tmp_path: Path, connector: str
) -> None:
    """A 3-point day through the real services lands exactly the simulator's count, and the
    JSON holds every rate, per-process peak RSS, the ceiling and the ratio, consistently."""
    r = run_bench(tmp_path, connector)
    expected = sum(
        expected_count(f"SIMTAG{i:05d}", START, END, generated_tags=POINTS) for i in range(POINTS)
    )
    assert expected == 4320

    # the workload, counted independently of the bench and of the services
    assert r["connector"] == connector
    assert r["values"] == r["expected_values"] == expected
    assert r["exact"] is True
    assert r["distinct_points"] == POINTS
    assert r["redis_latest_keys"] == POINTS
    assert r["dead_letters"] == 0
    assert r["request_status"] == "Completed"

    # end to end: from the request to the last row visible
    assert positive_int(r["end_to_end_values_per_s"])
    assert 0 < r["end_to_end_seconds"] < 120
    assert r["end_to_end_values_per_s"] == round(expected / r["end_to_end_seconds"])

    # per stage: every stage saw every value; the data flows producer -> QuestDB
    assert set(r["stages"]) == set(STAGES)
    for name in STAGES:
        s = r["stages"][name]
        assert s["values"] == expected, name
        assert positive_int(s["values_per_s"]), name
        assert 0 < s["done_at_s"] <= 120, name
        assert s["first_value_at_s"] <= s["done_at_s"], name
        assert s["active_values_per_s"] >= 0, name
        assert s["peak_values_per_s"] >= 0, name
    publish, visible = r["stages"]["producer_publish"], r["stages"]["questdb_visible"]
    assert publish["done_at_s"] <= visible["done_at_s"] == r["end_to_end_seconds"]
    assert positive_int(publish["reported_values_per_s"])
    assert publish["batches"] >= POINTS
    assert publish["chunks"] >= 1

    # our processes' memory, sampled with psutil
    processes = {"producer", "consumer"} | ({"simulator"} if connector == "PIWebApi" else set())
    assert set(r["peak_rss_mb"]) == processes
    for name, mb in r["peak_rss_mb"].items():
        assert isinstance(mb, float), name
        assert 20 < mb < 2000, name
        assert mb >= r["idle_rss_mb"][name], name
    assert set(r["cpu_seconds"]) >= processes

    # what explains the rates: the consumer's flushes and its partitions' pace
    assert r["consumer_flushes"]["count"] >= 1
    assert r["consumer_flushes"]["seconds_total"] > 0
    assert isinstance(r["partition_drained_at_s"], dict)

    # the ceiling wrote the same values without Kafka; the ratio is e2e over it
    assert positive_int(r["ceiling_values_per_s"])
    assert r["ceiling"]["values"] == expected
    assert r["ceiling"]["requests"] == 1
    assert r["ratio_to_ceiling"] == round(
        r["end_to_end_values_per_s"] / r["ceiling_values_per_s"], 3
    )
    assert set(r["meets_goals"]) == set(r["goals"])
    assert all(isinstance(v, bool) for v in r["meets_goals"].values())

    # the timeline starts at the request and ends with every row visible
    e2e = r["timeline"]["e2e"]
    assert e2e[0] == [0.0, 0, 0, 0]
    assert e2e[-1][1:] == [expected, expected, expected]
    assert [t for t, *_ in e2e] == sorted(t for t, *_ in e2e)
    assert r["timeline"]["ceiling"][-1][1] == expected

    png = Path(r["chart"])
    assert png == tmp_path / "e2e.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000

    # nothing of the run is left behind: tables and topics are gone
    settings = load_settings(ConsumerSettings)
    with QuestDBSQL.from_settings(settings) as sql:
        for table in r["tables"]:
            query = f"SELECT count() FROM tables() WHERE table_name = '{table}'"
            assert sql.scalar(query) == 0, table
    topics = AdminClient(base_config(settings)).list_topics(timeout=10).topics
    assert not set(r["topics"]) & set(topics)
