"""The producer service's modules at start-up, checked in a fresh interpreter.

Its peak RSS has a goal (<= 150 MB) and a third of it is imports. pyarrow alone is ~30 MB and
only the re-pull's read of QuestDB's Parquet export needs it, so it loads there, on first use.
Guarded by module, not by a measured number (an RSS threshold would be fragile on a shared
machine); the measured numbers are in the README (bench/e2e.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

NOT_AT_START = ("pyarrow", "pandas")


def test_the_producer_service_starts_without_pyarrow_or_pandas() -> None:
    code = "import json, sys\nimport producer.main\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "producer.upkeep.qdb_rows" in loaded  # the module is there, its pyarrow is not
    assert not [m for m in NOT_AT_START if m in loaded]
