"""Redis latest-value cache: one hash per point, updated only by something newer.

Key: ``<REDIS_KEY_PREFIX><source_address>`` (default ``histfill:latest:SINUSOID``), a hash with
fields ``ts`` (microseconds since the epoch, UTC), ``value``, ``quality``, ``connector``,
``text`` and ``unit`` (the point's engineering unit, empty when the source gave none). Readers
take ``HGETALL``.

Each flush updates every point once (its newest value in the flush, found per batch when the
batch is polled), never once per value, and
the compare-and-set runs inside Redis as one Lua script: the hash changes only when the incoming
timestamp is not older than the stored one. So a backfill of old data can never overwrite a
newer live value, whatever order the two topics are consumed in; a value rewritten at the same
timestamp wins in Redis as it does in QuestDB's upsert, and replays after a crash change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import redis
import structlog

from shared.batch import PointBatch
from shared.errors import SinkError

log = structlog.get_logger(__name__)

FIELDS_PER_KEY = 6

# KEYS[i] is a point's hash; ARGV holds FIELDS_PER_KEY values per key, in order:
# ts, value, quality, connector, text, unit. Returns how many hashes changed.
_NEWER_WINS = """
local changed = 0
for i, key in ipairs(KEYS) do
  local base = (i - 1) * 6
  local ts = tonumber(ARGV[base + 1])
  local current = redis.call('HGET', key, 'ts')
  if (not current) or tonumber(current) <= ts then
    redis.call('HSET', key, 'ts', ARGV[base + 1], 'value', ARGV[base + 2],
               'quality', ARGV[base + 3], 'connector', ARGV[base + 4], 'text', ARGV[base + 5],
               'unit', ARGV[base + 6])
    changed = changed + 1
  end
end
return changed
"""

# Keys per script call: bounds the script's run time (Redis is single-threaded).
_KEYS_PER_CALL = 500


@dataclass(frozen=True, slots=True)
class Latest:
    """A point's newest value within one flush."""

    source_address: str
    ts_us: int
    value: float
    quality: int
    connector: str
    text: str
    unit: str = ""


def newest_in(batch: PointBatch) -> Latest | None:
    """A batch's newest value (the last of equal timestamps), or None for an empty batch."""
    if len(batch) == 0:
        return None
    stamps = batch.timestamps_us
    i = len(stamps) - 1 - int(np.argmax(stamps[::-1]))  # the last occurrence of the maximum
    return Latest(
        batch.source_address,
        int(stamps[i]),
        float(batch.values[i]),
        int(batch.quality[i]),
        batch.connector,
        batch.texts[i] if batch.texts is not None else "",
        batch.unit or "",
    )


def newest_per_point(items: Iterable[Latest | None]) -> list[Latest]:
    """Reduce per-batch newest values to one per point; on equal timestamps the later wins,
    as in QuestDB's upsert."""
    best: dict[str, Latest] = {}
    for item in items:
        if item is None:
            continue
        held = best.get(item.source_address)
        if held is None or item.ts_us >= held.ts_us:
            best[item.source_address] = item
    return list(best.values())


class LatestValueCache:
    """Applies newest-wins updates to Redis, one script call per few hundred points."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_NEWER_WINS)

    def key(self, source_address: str) -> str:
        return f"{self._prefix}{source_address}"

    def update(self, items: Iterable[Latest | None]) -> int:
        """Apply the flush's newest values (one per batch, see ``newest_in``); returns how many
        points changed.

        Raises SinkError (retriable) when Redis is unreachable; the update is idempotent, so the
        caller simply retries it.
        """
        latest = newest_per_point(items)
        changed = 0
        try:
            for start in range(0, len(latest), _KEYS_PER_CALL):
                part = latest[start : start + _KEYS_PER_CALL]
                args: list[str | int | float] = []
                for item in part:
                    args += [
                        item.ts_us,
                        repr(item.value),
                        item.quality,
                        item.connector,
                        item.text,
                        item.unit,
                    ]
                changed += int(
                    self._script(keys=[self.key(i.source_address) for i in part], args=args)
                )
        except redis.RedisError as exc:
            raise SinkError(f"Redis update failed: {exc}") from exc
        return changed

    def get(self, source_address: str) -> dict[str, str] | None:
        """The cached newest value of a point, or None."""
        raw: dict[bytes, bytes] = self._client.hgetall(self.key(source_address))  # type: ignore[assignment]
        if not raw:
            return None
        return {k.decode(): v.decode() for k, v in raw.items()}

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False
