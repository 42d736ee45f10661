"""``histfill lag``: the group's lag per partition in messages and seconds, and drain ETAs.

One snapshot (a table, or ``--json`` for scripts) or ``--watch``, refreshed in place like
``top``. The figures follow the consumer's own rules (``consumer.lag`` for messages,
``consumer.timelag`` for seconds and the ETA), so the CLI and ``/metrics`` agree. The ETA needs
a rate, so a snapshot reads the group twice, ``rate_window`` seconds apart (0: no ETA).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka.admin import AdminClient
from rich.console import Group
from rich.table import Table
from rich.text import Text

from consumer.lag import PartitionLag, group_lag, totals
from consumer.timelag import (
    DrainRate,
    TimestampReader,
    consumed_totals,
    effective_totals,
    time_lags,
)


@dataclass(frozen=True)
class LagSnapshot:
    """Every figure ``histfill lag`` shows, at one moment."""

    group: str
    at: datetime
    rows: list[PartitionLag]
    seconds: dict[tuple[str, int], float | None]
    rates: dict[str, float | None]
    etas: dict[str, float | None]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (``+Inf`` ETAs as null with ``"stalled": true``: JSON has no infinity)."""
        lag_totals = totals(self.rows)
        return {
            "at": self.at.isoformat(),
            "group": self.group,
            "partitions": [
                {
                    "topic": r.topic,
                    "partition": r.partition,
                    "committed": r.committed,
                    "start": r.start,
                    "end": r.end,
                    "lag_messages": r.lag,
                    "lag_seconds": _round(self.seconds.get((r.topic, r.partition))),
                }
                for r in self.rows
            ],
            "topics": {
                topic: {
                    "lag_messages": total,
                    "lag_seconds": _round(
                        max(
                            (s for (t, _p), s in self.seconds.items() if t == topic and s),
                            default=0.0,
                        )
                    ),
                    "consumed_per_second": _round(self.rates.get(topic)),
                    "drain_eta_seconds": _finite(self.etas.get(topic)),
                    "stalled": self.etas.get(topic) == math.inf,
                }
                for topic, total in lag_totals.items()
            },
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else round(value, 3)


class LagProbe:
    """Reads snapshots of one group's lag; keeps the rate history between reads."""

    def __init__(
        self,
        admin: AdminClient,
        reader: TimestampReader,
        group: str,
        topics: list[str] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin = admin
        self._reader = reader
        self._group = group
        self._topics = topics
        self._drain = DrainRate(window_s=60.0, clock=clock)

    def read(self) -> LagSnapshot:
        rows = group_lag(self._admin, self._group, self._topics)
        self._drain.add(consumed_totals(rows))
        now = datetime.now(UTC)
        seconds = time_lags(rows, self._reader, now.timestamp())
        lags = effective_totals(rows, seconds)
        return LagSnapshot(
            group=self._group,
            at=now,
            rows=rows,
            seconds=seconds,
            rates={t: self._drain.rate(t) for t in lags},
            etas={t: self._drain.eta(t, lag) for t, lag in lags.items()},
        )

    def close(self) -> None:
        self._reader.close()


def duration(seconds: float | None) -> str:
    """``-`` unknown, ``∞`` never, else ``3d 4h``, ``2h 05m``, ``4m 10s``, ``12.5s``."""
    if seconds is None:
        return "-"
    if math.isinf(seconds):
        return "∞ (no progress)"
    s = int(seconds)
    if s >= 86_400:
        return f"{s // 86_400}d {s % 86_400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{seconds:.1f}s"


def render(snapshot: LagSnapshot) -> Group:
    """The snapshot as the table ``histfill lag`` prints (and ``--watch`` redraws)."""
    table = Table(
        "topic",
        "partition",
        "committed",
        "start",
        "end",
        "lag",
        "lag (time)",
        title=f"consumer lag, group {snapshot.group}",
        caption=f"at {snapshot.at:%Y-%m-%d %H:%M:%S} UTC",
    )
    for row in snapshot.rows:
        table.add_row(
            row.topic,
            str(row.partition),
            "-" if row.never_committed else str(row.committed),
            str(row.start),
            str(row.end),
            f"{row.lag}*" if row.never_committed else str(row.lag),
            duration(snapshot.seconds.get((row.topic, row.partition))),
        )
    lines: list[Text | Table] = [table]
    for topic, total in totals(snapshot.rows).items():
        rate = snapshot.rates.get(topic)
        rate_text = "-" if rate is None else f"{rate:,.1f} msg/s"
        lines.append(
            Text(
                f"total lag {topic}: {total}   consumed {rate_text}   "
                f"drain ETA {duration(snapshot.etas.get(topic))}"
            )
        )
    if any(row.never_committed for row in snapshot.rows):
        lines.append(
            Text(
                "* never committed by the group: lag = end - start (all the partition holds); "
                "Kafka's kafka-consumer-groups shows '-' there and leaves it out."
            )
        )
    return Group(*lines)
