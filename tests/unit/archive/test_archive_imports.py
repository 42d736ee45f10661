"""The archive process's modules: what `histfill archive` loads, checked in a fresh interpreter.

Its peak RSS has a goal (<= 200 MB whatever the range) and most of it is imports: these guard
it by module, not by a measured number (a timed or RSS-threshold test would be fragile on a
shared machine). Measured numbers: README, bench/archive.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# what the archive command must not load: the stack's clients, Kafka's, the producer's verify
NOT_AT_IMPORT = (
    "pandas",
    "confluent_kafka",
    "redis",
    "psutil",
    "fastavro",
    "histfill.stack",
    "verify.verifier",
    "shared.bootstrap",
)

# one point-month through the archive's own Arrow code: conform, encode (checksum, bounds),
# decode, merge; pyarrow would import pandas on the first conversion unless it is kept out
ROUND_TRIP = """
import json, sys
from archive.service import lean_memory
lean_memory()
from datetime import UTC, datetime
import numpy as np
import pyarrow as pa
from archive.fileformat import conform, decode, encode
from archive.keys import Month
from archive.merge import merge
month = Month(2024, 2)
start = int(month.start.timestamp() * 1_000_000)
ts = pa.array(np.arange(100, dtype=np.int64) * 60_000_000 + start).cast(
    pa.timestamp("us", tz="UTC"))
table = conform(pa.table({"ts": ts, "value": np.linspace(0, 1, 100),
    "quality": np.zeros(100, dtype=np.int8), "connector": ["Simulator"] * 100}))
data, meta = encode(table, "P1", month)
back, checked = decode(data, "key", "P1", month)
assert checked.sha256 == meta.sha256 and meta.first_ts == month.start
assert merge(back, table.slice(10, 5)).num_rows == 100
print(json.dumps(sorted(sys.modules)))
"""


def _modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_histfill_cli_imports_nothing_the_archive_command_does_not_use() -> None:
    loaded = _modules(
        "import json, sys\nimport histfill.cli\nprint(json.dumps(sorted(sys.modules)))"
    )
    assert "archive.cli" in loaded
    assert sorted(loaded & set(NOT_AT_IMPORT)) == []


def test_an_archive_round_trip_never_imports_pandas() -> None:
    loaded = _modules(ROUND_TRIP)
    assert "archive.fileformat" in loaded
    assert "pandas" not in loaded


def test_hide_pandas_does_nothing_where_pandas_is_loaded() -> None:
    code = (
        "import json, sys\nimport pandas\nfrom archive.nopandas import hide_pandas\n"
        "assert hide_pandas() is False\nimport pandas.api\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    assert "pandas.api" in _modules(code)
