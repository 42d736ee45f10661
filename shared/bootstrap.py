"""What every service does at start before touching data: topics and the table, idempotently."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from shared.kafka import base_config, ensure_topics, topic_specs
from shared.qdb import PointTableLayout, QuestDBSQL, TableCheck, ensure_point_table
from shared.settings import CommonSettings


def ensure_infrastructure(settings: CommonSettings) -> tuple[list[str], TableCheck]:
    """Create missing topics and the point table; refuse a table without dedup keys.

    Returns the topics created and the table's checked facts. Safe to run from every service
    and from compose's one-shot ``init`` at once.
    """
    created = ensure_topics(AdminClient(base_config(settings)), topic_specs(settings))
    with QuestDBSQL.from_settings(settings) as sql:
        layout = PointTableLayout(request_id=settings.qdb_request_id_column)
        check = ensure_point_table(sql, settings.qdb_table, layout)
    return created, check
