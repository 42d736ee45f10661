"""Keep pandas out of an archive process: pyarrow would import it for nothing (~30 MB RSS).

pyarrow imports pandas, when it is installed, on the first conversion between Arrow and Python
or numpy: ``pa.array``, ``pa.scalar`` (so any compute call given a Python value, like
``pc.fill_null(x, 0)``), ``to_numpy``, a tz-aware ``TimestampScalar.as_py()``. It does so only
to recognise pandas objects and to return ``pd.Timestamp`` for nanosecond times. The archive
has neither (its times are microseconds), but pandas is installed (the consumer's QuestDB
client needs it), and importing it is ~30 MB of the archive process's peak RSS (goal <= 200 MB).

:func:`hide_pandas` makes ``import pandas`` fail in this process, which pyarrow handles as
"pandas not installed" (its documented optional dependency). Only for a process that has not
imported pandas yet: where pandas is loaded (a test session, a process that uses it), this
does nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _NoPandas:
    """A meta-path finder that refuses ``pandas`` and its submodules."""

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(
                "pandas is kept out of the archive process (archive/nopandas.py)", name=name
            )
        return None


def hide_pandas() -> bool:
    """Make ``import pandas`` fail from now on in this process; False (nothing done) when
    pandas is already imported or already hidden."""
    if "pandas" in sys.modules or any(isinstance(f, _NoPandas) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _NoPandas())
    return True
