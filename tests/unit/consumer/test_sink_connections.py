"""The sink's requests over several connections: cut points, concurrency, failures, close."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pandas as pd
import pytest
from questdb import QuestDBError, QuestDBErrorCode

from consumer.questdb_sink import QuestDBSink, request_cuts
from shared.batch import PointBatch
from shared.errors import SinkError


def _batch(point: str, ts: list[int]) -> PointBatch:
    n = len(ts)
    return PointBatch(
        point,
        "Simulator",
        np.array(ts, np.int64),
        np.arange(n, dtype=np.float64),
        np.zeros(n, np.uint8),
    )


def test_cuts_fall_where_the_timestamp_changes() -> None:
    ts = np.array([1, 1, 1, 2, 2, 3, 4, 4], np.int64)
    assert request_cuts(ts, 2) == [(0, 3), (3, 5), (5, 6), (6, 8)]
    assert request_cuts(ts, 4) == [(0, 3), (3, 6), (6, 8)]
    assert request_cuts(ts, 100) == [(0, 8)]
    assert request_cuts(np.array([], np.int64), 5) == []
    # a run of one timestamp longer than a request stays whole
    assert request_cuts(np.array([7] * 5 + [8], np.int64), 2) == [(0, 5), (5, 6)]


class _Sender:
    """A connection that records what it was sent; a barrier in ``gates`` makes its flush wait
    for the others' (10 ILP bytes a row)."""

    def __init__(self, log: list[tuple[int, int, int]], gates: list[threading.Barrier]) -> None:
        self.log = log
        self.gates = gates
        self.frame: pd.DataFrame | None = None
        self.closed = False
        self.fail: QuestDBError | None = None

    def establish(self) -> None:
        """Nothing to connect to."""

    def dataframe(self, frame: pd.DataFrame, **_kw: object) -> None:
        self.frame = frame

    def __len__(self) -> int:
        return 0 if self.frame is None else 10 * len(self.frame)

    def flush(self) -> None:
        assert self.frame is not None
        for gate in self.gates:
            gate.wait(timeout=10)  # BrokenBarrierError unless the requests overlap
        if self.fail is not None:
            raise self.fail
        stamps = pd.DatetimeIndex(self.frame["ts"]).asi8
        self.log.append((id(self), int(stamps.min()), int(stamps.max())))

    def close(self, flush: bool = True) -> None:
        self.closed = True


def _sink(
    connections: int, gates: list[threading.Barrier] | None = None
) -> tuple[QuestDBSink, list[_Sender], list[tuple[int, int, int]]]:
    made: list[_Sender] = []
    log: list[tuple[int, int, int]] = []

    def factory(_conf: str) -> _Sender:
        made.append(_Sender(log, [] if gates is None else gates))
        return made[-1]

    sink = QuestDBSink(
        "http::addr=x:9000;",
        "t",
        sender_factory=factory,  # type: ignore[arg-type]
        request_rows=20,
        connections=connections,
    )
    return sink, made, log


def _flush() -> list[PointBatch]:
    """40 rows: 4 points x 10 timestamps, each timestamp shared by the 4 points."""
    return [_batch(f"P{p}", list(range(100, 110))) for p in range(4)]


def test_a_flush_goes_out_over_two_connections_at_once_in_disjoint_time_ranges() -> None:
    """Two requests in flight together (the barrier needs both), none sharing a timestamp."""
    gates: list[threading.Barrier] = []
    sink, made, log = _sink(2, gates)
    assert sink.write(_flush()) == []  # the process's first request goes alone: its row size
    gates.append(threading.Barrier(2))
    del log[:]
    assert sink.write(_flush()) == []
    assert len(made) == 2
    assert len(log) == 2  # 40 rows in requests of 20 (5 whole timestamps of 4 points each)
    ranges = sorted((lo, hi) for _, lo, hi in log)
    assert all(a_hi < b_lo for (_, a_hi), (b_lo, _) in itertools.pairwise(ranges))
    assert ranges[0][0] == 100
    assert ranges[-1][1] == 109
    sink.close()
    assert all(s.closed for s in made)


def test_one_connection_sends_its_requests_one_after_another() -> None:
    """connections=1 keeps the serial path: one connection, the requests in time order."""
    sink, made, log = _sink(1)
    assert sink.write(_flush()) == []
    assert len(made) == 1
    assert [lo for _, lo, _ in log] == sorted(lo for _, lo, _ in log)


def test_a_connection_failure_fails_the_flush_after_every_request_ended() -> None:
    """One connection failing: a retriable SinkError once the others finished, and the
    failed connection is closed and never reused."""
    sink, made, log = _sink(2)
    sink.write(_flush())  # opens both connections
    broken = made[0]
    broken.fail = QuestDBError(QuestDBErrorCode.SocketError, "connection reset")
    with pytest.raises(SinkError, match="connection reset"):
        sink.write(_flush())
    assert broken.closed
    broken.fail = None
    before = len(log)
    sink.write(_flush())
    assert len(log) - before == 2
    assert all(entry[0] != id(broken) for entry in log[before:])


def test_connections_must_be_positive() -> None:
    with pytest.raises(ValueError, match="connections"):
        QuestDBSink("http::addr=x:9000;", "t", connections=0)
