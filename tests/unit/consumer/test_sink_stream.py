"""One streamed transaction per flush: chunks, laziness, refusals and outages (no server)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from questdb import QuestDBError, QuestDBErrorCode

from consumer.questdb_sink import QuestDBSink
from shared.batch import PointBatch
from shared.errors import SinkError


def _batch(point: str, start: int, n: int, unit: str | None = None) -> PointBatch:
    return PointBatch(
        point,
        "Simulator",
        start + np.arange(n, dtype=np.int64) * 60_000_000,
        np.arange(n, dtype=np.float64),
        np.zeros(n, np.uint8),
        unit=unit,
    )


class _Sender:
    """The connection the sink takes its buffers from, and sends units and bisected groups
    over; refuses any frame holding a point in ``refuse``."""

    def __init__(self, sent: list[pd.DataFrame], refuse: set[str]) -> None:
        self.sent = sent
        self.refuse = refuse
        self.frame: pd.DataFrame | None = None

    def establish(self) -> None:
        """Nothing to connect to."""

    def new_buffer(self) -> Any:
        with warnings.catch_warnings():  # the class is exported only by a deprecated module
            warnings.simplefilter("ignore", DeprecationWarning)
            from questdb.ingress import Buffer  # noqa: PLC0415
        return Buffer(protocol_version=1)  # text ILP: the tests read it back

    def dataframe(self, frame: pd.DataFrame, **_kw: object) -> None:
        self.frame = frame

    def __len__(self) -> int:
        return 0

    def flush(self) -> None:
        assert self.frame is not None
        if "source_address" in self.frame and self.refuse & set(self.frame["source_address"]):
            raise QuestDBError(QuestDBErrorCode.ServerFlushError, '"code":"invalid" bad row')
        self.sent.append(self.frame)

    def close(self, flush: bool = True) -> None:
        """Nothing to close."""


class _Lazy(Sequence[PointBatch]):
    """A sequence that records which batches were taken, in order (as LazyBatches decodes)."""

    def __init__(self, batches: list[PointBatch], taken: list[int]) -> None:
        self._batches = batches
        self.taken = taken

    def __len__(self) -> int:
        return len(self._batches)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self._batches[index]
        self.taken.append(index)
        return self._batches[index]


class _Transport(httpx.BaseTransport):
    """Hands each request to ``handler`` with its body unread (httpx's MockTransport reads
    it first, and so hides the chunks)."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.handler(request)


def _sink(
    handler: Callable[[httpx.Request], httpx.Response],
    sent: list[pd.DataFrame] | None = None,
    refuse: set[str] | None = None,
    request_rows: int = 250,
) -> QuestDBSink:
    return QuestDBSink(
        "http::addr=qdb:9000;",
        "point_data",
        sender_factory=lambda _conf: _Sender([] if sent is None else sent, refuse or set()),  # type: ignore[arg-type,return-value]
        request_rows=request_rows,
        stream=True,
        http_url="http://qdb:9000",
        http_transport=_Transport(handler),
    )


def test_a_flush_is_one_request_streamed_in_chunks_built_one_at_a_time() -> None:
    """Five batches of 100 values, chunks of at most 250 rows: one POST to /write whose body
    arrives in three chunks of whole batches; each chunk is built only when the previous one
    has been sent (the flush is never serialised at once), and every row is in the body."""
    taken: list[int] = []
    requests: list[tuple[str, list[bytes], list[int]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        chunks: list[bytes] = []
        seen: list[int] = []
        for chunk in request.stream:  # type: ignore[union-attr]  # a sync stream here
            chunks.append(bytes(chunk))
            seen.append(len(taken))  # batches taken when this chunk had been built
        requests.append((request.url.path, chunks, seen))
        return httpx.Response(204)

    batches = [_batch(f"P{i}", 1_700_000_000_000_000, 100) for i in range(5)]
    sink = _sink(handler)
    assert sink.write(_Lazy(batches, taken), values=500) == []
    assert len(requests) == 1
    path, chunks, seen = requests[0]
    assert path == "/write"
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == 500
    assert [len(c.splitlines()) for c in chunks] == [200, 200, 100]
    # the first chunk was sent with 3 batches taken (the third did not fit), not all five
    assert seen == [3, 5, 5]
    assert sorted({line.split(",")[1] for line in lines}) == [
        f"source_address=P{i}" for i in range(5)
    ]


def _accept(request: httpx.Request) -> httpx.Response:
    request.read()
    return httpx.Response(204)


def test_units_are_written_after_the_values_are_accepted() -> None:
    sent: list[pd.DataFrame] = []
    sink = _sink(_accept, sent=sent)
    assert sink.write([_batch("P1", 1_700_000_000_000_000, 10, unit="degC")]) == []
    assert len(sent) == 1
    assert list(sent[0]["unit"]) == ["degC"]


def test_an_answer_before_the_whole_flush_was_sent_is_not_taken_as_written() -> None:
    """A 2xx that arrives before the body was read in full (a proxy, a broken server) leaves
    rows unsent: the flush fails as retriable, and no unit is written for it."""
    sent: list[pd.DataFrame] = []
    sink = _sink(lambda _r: httpx.Response(204), sent=sent)
    with pytest.raises(SinkError, match="after 0 of 10 rows") as caught:
        sink.write([_batch("P1", 1_700_000_000_000_000, 10, unit="degC")])
    assert caught.value.retriable
    assert sent == []


def test_a_refused_row_sends_the_flush_to_bisection_and_only_its_batch_is_rejected() -> None:
    """QuestDB answers 400 for the streamed flush (nothing of it is committed): the batches
    are written again in groups and bisected, and exactly the bad batch is rejected."""
    sent: list[pd.DataFrame] = []
    bad = '{"code":"invalid","message":"failed to parse line protocol"}'
    sink = _sink(lambda _r: httpx.Response(400, text=bad), sent=sent, refuse={"BAD"})
    batches = [_batch(p, 1_700_000_000_000_000, 50) for p in ("P0", "P1", "BAD", "P3")]
    rejections = sink.write(batches)
    assert [r.index for r in rejections] == [2]
    written = set().union(*(set(f["source_address"]) for f in sent))
    assert written == {"P0", "P1", "P3"}


@pytest.mark.parametrize(
    "answer",
    [
        lambda _r: httpx.Response(503, text="overloaded"),
        lambda _r: httpx.Response(401, text="unauthorized"),
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)),
    ],
    ids=["503", "401", "unreachable"],
)
def test_an_outage_is_a_retriable_sink_error(
    answer: Callable[[httpx.Request], httpx.Response],
) -> None:
    sink = _sink(answer)
    with pytest.raises(SinkError) as caught:
        sink.write([_batch("P1", 1_700_000_000_000_000, 10)])
    assert caught.value.retriable


def test_stream_needs_the_http_url() -> None:
    with pytest.raises(ValueError, match="http_url"):
        QuestDBSink("http::addr=qdb:9000;", "point_data", stream=True)
