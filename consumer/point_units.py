"""Engineering units: one row per point in ``<QDB_TABLE>_points``, not a column of every value.

A unit belongs to the point (PI's ``EngineeringUnits`` attribute) and a batch carries it once for
all its values. As a SYMBOL column of ``point_data`` it would travel as text in every ILP row
and be looked up by QuestDB for each: measured on the consumer's write path (``QuestDBSink``,
2 M values of 1,000 points with 8 units, four alternating runs), that cost 15 % of the rate
(538 k -> 458 k values/s), 10 % more QuestDB CPU per value and 8 more ILP bytes per row. A row
per point costs nothing measurable: it is written when this process first sees a point's unit,
or sees it change, as one small request after the flush's values were accepted.

The points table's designated timestamp is always the epoch and its dedup keys are
``(ts, source_address)``, so a write upserts the point's one row: it holds the unit the point was
last read with (and ``updated``, when). A point whose source gives no unit has no row. Query::

    SELECT d.ts, d.value, p.unit
    FROM point_data d LEFT JOIN point_data_points p ON source_address
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import pandas as pd

POINTS_SYMBOLS = ("source_address", "unit", "connector")

Units = Mapping[str, tuple[str, str]]
"""source_address -> (unit, connector), the last of a flush's batches for that point."""


class UnitTracker:
    """The units this process has written, so a point's row is written again only on change.

    A restarted consumer writes each point's row once more (the upsert leaves one row).
    """

    def __init__(self) -> None:
        self._written: dict[str, str] = {}

    def changed(self, units: Units) -> dict[str, tuple[str, str]]:
        """The entries of ``units`` not yet written with that unit."""
        return {a: uc for a, uc in units.items() if self._written.get(a) != uc[0]}

    def written(self, units: Units) -> None:
        self._written.update((address, unit) for address, (unit, _) in units.items())


def units_frame(units: Units, now: datetime) -> pd.DataFrame:
    """The points table's rows for ``units`` (``now``: the ``updated`` column, UTC-aware)."""
    n = len(units)
    return pd.DataFrame(
        {
            "ts": pd.DatetimeIndex([0] * n, dtype="datetime64[us]").tz_localize("UTC"),
            "source_address": pd.Categorical(list(units)),
            "unit": pd.Categorical([unit for unit, _ in units.values()]),
            "connector": pd.Categorical([connector for _, connector in units.values()]),
            "updated": pd.DatetimeIndex([now] * n).as_unit("us"),
        }
    )
