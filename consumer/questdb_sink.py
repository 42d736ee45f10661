"""QuestDB sink: many point batches -> one columnar DataFrame -> one ILP/HTTP request.

The hot path never touches a value in Python: the batches' numpy arrays are concatenated, the
symbol columns are built from integer codes (``pd.Categorical.from_codes``), and the questdb
client serialises the frame in native code. Over HTTP one flush is one transaction: QuestDB
accepts all of its rows or none.

When QuestDB refuses a flush because of the data (not because it is down), the sink bisects the
batches to find the ones it refuses and reports them, so the loop can send exactly those to the
dead-letter topic and write the rest. Re-sending the accepted half is harmless: the table's
dedup keys turn it into upserts of the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass

import numpy as np
import pandas as pd
import structlog
from questdb import QuestDBError, Sender

from shared.batch import PointBatch
from shared.errors import SinkError

log = structlog.get_logger(__name__)

# Client-side and server-side refusals caused by the rows themselves: retrying cannot help.
_DATA_ERRORS = {
    "BadDataFrame",
    "InvalidTimestamp",
    "InvalidName",
    "InvalidUtf8",
    "ServerRejection",
    "ServerSchemaMismatch",
    "ServerParseError",
    "ArrayError",
    "DecimalError",
}


class RejectedError(SinkError):
    """QuestDB refused the rows themselves (HTTP 400, a bad timestamp, ...); not retriable."""

    retriable = False


@dataclass(frozen=True)
class Rejection:
    """One batch QuestDB refused, with its reason (destined for the dead-letter topic)."""

    index: int
    reason: str


def _is_data_error(exc: QuestDBError) -> bool:
    code = getattr(exc.code, "name", str(exc.code))
    if code in _DATA_ERRORS:
        return True
    # An HTTP 400 from the server arrives as ServerFlushError with QuestDB's JSON error body.
    message = str(exc)
    if "exceeds maximum configured allowed size" in message:
        return True  # one batch too large for one request: retrying cannot shrink it
    return code == "ServerFlushError" and (
        '"code":"invalid"' in message or "failed to parse" in message
    )


def batches_to_frame(batches: Sequence[PointBatch]) -> pd.DataFrame:
    """Concatenate batches into one DataFrame in point_data's layout, with no per-value work."""
    lengths = np.fromiter((len(b) for b in batches), dtype=np.int64, count=len(batches))
    total = int(lengths.sum())
    addresses: dict[str, int] = {}
    connectors: dict[str, int] = {}
    requests: dict[str, int] = {}
    addr_codes = np.empty(len(batches), dtype=np.int32)
    conn_codes = np.empty(len(batches), dtype=np.int32)
    req_codes = np.empty(len(batches), dtype=np.int32)
    for i, b in enumerate(batches):
        addr_codes[i] = addresses.setdefault(b.source_address, len(addresses))
        conn_codes[i] = connectors.setdefault(b.connector, len(connectors))
        req_codes[i] = (
            -1 if b.request_id is None else requests.setdefault(b.request_id, len(requests))
        )

    ts = np.concatenate([b.timestamps_us for b in batches]) if batches else np.empty(0, np.int64)
    frame = pd.DataFrame(
        {
            "source_address": pd.Categorical.from_codes(
                np.repeat(addr_codes, lengths), categories=pd.Index(list(addresses))
            ),
            "value": np.concatenate([b.values for b in batches]) if batches else np.empty(0),
            "quality": np.concatenate([b.quality for b in batches]).astype(np.int16)
            if batches
            else np.empty(0, np.int16),
            "connector": pd.Categorical.from_codes(
                np.repeat(conn_codes, lengths), categories=pd.Index(list(connectors))
            ),
            "ts": pd.DatetimeIndex(ts.view("datetime64[us]")).tz_localize("UTC"),
        },
        copy=False,
    )
    if requests:
        frame["request_id"] = pd.Categorical.from_codes(
            np.repeat(req_codes, lengths), categories=pd.Index(list(requests))
        )
    if any(b.texts is not None for b in batches):
        # Text is rare (digital states, string tags): only then pay for an object column.
        texts: list[str | None] = []
        for b in batches:
            if b.texts is None:
                texts.extend([None] * len(b))
            else:
                texts.extend(t or None for t in b.texts)
        frame["text_value"] = pd.array(texts, dtype="string")
    assert len(frame) == total  # noqa: S101  # cheap invariant of the concatenation
    return frame


class QuestDBSink:
    """Writes batches to the point table over ILP/HTTP; one ``write`` is one transaction."""

    def __init__(
        self,
        conf: str,
        table: str,
        sender_factory: Callable[[str], Sender] = Sender.from_conf,
        max_rows_per_request: int = 500_000,
    ) -> None:
        self.max_rows_per_request = max_rows_per_request
        # auto_flush off: we decide when a flush happens, so we know which offsets it covers.
        # (any auto_flush_* setting of the user's is overridden: flushes must be ours to place)
        params = ";".join(
            part
            for part in conf.split("::", 1)[1].split(";")
            if part and not part.startswith("auto_flush")
        )
        self._conf = f"{conf.split('::', 1)[0]}::{params};auto_flush=off;"
        self._table = table
        self._factory = sender_factory
        self._sender: Sender | None = None

    def _send(self, batches: Sequence[PointBatch]) -> None:
        frame = batches_to_frame(batches)
        if self._sender is None:
            sender = self._factory(self._conf)
            sender.establish()  # type: ignore[no-untyped-call]  # untyped Cython method
            self._sender = sender
        sender = self._sender
        try:
            sender.dataframe(
                frame,
                table_name=self._table,
                symbols=[c for c in ("source_address", "connector", "request_id") if c in frame],
                at="ts",
            )
            sender.flush()
        except QuestDBError:
            # Drop whatever was serialised; a retry rebuilds it from the batches.
            with suppress(QuestDBError):
                sender.close(flush=False)
            self._sender = None
            raise

    def write(self, batches: Sequence[PointBatch]) -> list[Rejection]:
        """Write all batches; returns the ones QuestDB refused (the rest are written).

        Large flushes go out as several requests of at most ``max_rows_per_request`` rows, so
        one request stays far below the client's and the server's body limits (100 MiB by
        default) whatever FLUSH_ROWS is. Raises SinkError (retriable) when QuestDB is unreachable
        or failing: then nothing can be assumed written, and the caller must neither commit
        offsets nor drop the batches.
        """
        rejections: list[Rejection] = []
        start, rows = 0, 0
        for i, batch in enumerate(batches):
            if rows and rows + len(batch) > self.max_rows_per_request:
                rejections += self._write_group(batches[start:i], offset=start)
                start, rows = i, 0
            rows += len(batch)
        rejections += self._write_group(batches[start:], offset=start)
        if len(batches) > 1 and len(rejections) == len(batches):
            # Every batch refused is a table-level problem (a column type changed, the table was
            # recreated without our layout), not poison: dead-lettering would empty the stream
            # into the DLQ. Retry instead, loudly, until an operator fixes the table.
            raise SinkError(f"QuestDB refuses every batch of the flush: {rejections[0].reason}")
        return rejections

    def _write_group(self, batches: Sequence[PointBatch], offset: int) -> list[Rejection]:
        return [Rejection(r.index + offset, r.reason) for r in self._write_bisect(batches)]

    def _write_bisect(self, batches: Sequence[PointBatch]) -> list[Rejection]:
        if not batches:
            return []
        try:
            self._send(batches)
            return []
        except QuestDBError as exc:
            if not _is_data_error(exc):
                raise SinkError(f"QuestDB write failed: {exc}") from exc
            if len(batches) == 1:
                return [Rejection(0, f"{getattr(exc.code, 'name', exc.code)}: {exc}")]
        # Bisect to find the refused batches; each half is its own transaction.
        middle = len(batches) // 2
        left = self._write_bisect(batches[:middle])
        right = self._write_bisect(batches[middle:])
        return left + [Rejection(r.index + middle, r.reason) for r in right]

    def close(self) -> None:
        if self._sender is not None:
            with suppress(QuestDBError):
                self._sender.close(flush=False)
            self._sender = None
