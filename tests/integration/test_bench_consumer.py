"""``bench/consumer.py`` at a tiny size on the real stack: it measures, writes its JSON, and
leaves no topic, consumer group, table or Redis key of its run behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

from shared.kafka import base_config
from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings, load_settings

pytestmark = [pytest.mark.stack, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_run_measures_and_leaves_nothing_behind(stack: None, tmp_path: Path) -> None:
    """A 20 k-value run reports both rates, then its topics, groups, tables and keys are gone."""
    out = tmp_path / "consumer.json"
    argv = [sys.executable, "bench/consumer.py", "--values", "20000", "--points", "10"]
    argv += ["--batch", "1000", "--baseline-values", "2000", "--out", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "cleanup incomplete" not in done.stderr
    r = json.loads(out.read_text())
    assert r["values"] == 20000
    assert r["histfill"]["values_per_s"] > 0
    assert r["naive_row_per_value"]["values"] == 2000
    assert len(r["topics"]) == 5
    assert len(r["groups"]) == 2
    assert len(r["tables"]) == 3

    settings = load_settings(ConsumerSettings)
    admin = AdminClient(base_config(settings))
    assert not set(r["topics"]) & set(admin.list_topics(timeout=10).topics)
    groups = {g.group_id for g in admin.list_consumer_groups().result(30).valid}
    assert not set(r["groups"]) & groups
    with QuestDBSQL.from_settings(settings) as sql:
        for table in r["tables"]:
            query = f"SELECT count() FROM tables() WHERE table_name = '{table}'"
            assert sql.scalar(query) == 0, table
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    try:
        assert not list(client.scan_iter(match=f"{r['redis_prefix']}*"))
    finally:
        client.close()
