"""What a benchmark run leaves on the shared stack, removed: tables, topics, groups, Redis keys.

Every benchmark names its topics, table, consumer group and Redis prefix after a fresh tag, so a
run that did not clean up leaves them on the broker and in QuestDB and Redis for good. Cleanup
reports what it could not remove and never raises: it runs in ``finally`` blocks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import redis
from confluent_kafka.admin import AdminClient

from shared.kafka import base_config
from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings


def cleanup(
    settings: ConsumerSettings,
    sql: QuestDBSQL,
    tables: Iterable[str],
    *,
    topics: Iterable[str] = (),
    groups: Iterable[str] = (),
) -> list[str]:
    """Drop ``tables``, delete the settings' four topics plus ``topics``, the settings' consumer
    group plus ``groups``, and the Redis keys under the settings' prefix; returns the problems
    (also printed to stderr)."""
    problems: list[str] = []
    for table in tables:
        try:
            sql.exec(f"DROP TABLE IF EXISTS {table}")
        except Exception as exc:  # noqa: BLE001  # cleanup reports and goes on
            problems.append(f"table {table}: {exc}")
    admin = AdminClient(base_config(settings))
    own = [
        settings.topic_realtime,
        settings.topic_backfill,
        settings.topic_dlq,
        settings.topic_state,
    ]
    existing = set(admin.list_topics(timeout=30).topics)
    doomed = [t for t in dict.fromkeys([*own, *topics]) if t in existing]
    for name, future in admin.delete_topics(doomed).items() if doomed else ():
        try:
            future.result(60)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"topic {name}: {exc}")
    names = list(dict.fromkeys([settings.consumer_group_id, *groups]))
    for name, future in admin.delete_consumer_groups(names).items():
        try:
            future.result(60)
        except Exception as exc:  # noqa: BLE001
            if "GROUP_ID_NOT_FOUND" not in str(exc):  # a group that never committed is fine
                problems.append(f"group {name}: {exc}")
    try:
        client = redis.Redis.from_url(settings.redis_url.get_secret_value())
        keys = list(client.scan_iter(match=f"{settings.redis_key_prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        client.close()
    except redis.RedisError as exc:
        problems.append(f"redis: {exc}")
    if problems:
        print("cleanup incomplete: " + "; ".join(problems), file=sys.stderr)
    return problems
