"""The changes report: what keeping history whole changed, per point and hour, kept in Kafka.

Where it lives: the topic ``TOPIC_CHANGES`` (default ``naia.backfill.changes``, one partition,
kept forever like the dead-letter topic). A run that changed something writes its records there
*inside the same Kafka transaction* as the values it publishes, so the report and the data are
committed together or not at all: a crashed run leaves neither, and a report never lists a
change that did not reach the backfill topic (exactly-once, as the backfill's checkpoints).
Redis was the other candidate; it would need a second write after the commit, which a crash
between the two would lose.

A record (JSON, key ``<kind>:<run id>:<part>``)::

    {"v": 1, "kind": "repull", "run": "<run id>", "at": "2026-12-04T08:00:00Z",
     "window": {"start": "...", "end": "..."},
     "rows": [{"point": "\\\\SIMPI\\SINUSOID", "hour": "2026-12-04T07:00:00Z",
               "added": 12, "changed": 1}, ...]}

``kind`` says who changed the data: ``repull``, or ``repair`` for a repaired hole
(:mod:`producer.upkeep.repair`: rows per point and hour of the values it added, keyed by its
request, written once QuestDB holds them), so one reader joins both. A record written again
under the same key (a repair settled again after a crash) counts once. A run writes at most
``ROWS_PER_RECORD`` rows per record (more records with parts 1, 2...).

Reading (``GET /api/backfill/changes``, ``histfill changes``): a ``read_committed`` reader
seeks to the first record at or after ``since`` by the records' Kafka timestamps (the moment of
the run) and reads to the end, then sums the rows per point and hour. ``since`` filters by *when
a change was seen* (a repair done today of a hole from last week is in ``--since 1d``); ``hour``
is the hour of the values changed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, TopicPartition

from shared.batch import from_micros
from shared.kafka import TopicSpec, consumer_config
from shared.settings import CommonSettings, ProducerSettings, parse_span

log = structlog.get_logger(__name__)

ROWS_PER_RECORD = 5_000
"""About 500 KB of JSON at most: under Kafka's default 1 MB message limit."""


@dataclass(frozen=True, slots=True)
class HourChange:
    """What one run changed for one point within one UTC hour."""

    point: str
    hour_us: int
    added: int
    changed: int


def changes_topic_spec(settings: ProducerSettings) -> TopicSpec:
    """The report's topic: one partition (a reader reads it whole from a time), kept forever."""
    return TopicSpec(
        settings.topic_changes, 1, settings.topic_replication_factor, {"retention.ms": "-1"}
    )


def _iso(micros: int) -> str:
    return from_micros(micros).isoformat().replace("+00:00", "Z")


def change_records(
    kind: str,
    run_id: str,
    at: datetime,
    window: tuple[int, int],
    changes: Sequence[HourChange],
) -> list[tuple[str, bytes]]:
    """The ``(key, value)`` records of one run's changes (none when nothing changed)."""
    records: list[tuple[str, bytes]] = []
    for part, first in enumerate(range(0, len(changes), ROWS_PER_RECORD)):
        rows = [
            {"point": c.point, "hour": _iso(c.hour_us), "added": c.added, "changed": c.changed}
            for c in changes[first : first + ROWS_PER_RECORD]
        ]
        body = {
            "v": 1,
            "kind": kind,
            "run": run_id,
            "at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "window": {"start": _iso(window[0]), "end": _iso(window[1])},
            "rows": rows,
        }
        value = json.dumps(body, separators=(",", ":")).encode()
        records.append((f"{kind}:{run_id}:{part}", value))
    return records


class SinceError(ValueError):
    """``since``/``until`` is neither a duration nor a UTC time (a 400, or the CLI's exit 2)."""


def parse_since(text: str, now: datetime) -> datetime:
    """``1d``, ``12h``, ``30m``, ``2w`` before ``now`` (:func:`shared.settings.parse_span`), or
    an ISO-8601 time with a zone."""
    try:
        return now - timedelta(seconds=parse_span(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SinceError(
            f"{text!r} is neither a duration (1d, 12h, 30m) nor an ISO-8601 time"
        ) from None
    if moment.tzinfo is None:
        raise SinceError(f"{text!r} has no time zone: add Z for UTC")
    return moment.astimezone(UTC)


def summarize(
    records: Iterable[dict[str, Any]], since: datetime, until: datetime, point: str | None
) -> dict[str, Any]:
    """The report: per point and hour the values added and changed (summed over runs), newest
    hours last, with totals. Pure: the records as read from the topic."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    runs: set[str] = set()
    for record in records:
        at = datetime.fromisoformat(str(record.get("at", "")).replace("Z", "+00:00"))
        if not since <= at < until:
            continue
        kind = str(record.get("kind", "?"))
        for row in record.get("rows", []):
            if point is not None and row.get("point") != point:
                continue
            runs.add(f"{kind}:{record.get('run')}")
            cell = cells.setdefault(
                (row["point"], row["hour"]),
                {"point": row["point"], "hour": row["hour"], "added": 0, "changed": 0, "by": {}},
            )
            cell["added"] += int(row.get("added", 0))
            cell["changed"] += int(row.get("changed", 0))
            by = cell["by"].setdefault(kind, {"added": 0, "changed": 0})
            by["added"] += int(row.get("added", 0))
            by["changed"] += int(row.get("changed", 0))
    rows = sorted(cells.values(), key=lambda c: (c["point"], c["hour"]))
    return {
        "since": since.isoformat().replace("+00:00", "Z"),
        "until": until.isoformat().replace("+00:00", "Z"),
        "point": point,
        "runs": len(runs),
        "points": len({r["point"] for r in rows}),
        "totals": {
            "added": sum(r["added"] for r in rows),
            "changed": sum(r["changed"] for r in rows),
        },
        "rows": rows,
    }


def read_records(
    settings: CommonSettings, topic: str, since: datetime, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """Every committed record of ``topic`` written at or after ``since`` (Kafka timestamps),
    read to the end of the topic (a missing topic: none)."""
    consumer = Consumer(
        consumer_config(
            settings,
            f"histfill-changes-reader-{uuid.uuid4().hex[:8]}",
            **{"enable.partition.eof": True, "enable.auto.commit": False},
        )
    )
    out: dict[bytes, dict[str, Any]] = {}  # by key: a record written again replaces itself
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return []
        at_ms = int(since.timestamp() * 1000)
        wanted = [TopicPartition(topic, p, at_ms) for p in meta.partitions]
        starts = consumer.offsets_for_times(wanted, timeout=timeout_s)
        live = [tp for tp in starts if tp.offset >= 0]  # -1: nothing written since then
        if not live:
            return []
        consumer.assign(live)
        pending = {tp.partition for tp in live}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach its end in {timeout_s}s")
            for msg in consumer.consume(500, 1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    raise RuntimeError(f"reading {topic}: {err.str()}")
                try:
                    record = json.loads(msg.value() or b"null")
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    out.pop(msg.key() or b"", None)
                    out[msg.key() or b""] = record
                else:
                    log.warning("changes_record_unreadable", offset=msg.offset())
    finally:
        consumer.close()
    return list(out.values())


def report(
    settings: ProducerSettings,
    since: datetime,
    until: datetime,
    point: str | None = None,
) -> dict[str, Any]:
    """The changes report over ``[since, until)`` (blocking: Kafka reads)."""
    records = read_records(settings, settings.topic_changes, since)
    return summarize(records, since, until, point)
