"""Consumer benchmark: drain a pre-filled backfill topic into QuestDB + Redis.

Fills a fresh backfill topic with ``--values`` values (default 20 M: 1,000 points, time-major,
10,000-value batches, as the producer writes them), then runs the real consumer service
(``python -m consumer``) and measures values/s from its start until every row is visible in
QuestDB, and its peak RSS. In the same run, a naive baseline (one Avro record per value, one
``Sender.row()`` per value) drains a slice of the same data, for the ratio.

    .venv/bin/python bench/consumer.py [--values 20000000] [--baseline-values 2000000]

Needs the local stack (``make stack-up``). Prints a table and writes bench/results/consumer.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fastavro
import numpy as np
import psutil
from confluent_kafka import Consumer, Producer
from questdb import Sender, TimestampMicros

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cleanup import cleanup  # noqa: E402
from histfill import stack  # noqa: E402
from shared.batch import PointBatch  # noqa: E402
from shared.bootstrap import ensure_infrastructure  # noqa: E402
from shared.codec import BatchCodec  # noqa: E402
from shared.kafka import consumer_config, producer_config  # noqa: E402
from shared.qdb import QuestDBSQL, points_table  # noqa: E402
from shared.settings import ConsumerSettings, load_settings  # noqa: E402

MINUTE_US = 60_000_000
BASE_US = 1_672_531_200_000_000  # 2023-01-01T00:00:00Z
ROW_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "DataPoint",
        "namespace": "bench",
        "fields": [
            {"name": "source_address", "type": "string"},
            {"name": "ts", "type": "long"},
            {"name": "value", "type": "double"},
            {"name": "quality", "type": "int"},
        ],
    }
)


def fill(settings: ConsumerSettings, points: int, per_batch: int, total: int) -> int:
    """Produce ``total`` values time-major, ``per_batch`` per message; returns values produced."""
    producer = Producer(
        producer_config(settings, **{"linger.ms": 50, "queue.buffering.max.kbytes": 262144})
    )
    codec = BatchCodec()
    chunks = max(total // (points * per_batch), 1)
    produced = 0
    rng = np.random.default_rng(7)
    for k in range(chunks):
        ts = BASE_US + (k * per_batch + np.arange(per_batch, dtype=np.int64)) * MINUTE_US
        for p in range(points):
            batch = PointBatch.from_columns(
                f"BENCH.P{p:04d}", "Simulator", ts, rng.random(per_batch)
            )
            while True:
                try:
                    producer.produce(
                        settings.topic_backfill,
                        codec.encode(batch),
                        key=batch.source_address.encode(),
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            produced += per_batch
    if producer.flush(120):
        raise RuntimeError("the fill did not reach Kafka within 120 s")
    return produced


def count(sql: QuestDBSQL, table: str) -> int:
    return int(sql.scalar(f"SELECT count() FROM {table}") or 0)  # noqa: S608


def run_consumer(
    env: dict[str, str], sql: QuestDBSQL, table: str, expected: int
) -> dict[str, float]:
    """Start the real consumer; time until all rows are visible; sample its RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer"],
        env={**os.environ, **env, "LOG_LEVEL": "WARNING", "METRICS_PORT": "0"},
        cwd=ROOT,
    )
    ps = psutil.Process(proc.pid)
    peak = 0
    last_check = 0.0
    rows = 0
    try:
        while rows < expected:
            peak = max(peak, ps.memory_info().rss)
            now = time.perf_counter()
            if now - last_check > 0.5:
                rows = count(sql, table)
                last_check = now
            if now - started > 1800:
                raise TimeoutError(f"only {rows} of {expected} rows after 30 min")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(60)
    return {"seconds": elapsed, "values_per_s": expected / elapsed, "peak_rss_mb": peak / 2**20}


def naive_names(settings: ConsumerSettings) -> tuple[str, str, str]:
    """The baseline's own topic, table and consumer group, beside the run's."""
    return (
        f"{settings.topic_backfill}.naive",
        f"{settings.qdb_table}_naive",
        f"{settings.consumer_group_id}-naive",
    )


def naive_baseline(
    settings: ConsumerSettings, sql: QuestDBSQL, values: int, points: int
) -> dict[str, float]:
    """One Avro record per value through Kafka, one Sender.row() per value into QuestDB."""
    topic, table, group = naive_names(settings)
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    from shared.kafka import TopicSpec, base_config, ensure_topics  # noqa: PLC0415
    from shared.qdb import CREATE_POINT_TABLE  # noqa: PLC0415

    ensure_topics(AdminClient(base_config(settings)), [TopicSpec(topic, 4)])
    sql.exec(CREATE_POINT_TABLE.format(table=table))
    producer = Producer(producer_config(settings, **{"linger.ms": 50}))
    per_point = values // points
    for p in range(points):
        address = f"BENCH.P{p:04d}"
        for i in range(per_point):
            buf = io.BytesIO()
            fastavro.schemaless_writer(
                buf,
                ROW_SCHEMA,
                {
                    "source_address": address,
                    "ts": BASE_US + i * MINUTE_US,
                    "value": i * 0.5,
                    "quality": 0,
                },
            )
            while True:
                try:
                    producer.produce(topic, buf.getvalue(), key=address.encode())
                    break
                except BufferError:
                    producer.poll(0.1)
    producer.flush(120)
    total = per_point * points

    consumer = Consumer(consumer_config(settings, group))
    consumer.subscribe([topic])
    started = time.perf_counter()
    done = 0
    with Sender.from_conf(
        settings.qdb_client_conf.get_secret_value() + "auto_flush=off;"
    ) as sender:
        while done < total:
            for msg in consumer.consume(1000, timeout=1.0):
                if msg.error():
                    continue
                rec = fastavro.schemaless_reader(io.BytesIO(msg.value()), ROW_SCHEMA, ROW_SCHEMA)
                sender.row(
                    table,
                    symbols={"source_address": rec["source_address"], "connector": "Simulator"},
                    columns={"value": rec["value"], "quality": rec["quality"]},
                    at=TimestampMicros(rec["ts"]),
                )
                done += 1
                consumer.store_offsets(msg)
            if len(sender) > 8 * 2**20 or done >= total:
                sender.flush()
    while count(sql, table) < total:
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    consumer.close()
    return {"values": total, "seconds": elapsed, "values_per_s": total / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--values", type=int, default=20_000_000)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=10_000, help="values per Kafka message")
    parser.add_argument("--baseline-values", type=int, default=2_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "consumer.json")
    args = parser.parse_args()

    stack.up()
    tag = uuid.uuid4().hex[:8]
    env = {
        "TOPIC_REALTIME": f"bench{tag}.datapoints",
        "TOPIC_BACKFILL": f"bench{tag}.datapoints.backfill",
        "TOPIC_DLQ": f"bench{tag}.dlq",
        "TOPIC_STATE": f"bench{tag}.state",
        "QDB_TABLE": f"bench_{tag}",
        "REDIS_KEY_PREFIX": f"bench:{tag}:",
        "CONSUMER_GROUP_ID": f"bench-{tag}",
    }
    settings = load_settings(ConsumerSettings, env)
    naive_topic, naive_table, naive_group = naive_names(settings)
    created = {  # all removed by cleanup() whatever happens; tests check that nothing stays
        "tables": [settings.qdb_table, points_table(settings.qdb_table), naive_table],
        "topics": [
            settings.topic_realtime,
            settings.topic_backfill,
            settings.topic_dlq,
            settings.topic_state,
            naive_topic,
        ],
        "groups": [settings.consumer_group_id, naive_group],
        "redis_prefix": settings.redis_key_prefix,
    }
    sql = QuestDBSQL.from_settings(settings)
    try:
        ensure_infrastructure(settings)
        t0 = time.perf_counter()
        produced = fill(settings, args.points, args.batch, args.values)
        fill_s = time.perf_counter() - t0
        print(f"filled {settings.topic_backfill} with {produced:,} values in {fill_s:.1f}s")

        ours = run_consumer(env, sql, settings.qdb_table, produced)
        print(f"histfill consumer: {ours['values_per_s']:,.0f} values/s", end=", ")
        print(f"peak RSS {ours['peak_rss_mb']:.0f} MB")
        naive = naive_baseline(settings, sql, args.baseline_values, min(args.points, 100))
        print(f"naive row-per-value baseline: {naive['values_per_s']:,.0f} values/s", end=" ")
        print(f"({naive['values']:,} values)")
    finally:  # topics, groups, tables and Redis keys of this run: nothing stays behind
        cleanup(settings, sql, created["tables"], topics=[naive_topic], groups=[naive_group])
        sql.close()

    result = {
        "benchmark": "consumer",
        "values": produced,
        "points": args.points,
        "values_per_message": args.batch,
        "histfill": ours,
        "naive_row_per_value": naive,
        "speedup_vs_naive": ours["values_per_s"] / naive["values_per_s"],
        "goal_values_per_s": 500_000,
        "goal_peak_rss_mb": 250,
        **created,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"speedup vs naive: {result['speedup_vs_naive']:.1f}x; wrote {args.out}")


if __name__ == "__main__":
    main()
