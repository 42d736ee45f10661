"""Merging the two tiers' rows of one point: time-ordered, each timestamp once.

QuestDB (hot) wins over the archive (cold) where both hold a timestamp: it is the system of
record and may hold a late correction the archive has not seen yet. Both inputs are sorted by
``ts`` with unique timestamps (QuestDB's dedup keys; the archive's own check), so the result is
too.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def merge(cold: pa.Table, hot: pa.Table) -> pa.Table:
    """Rows of ``hot`` plus the rows of ``cold`` at timestamps ``hot`` lacks, sorted by ts."""
    if cold.num_rows == 0:
        return hot
    if hot.num_rows == 0:
        return cold
    hot_ts = hot.column("ts").cast(pa.int64()).to_numpy()
    cold_ts = cold.column("ts").cast(pa.int64()).to_numpy()
    pos = np.searchsorted(hot_ts, cold_ts)
    found = (pos < len(hot_ts)) & (hot_ts[np.minimum(pos, len(hot_ts) - 1)] == cold_ts)
    kept = cold.filter(pa.array(~found))
    return pa.concat_tables([kept, hot]).sort_by("ts").combine_chunks()
