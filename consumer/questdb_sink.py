"""QuestDB sink: many point batches -> time-ordered columns -> ILP/HTTP requests.

The hot path never touches a value in Python: the batches' numpy arrays are concatenated, the
symbol columns are built from integer codes (``pd.Categorical.from_codes``), and the questdb
client serialises each frame in native code. Over HTTP one request is one transaction: QuestDB
accepts all of its rows or none.

Why time order. A flush holds whole batches, and a batch is one point over days: written as
they come, every request spans the same days as the one before it, and QuestDB merges each into
the day partitions the previous ones just wrote (out-of-order commits, rewriting those
partitions). Sorting the flush by timestamp and cutting it into requests of ``request_rows``
makes consecutive requests cover consecutive, disjoint time ranges. Measured on this 2-core
machine (10 M values, 1,000 points, 7-day batches): QuestDB spent 2.5 CPU s per million rows on
250 k-row point-ordered requests and 1.5 on a 1 M-row flush written as four time-ordered 250 k
requests, its ingest rate rising from 636 k to 865 k rows/s. Ties keep arrival order (a stable
sort), so a replayed row still lands after the original it repeats.

Why several connections. Over one connection the sink waits for QuestDB's answer to each
request before it serialises the next, and QuestDB parses one connection's requests on one
thread: one consumer then uses neither its own CPU nor QuestDB's fully (measured: its writer
busy 94-100 % of a run, most of it waiting). With ``connections`` > 1 a flush's requests go out
concurrently, each over its own connection and each its own transaction; the flush counts as
written only once every one is acknowledged, and the next flush starts after that, so flushes
stay in order. Requests are cut where the timestamp changes, so rows of one timestamp (a value
and its replay) are always in the same request, where their order is kept: concurrent requests
never hold the same key.

Why one streamed transaction per flush (the default, ``stream``). QuestDB spends a fixed cost
on every transaction it applies: measured end to end on this 2-core machine (120 days, 100
points), a 6-day window of all points written as 7 requests of 125 k rows cost it 1.89 CPU s
per million rows, as 3 requests of 288 k 1.43, about what its own ceiling costs. A bigger
request needs a bigger ILP buffer, though (106 bytes a row: 46 MB for 432 k rows), and the
consumer has 250 MB. So the flush goes out as one HTTP request whose body is streamed in
chunks (chunked transfer encoding, which QuestDB's ``/write`` accepts): each chunk is a group
of batches serialised by the questdb client into a buffer of about ``request_rows`` rows, sent,
and dropped before the next is built. QuestDB commits the request as one transaction when the
body ends, or none of it if the body breaks off or a row is bad (HTTP 400). The rows are not
sorted first: one transaction is sorted by QuestDB itself, so the flush's columns are never
held at once either, only one chunk's.

When QuestDB refuses a flush because of the data (not because it is down), the sink writes the
batches again in batch-aligned requests and bisects those it refuses, so the loop can send
exactly those batches to the dead-letter topic and write the rest. Re-sending rows already
accepted is harmless: the table's dedup keys turn it into upserts of the same rows.

Units go to the points table beside it, a row per point (see :mod:`consumer.point_units`).
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pandas as pd
import structlog
from questdb import QuestDBError, Sender

from consumer.point_units import POINTS_SYMBOLS, Units, UnitTracker, units_frame
from consumer.qdb_stream import StreamRejectedError, StreamWriter
from shared.batch import PointBatch
from shared.errors import SinkError
from shared.qdb import points_table

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


class RejectReason(StrEnum):
    """Why QuestDB refused a batch: the dead-letter topic's ``histfill.error.reason`` for it."""

    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    """A timestamp QuestDB cannot store (before 1970-01-01: its timestamps are unsigned)."""
    QUESTDB_REJECTED = "questdb_rejected"
    """Any other refusal of the rows themselves; ``histfill.error.message`` has QuestDB's words."""


@dataclass(frozen=True)
class Rejection:
    """One batch QuestDB refused, with its reason (destined for the dead-letter topic)."""

    index: int
    reason: str
    code: RejectReason = RejectReason.QUESTDB_REJECTED


def _rejection_code(batch: PointBatch) -> RejectReason:
    """What about a refused batch QuestDB could not take, judged from its data (the client
    reports a negative timestamp only as a generic BadDataFrame)."""
    stamps = batch.timestamps_us
    if len(stamps) and int(stamps.min()) < 0:
        return RejectReason.TIMESTAMP_OUT_OF_RANGE
    return RejectReason.QUESTDB_REJECTED


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


STREAM_CHUNK_ROWS = 50_000
"""Rows per chunk of a streamed flush (about 5 MB of ILP): big enough that a chunk's fixed
cost (a frame, a serialiser call) is small, small enough to hold little."""


@dataclass(frozen=True)
class _Columns:
    """A flush's batches as parallel columns; symbols as integer codes into their categories."""

    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    quality: npt.NDArray[np.uint8]
    addresses: npt.NDArray[np.signedinteger[Any]]
    connectors: npt.NDArray[np.signedinteger[Any]]
    requests: npt.NDArray[np.signedinteger[Any]] | None
    texts: npt.NDArray[np.object_] | None
    address_names: pd.Index
    connector_names: pd.Index
    request_names: pd.Index
    units: Units

    def __len__(self) -> int:
        return len(self.ts)

    def frame(self, start: int = 0, stop: int | None = None) -> pd.DataFrame:
        """Rows ``start:stop`` as a DataFrame in point_data's layout (views, no per-value work)."""
        cut = slice(start, stop)
        frame = pd.DataFrame(
            {
                "source_address": pd.Categorical.from_codes(
                    self.addresses[cut], categories=self.address_names
                ),
                "value": self.values[cut],
                "quality": self.quality[cut],
                "connector": pd.Categorical.from_codes(
                    self.connectors[cut], categories=self.connector_names
                ),
                "ts": pd.DatetimeIndex(self.ts[cut].view("datetime64[us]")).tz_localize("UTC"),
            },
            copy=False,
        )
        if self.requests is not None:
            frame["request_id"] = pd.Categorical.from_codes(
                self.requests[cut], categories=self.request_names
            )
        if self.texts is not None:
            frame["text_value"] = pd.array(self.texts[cut], dtype="string")
        return frame


def _columns(
    batches: Iterable[PointBatch], total: int, time_ordered: bool, request_ids: bool = True
) -> _Columns:
    """Copy ``total`` values of batches into columns; optionally reorder them by timestamp.
    ``request_ids``: carry the batches' request ids (a column only where the table has one).

    Batches are taken one at a time (a lazy sequence decodes each only when asked), and the
    reordering gathers one column at a time, so the flush's values are held about once.
    """
    ts = np.empty(total, np.int64)
    values = np.empty(total, np.float64)
    quality = np.empty(total, np.uint8)
    texts: npt.NDArray[np.object_] | None = None
    addresses: dict[str, int] = {}
    connectors: dict[str, int] = {}
    requests: dict[str, int] = {}
    units: dict[str, tuple[str, str]] = {}
    addr_codes: list[int] = []
    conn_codes: list[int] = []
    req_codes: list[int] = []
    lengths: list[int] = []
    at = 0
    for b in batches:
        n = len(b)
        if at + n > total:
            raise ValueError(f"the batches hold more than the {total} values announced")
        ts[at : at + n] = b.timestamps_us
        values[at : at + n] = b.values
        quality[at : at + n] = b.quality
        if b.texts is not None:
            # Text is rare (digital states, string tags): only then pay for an object column.
            if texts is None:
                texts = np.full(total, None, dtype=object)
            texts[at : at + n] = [t or None for t in b.texts]
        addr_codes.append(addresses.setdefault(b.source_address, len(addresses)))
        conn_codes.append(connectors.setdefault(b.connector, len(connectors)))
        req_codes.append(
            -1
            if b.request_id is None or not request_ids
            else requests.setdefault(b.request_id, len(requests))
        )
        if b.unit:
            units[b.source_address] = (b.unit, b.connector)
        lengths.append(n)
        at += n
    if at != total:
        raise ValueError(f"the batches hold {at} values, not the {total} announced")

    # Batches arrive sorted within themselves: the stable sort merges runs (timsort), cheaply.
    order = np.argsort(ts, kind="stable") if time_ordered else None

    def column(data: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return data if order is None else data[order]

    def codes(per_batch: list[int], names: dict[str, int]) -> npt.NDArray[Any]:
        return column(np.repeat(np.array(per_batch, dtype=_code_type(names)), lengths))

    # one column reordered at a time, each unsorted original freed before the next (the
    # flush's columns are held about once, not twice, at the consumer's peak)
    ts = column(ts)
    values = column(values)
    quality = column(quality)
    if texts is not None:
        texts = column(texts)
    return _Columns(
        ts=ts,
        values=values,
        quality=quality,
        addresses=codes(addr_codes, addresses),
        connectors=codes(conn_codes, connectors),
        requests=codes(req_codes, requests) if requests else None,
        texts=texts,
        address_names=pd.Index(list(addresses)),
        connector_names=pd.Index(list(connectors)),
        request_names=pd.Index(list(requests)),
        units=units,
    )


def _code_type(categories: dict[str, int]) -> type[np.signedinteger[Any]]:
    """The narrowest integer type for codes into ``categories`` (-1 marks a missing value)."""
    n = len(categories)
    return np.int8 if n <= 127 else np.int16 if n <= 32_767 else np.int32


def request_cuts(ts: npt.NDArray[np.int64], rows: int) -> list[tuple[int, int]]:
    """``[start, stop)`` slices of sorted ``ts`` of about ``rows`` rows each, cut only where the
    timestamp changes (a run of one timestamp longer than ``rows`` stays whole)."""
    cuts: list[tuple[int, int]] = []
    start, n = 0, len(ts)
    while start < n:
        stop = start + rows
        if stop < n:
            # back to the first row of the timestamp at the cut, or past the run if it began here
            at = int(np.searchsorted(ts, ts[stop], side="left"))
            stop = at if at > start else int(np.searchsorted(ts, ts[stop], side="right"))
        stop = min(stop, n)
        cuts.append((start, stop))
        start = stop
    return cuts


def batches_to_frame(batches: Sequence[PointBatch], request_ids: bool = True) -> pd.DataFrame:
    """Concatenate batches into one DataFrame in point_data's layout, with no per-value work."""
    total = sum(len(b) for b in batches)
    return _columns(batches, total, time_ordered=False, request_ids=request_ids).frame()


class QuestDBSink:
    """Writes batches to the point table over ILP/HTTP in time-ordered requests."""

    def __init__(
        self,
        conf: str,
        table: str,
        sender_factory: Callable[[str], Sender] = Sender.from_conf,
        request_rows: int = 125_000,
        request_bytes: int = 12 * 2**20,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        request_id: bool = False,
        connections: int = 1,
        stream: bool = False,
        http_url: str | None = None,
        http_auth: tuple[str, str] | None = None,
        http_transport: httpx.BaseTransport | None = None,
        stream_timeout_s: float = 120.0,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if stream and http_url is None:
            raise ValueError("stream needs QuestDB's http_url")
        # one streamed transaction per flush (module docstring); else time-ordered requests
        self._stream = (
            StreamWriter(http_url, http_auth, stream_timeout_s, http_transport)
            if stream and http_url is not None
            else None
        )
        self.request_rows = request_rows
        self.connections = connections
        # write each row's request id: only into a table with that column (see
        # shared.qdb.PointTableLayout; over ILP a missing column would be created)
        self.request_id = request_id
        self.request_bytes = request_bytes
        self._bytes_per_row = 0.0  # ILP bytes per row of the last request: sizes the next
        # auto_flush off: we decide when a flush happens, so we know which offsets it covers.
        # (any auto_flush_* setting of the user's is overridden: flushes must be ours to place)
        params = ";".join(
            part
            for part in conf.split("::", 1)[1].split(";")
            if part and not part.startswith("auto_flush")
        )
        self._conf = f"{conf.split('::', 1)[0]}::{params};auto_flush=off;"
        self._table = table
        self._points_table = points_table(table)
        self._units = UnitTracker()
        self._clock = clock
        self._factory = sender_factory
        # connections not in use; one is taken per request, and returned after it unless failed
        self._idle: queue.SimpleQueue[Sender] = queue.SimpleQueue()
        # the concurrent requests' threads; the sink itself is used by one thread at a time
        self._pool: ThreadPoolExecutor | None = None
        # a streamed flush's chunks are serialised here (the client's Buffer, from new_buffer();
        # the class itself is exported only by the deprecated questdb.ingress)
        self._buffer: Any = None

    def _acquire(self) -> Sender:
        with suppress(queue.Empty):
            return self._idle.get_nowait()
        sender = self._factory(self._conf)
        sender.establish()  # type: ignore[no-untyped-call]  # untyped Cython method
        return sender

    def _send(
        self,
        frame: pd.DataFrame,
        table: str | None = None,
        symbols: Sequence[str] = ("source_address", "connector", "request_id"),
    ) -> None:
        """One ILP/HTTP request: one QuestDB transaction, all of its rows or none."""
        sender = self._acquire()
        try:
            sender.dataframe(
                frame,
                table_name=table or self._table,
                symbols=[c for c in symbols if c in frame],
                at="ts",
            )
            if len(frame) and table is None:
                self._bytes_per_row = len(sender) / len(frame)
            sender.flush()
        except BaseException:
            # Drop the connection and whatever was serialised; a retry rebuilds it from the
            # batches over a new one.
            with suppress(QuestDBError):
                sender.close(flush=False)
            raise
        self._idle.put(sender)

    def _send_all(self, columns: _Columns) -> None:
        """The flush's rows in time-ordered requests: over one connection in order, or over
        ``connections`` at once (see the module docstring); returns once all are accepted.
        Raises the first request's QuestDBError, a connection failure before a refusal."""
        start = 0
        if self._bytes_per_row <= 0 and len(columns):
            # the first request of the process alone: it tells the ILP bytes per row that size
            # the others (long point names make long rows)
            start = request_cuts(columns.ts, self._rows_per_request())[0][1]
            self._send(columns.frame(0, start))
        cuts = [
            (start + a, start + b)
            for a, b in request_cuts(columns.ts[start:], self._rows_per_request())
        ]
        if not cuts:
            return
        if self.connections == 1 or len(cuts) == 1:
            for a, b in cuts:
                self._send(columns.frame(a, b))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.connections, thread_name_prefix="qdb-send")
        # each request's frame is built on its thread: at most `connections` are held at once
        futures: list[Future[None]] = [
            self._pool.submit(lambda a, b: self._send(columns.frame(a, b)), a, b) for a, b in cuts
        ]
        wait(futures)  # never leave a request in flight behind a failure
        errors = [e for e in (f.exception() for f in futures) if e is not None]
        if errors:
            outage = [e for e in errors if isinstance(e, QuestDBError) and not _is_data_error(e)]
            raise (outage or errors)[0]

    def _rows_per_request(self) -> int:
        """``request_rows``, fewer if the last request's row size says they exceed
        ``request_bytes`` (long point names and request ids make long ILP rows)."""
        if self._bytes_per_row <= 0:
            return self.request_rows
        return max(1, min(self.request_rows, int(self.request_bytes / self._bytes_per_row)))

    def write(self, batches: Sequence[PointBatch], values: int | None = None) -> list[Rejection]:
        """Write all batches; returns the ones QuestDB refused (the rest are written).

        ``batches`` may be a lazy sequence (decoding each batch when indexed): each is read
        once on the normal path, and ``values`` (their total, if known) spares a pass to count.
        The rows go out sorted by timestamp, cut into requests of about ``request_rows``
        rows (cut where the timestamp changes) and, once the row size is known, about
        ``request_bytes`` of ILP, sent over up to ``connections`` at once, so each request
        stays far below the client's and the server's body limits, its buffer bounds the
        sink's memory, and it touches a narrow time range (see the module docstring).
        Raises SinkError (retriable) when QuestDB is unreachable or failing: then nothing can
        be assumed written, and the caller must neither commit offsets nor drop the batches.
        """
        if not batches:
            return []
        if values is None:
            values = sum(len(b) for b in batches)
        try:
            if self._stream is not None:
                units: dict[str, tuple[str, str]] = {}
                sent = [0]  # rows serialised into the body
                self._stream.post(self._chunks(batches, units, sent))
                if sent[0] != values:
                    # accepted before the whole flush was sent: not ours to call written
                    raise SinkError(f"QuestDB answered after {sent[0]} of {values} rows")
                self._write_units(units)
                return []
            columns = _columns(batches, values, time_ordered=True, request_ids=self.request_id)
            self._send_all(columns)
            self._write_units(columns.units)
            return []
        except (QuestDBError, StreamRejectedError) as exc:
            if isinstance(exc, QuestDBError) and not _is_data_error(exc):
                raise SinkError(f"QuestDB write failed: {exc}") from exc
            log.warning("questdb_refused_rows", error=str(exc)[:300], batches=len(batches))
        # Some rows are refused. Find their batches: batch-aligned requests, bisected on refusal.
        rejections: list[Rejection] = []
        start, rows = 0, 0
        for i, batch in enumerate(batches):
            if rows and rows + len(batch) > self._rows_per_request():
                rejections += self._write_group(batches[start:i], offset=start)
                start, rows = i, 0
            rows += len(batch)
        rejections += self._write_group(batches[start:], offset=start)
        if len(batches) > 1 and len(rejections) == len(batches):
            # Every batch refused is a table-level problem (a column type changed, the table was
            # recreated without our layout), not poison: dead-lettering would empty the stream
            # into the DLQ. Retry instead, loudly, until an operator fixes the table.
            raise SinkError(f"QuestDB refuses every batch of the flush: {rejections[0].reason}")
        refused = {r.index for r in rejections}
        self._write_units(
            {
                b.source_address: (b.unit, b.connector)
                for i, b in enumerate(batches)
                if b.unit and i not in refused
            }
        )
        return rejections

    def _chunks(
        self, batches: Sequence[PointBatch], units: dict[str, tuple[str, str]], sent: list[int]
    ) -> Iterator[bytes]:
        """The flush's ILP in chunks of whole batches, about ``STREAM_CHUNK_ROWS`` rows each
        (fewer when rows are long), in arrival order; one chunk's columns and ILP are held at
        a time. Fills ``units`` with the batches' units and counts the rows in ``sent``."""
        if self._buffer is None:
            # a buffer of the connection's: it speaks the protocol version negotiated with
            # the server; one, reused, so it does not grow again for every chunk
            sender = self._acquire()
            self._buffer = sender.new_buffer()
            self._idle.put(sender)
        limit = min(STREAM_CHUNK_ROWS, self._rows_per_request())
        group: list[PointBatch] = []
        rows = 0
        for i in range(len(batches)):
            batch = batches[i]  # a lazy sequence decodes it now
            if group and rows + len(batch) > limit:
                yield self._chunk(self._buffer, group, rows, units)
                sent[0] += rows
                group, rows = [], 0
            group.append(batch)
            rows += len(batch)
        if group:
            yield self._chunk(self._buffer, group, rows, units)
            sent[0] += rows

    def _chunk(
        self, buffer: Any, group: list[PointBatch], rows: int, units: dict[str, tuple[str, str]]
    ) -> bytes:
        columns = _columns(group, rows, time_ordered=False, request_ids=self.request_id)
        units.update(columns.units)
        frame = columns.frame()
        try:
            buffer.dataframe(
                frame,
                table_name=self._table,
                symbols=[c for c in ("source_address", "connector", "request_id") if c in frame],
                at="ts",
            )
            data = bytes(buffer)
        finally:
            buffer.clear()
        if rows:
            self._bytes_per_row = len(data) / rows
        return data

    def _write_units(self, units: Units) -> None:
        """Upsert the points' rows whose unit this process has not written yet (or changed).

        After the values: a unit row never describes values QuestDB did not take. A refusal of
        these rows (not expected: they are a few symbols) costs the units, never the values.
        """
        fresh = self._units.changed(units)
        if not fresh:
            return
        try:
            self._send(units_frame(fresh, self._clock()), self._points_table, POINTS_SYMBOLS)
        except QuestDBError as exc:
            if not _is_data_error(exc):
                raise SinkError(f"QuestDB write failed: {exc}") from exc
            log.warning("questdb_refused_units", error=str(exc)[:300], points=len(fresh))
            return
        self._units.written(fresh)

    def _write_group(self, batches: Sequence[PointBatch], offset: int) -> list[Rejection]:
        return [Rejection(r.index + offset, r.reason, r.code) for r in self._write_bisect(batches)]

    def _write_bisect(self, batches: Sequence[PointBatch]) -> list[Rejection]:
        if not batches:
            return []
        try:
            self._send(batches_to_frame(batches, self.request_id))
            return []
        except QuestDBError as exc:
            if not _is_data_error(exc):
                raise SinkError(f"QuestDB write failed: {exc}") from exc
            if len(batches) == 1:
                reason = f"{getattr(exc.code, 'name', exc.code)}: {exc}"
                return [Rejection(0, reason, _rejection_code(batches[0]))]
        # Bisect to find the refused batches; each half is its own transaction.
        middle = len(batches) // 2
        left = self._write_bisect(batches[:middle])
        right = self._write_bisect(batches[middle:])
        return left + [Rejection(r.index + middle, r.reason, r.code) for r in right]

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        while True:
            try:
                sender = self._idle.get_nowait()
            except queue.Empty:
                return
            with suppress(QuestDBError):
                sender.close(flush=False)
