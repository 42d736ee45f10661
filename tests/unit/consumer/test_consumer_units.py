"""Pure parts of the consumer: frame building, newest-per-point, pending bookkeeping, rate cap."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from confluent_kafka import TopicPartition
from questdb import QuestDBError, QuestDBErrorCode

from consumer.decode import LazyBatches, Poison, decode_message
from consumer.latest_cache import newest_in, newest_per_point
from consumer.loop import IngestLoop
from consumer.metrics import ConsumerMetrics
from consumer.pending import Pending
from consumer.point_units import UnitTracker
from consumer.questdb_sink import QuestDBSink, RejectReason, batches_to_frame
from shared.batch import PointBatch
from shared.codec import BatchCodec
from shared.errors import DecodeReason, SinkError
from shared.settings import ConsumerSettings, load_settings
from tests.poison import local_poison
from tests.unit.consumer.fakes import FakeMessage


def _batch(address: str, ts: list[int], values: list[float], **kw: object) -> PointBatch:
    return PointBatch.from_columns(address, "Simulator", ts, values, **kw)  # type: ignore[arg-type]


def test_frame_concatenates_batches_in_table_layout() -> None:
    """Two batches become one frame with symbol columns, UTC timestamps and no text column."""
    frame = batches_to_frame([_batch("A", [1, 2], [1.0, 2.0]), _batch("B", [3], [3.0])])
    assert list(frame["source_address"]) == ["A", "A", "B"]
    assert isinstance(frame["source_address"].dtype, pd.CategoricalDtype)
    assert list(frame["value"]) == [1.0, 2.0, 3.0]
    assert str(frame["ts"].dt.tz) == "UTC"
    assert frame["ts"].iloc[2] == pd.Timestamp(3, unit="us", tz="UTC")
    assert "text_value" not in frame
    assert "request_id" not in frame


def test_frame_carries_texts_and_request_ids_only_when_present() -> None:
    """Texts become nullable strings (empty -> null) and request ids a symbol column."""
    frame = batches_to_frame(
        [
            _batch("A", [1, 2], [1.0, 0.0], texts=["Active", ""], request_id="r1"),
            _batch("B", [3], [3.0]),
        ]
    )
    assert list(frame["text_value"].astype(object).where(frame["text_value"].notna(), None)) == [
        "Active",
        None,
        None,
    ]
    assert list(frame["request_id"].astype(object).where(frame["request_id"].notna(), None)) == [
        "r1",
        "r1",
        None,
    ]


def test_newest_per_point_takes_the_max_timestamp_across_batches() -> None:
    """Per point, the newest value wins even when batches arrive out of order."""
    latest = newest_per_point(
        newest_in(b)
        for b in [
            _batch("A", [10, 30, 20], [1.0, 3.0, 2.0]),
            _batch("A", [5], [0.5]),
            _batch("B", [7], [7.0], texts=["On"]),
            _batch("C", [], []),
        ]
    )
    by_address = {item.source_address: item for item in latest}
    assert set(by_address) == {"A", "B"}
    assert (by_address["A"].ts_us, by_address["A"].value) == (30, 3.0)
    assert by_address["B"].text == "On"


def test_newest_per_point_lets_the_later_of_equal_timestamps_win() -> None:
    """A value rewritten at the same timestamp wins, within a batch and across batches,
    as the later row does in QuestDB's upsert."""
    assert newest_in(_batch("A", [1, 9, 9], [1.0, 2.0, 3.0])) == newest_in(_batch("A", [9], [3.0]))
    latest = newest_per_point(
        [newest_in(_batch("A", [9], [1.0])), newest_in(_batch("A", [9], [2.0]))]
    )
    assert [item.value for item in latest] == [2.0]


def test_pending_keeps_only_messages_of_partitions_still_owned() -> None:
    """After a revoke, only the batches of partitions we still own stay pending."""
    pending = Pending()
    pending.add(FakeMessage("bf", 0, 1), _batch("A", [1, 2], [1.0, 2.0]), now=0.0)  # type: ignore[arg-type]
    pending.add(FakeMessage("bf", 1, 1), _batch("B", [1], [1.0]), now=0.1)  # type: ignore[arg-type]
    pending.keep_only(lambda m: m.partition() == 1)
    assert [m.partition() for m in pending.batch_messages] == [1]
    assert [n.source_address for n in pending.newest if n is not None] == ["B"]
    assert pending.lengths == [1]
    assert pending.values == 1
    assert pending.size == 10
    pending.keep_only(lambda m: False)
    assert pending.since is None
    assert pending.messages == []


class _FakeSender:
    """Records the frames a sink sends, as the questdb Sender would receive them."""

    def __init__(self, sent: list[int], frames: list[pd.DataFrame] | None = None) -> None:
        self.sent = sent
        self.frames = frames

    def establish(self) -> None:
        """Nothing to connect to."""

    def dataframe(self, frame: pd.DataFrame, **_kw: object) -> None:
        self.sent.append(len(frame))
        if self.frames is not None:
            self.frames.append(frame.copy())

    def __len__(self) -> int:
        """ILP bytes buffered: 100 per row of the last frame."""
        return 100 * self.sent[-1] if self.sent else 0

    def flush(self) -> None:
        """Every request succeeds."""

    def close(self, flush: bool = True) -> None:
        """Nothing to close."""


def test_sink_writes_a_flush_in_bounded_time_ordered_requests() -> None:
    """Rows go out sorted by time in requests of at most request_rows: every row once,
    each request's time range after the previous one's, ties in arrival order."""
    sent: list[int] = []
    frames: list[pd.DataFrame] = []
    sink = QuestDBSink(
        "http::addr=x:9000;",
        "t",
        sender_factory=lambda _conf: _FakeSender(sent, frames),  # type: ignore[arg-type,return-value]
        request_rows=10,
    )
    # seven points, each a run of four values; point i starts at 10*i, interleaving in time
    batches = [_batch(f"P{i}", [i, 10 + i, 20 + i, 30 + i], [float(i)] * 4) for i in range(7)]
    batches.append(_batch("P0", [0], [99.0]))  # a replay of P0's first value, arriving last
    assert sink.write(batches) == []
    assert sent == [10, 10, 9]
    rows = pd.concat(frames, ignore_index=True)
    times = rows["ts"].astype("int64").tolist()
    assert times == sorted(times)
    assert sorted(zip(rows["source_address"].astype(str), times, strict=True)) == sorted(
        (b.source_address, int(t)) for b in batches for t in b.timestamps_us
    )
    first_two = rows.iloc[:2]
    assert list(first_two["value"]) == [0.0, 99.0]  # the later message stays later: it wins


class _FakeConsumer:
    """Positions and cached watermarks as librdkafka would report them; records pauses."""

    def __init__(self, lag: dict[tuple[str, int], int]) -> None:
        self.lag = lag
        self.paused: set[tuple[str, int]] = set()

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 100) for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return 0, 100 + self.lag.get((tp.topic, tp.partition), 0)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}


def _loop(
    fake: _FakeConsumer,
    now: list[float],
    group_lag: dict[int, int] | None = None,
    **env: str,
) -> IngestLoop:
    settings = load_settings(
        ConsumerSettings, {"TOPIC_REALTIME": "rt", "TOPIC_BACKFILL": "bf", **env}
    )
    loop = IngestLoop(
        fake,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        settings,
        ConsumerMetrics(),
        clock=lambda: now[0],
        group_lag=None if group_lag is None else (lambda: group_lag),
    )
    loop.on_assign(
        fake, [TopicPartition("rt", 0), TopicPartition("bf", 0), TopicPartition("bf", 1)]
    )  # type: ignore[arg-type]
    return loop


def test_backfill_pauses_while_realtime_lags_and_resumes_below_half() -> None:
    """Real-time lag above the threshold pauses only the backfill partitions; below half resumes."""
    fake = _FakeConsumer({("rt", 0): 5000})
    now = [10.0]
    loop = _loop(fake, now, REALTIME_LAG_PAUSE_THRESHOLD="1000")
    loop._steer()
    assert fake.paused == {("bf", 0), ("bf", 1)}
    fake.lag[("rt", 0)] = 800  # below the threshold but above half: stay paused (hysteresis)
    now[0] += 1.5
    loop._steer()
    assert fake.paused == {("bf", 0), ("bf", 1)}
    fake.lag[("rt", 0)] = 100
    now[0] += 1.5
    loop._steer()
    assert fake.paused == set()


def test_backfill_value_cap_pauses_backfill_for_the_excess() -> None:
    """Ingesting more backfill values than the cap allows pauses backfill until they are paid."""
    fake = _FakeConsumer({})
    now = [10.0]
    loop = _loop(fake, now, BACKFILL_MAX_VALUES_PER_SECOND="1000")
    loop._backfill_cap.reserve(4000)  # 3 s beyond the one-second burst
    loop._steer()
    assert fake.paused == {("bf", 0), ("bf", 1)}
    now[0] += 3.5
    loop._steer()
    assert fake.paused == set()


class _RefusingSender(_FakeSender):
    """Refuses any frame holding one of the ``bad`` addresses, as QuestDB refuses bad rows."""

    def __init__(self, sent: list[int], bad: set[str]) -> None:
        super().__init__(sent)
        self.bad = bad
        self.frame: pd.DataFrame | None = None

    def dataframe(self, frame: pd.DataFrame, **_kw: object) -> None:
        self.frame = frame

    def flush(self) -> None:
        assert self.frame is not None
        if set(self.frame["source_address"].astype(str)) & self.bad:
            raise QuestDBError(QuestDBErrorCode.BadDataFrame, "timestamp is negative")
        self.sent.append(len(self.frame))


def _sink(sent: list[int], bad: set[str]) -> QuestDBSink:
    return QuestDBSink(
        "http::addr=x:9000;auto_flush_rows=5;",
        "t",
        sender_factory=lambda _conf: _RefusingSender(sent, bad),  # type: ignore[arg-type,return-value]
    )


def test_sink_bisects_to_the_refused_batch_and_writes_the_rest() -> None:
    """One bad batch among eight is reported alone; every other row is written."""
    sent: list[int] = []
    batches = [_batch(f"P{i}", [1, 2], [0.0, 1.0]) for i in range(8)]
    rejections = _sink(sent, {"P5"}).write(batches)
    assert [r.index for r in rejections] == [5]
    assert "negative" in rejections[0].reason
    assert sum(sent) == 14


def test_sink_refusing_every_batch_is_a_retriable_error_not_poison() -> None:
    """When QuestDB refuses every batch, the flush is retried, not dead-lettered whole."""
    sent: list[int] = []
    batches = [_batch(f"P{i}", [1], [0.0]) for i in range(4)]
    with pytest.raises(SinkError, match="every batch"):
        _sink(sent, {f"P{i}" for i in range(4)}).write(batches)
    assert sent == []


def test_frame_codes_stay_right_past_the_narrow_integer_types() -> None:
    """Symbol codes use the narrowest integer type; 200 and 40,000 points still map back."""
    for points in (200, 40_000):
        batches = [_batch(f"P{i}", [i], [float(i)]) for i in range(points)]
        frame = batches_to_frame(batches)
        assert list(frame["source_address"].astype(str)) == [f"P{i}" for i in range(points)]
        assert frame["source_address"].cat.codes.dtype.itemsize == (2 if points < 32_768 else 4)


class _CountingCodec(BatchCodec):
    """The real codec, counting decodes."""

    decodes = 0

    def decode(self, data: bytes) -> PointBatch:
        self.decodes += 1
        return super().decode(data)


def test_lazy_batches_decode_on_read_and_the_sink_reads_each_once() -> None:
    """The writer's view of a flush decodes a batch when read; a normal write reads each once."""
    codec = _CountingCodec()
    batches = [_batch(f"P{i}", [i, i + 10], [1.0, 2.0]) for i in range(5)]
    messages = [FakeMessage("bf", 0, i, codec.encode(b)) for i, b in enumerate(batches)]
    lazy = LazyBatches(codec, messages)  # type: ignore[arg-type]
    assert len(lazy) == 5
    assert codec.decodes == 0
    assert list(lazy[1:3]) == batches[1:3]
    assert codec.decodes == 2
    sent: list[int] = []
    sink = QuestDBSink(
        "http::addr=x:9000;",
        "t",
        sender_factory=lambda _conf: _FakeSender(sent),  # type: ignore[arg-type,return-value]
    )
    assert sink.write(lazy, 10) == []
    assert (sent, codec.decodes) == ([10], 7)


def test_lazy_batches_turn_a_failed_re_decode_into_a_retriable_sink_error() -> None:
    """Bytes that no longer decode (a registry gone) are retried as a sink outage, not lost."""
    lazy = LazyBatches(BatchCodec(), [FakeMessage("bf", 3, 42, b"\x00\x00\x00\x00\x07")])  # type: ignore[list-item]
    with pytest.raises(SinkError, match=r"bf\[3\]@42") as info:
        lazy[0]
    assert info.value.retriable


def test_sink_refuses_a_count_that_does_not_match_the_batches() -> None:
    """A wrong announced total is a bug to stop at, not rows to drop or invent."""
    sink = QuestDBSink(
        "http::addr=x:9000;",
        "t",
        sender_factory=lambda _conf: _FakeSender([]),  # type: ignore[arg-type,return-value]
    )
    with pytest.raises(ValueError, match="not the 3 announced"):
        sink.write([_batch("A", [1, 2], [1.0, 2.0])], 3)
    with pytest.raises(ValueError, match="more than the 1 values"):
        sink.write([_batch("A", [1, 2], [1.0, 2.0])], 1)


def test_sink_sizes_requests_by_ilp_bytes_once_it_knows_the_row_size() -> None:
    """Long rows make shorter requests: after the first, at most request_bytes of ILP each."""
    sent: list[int] = []
    sink = QuestDBSink(
        "http::addr=x:9000;",
        "t",
        sender_factory=lambda _conf: _FakeSender(sent),  # type: ignore[arg-type,return-value]
        request_rows=20,
        request_bytes=1000,  # 10 rows of the fake's 100 bytes
    )
    batches = [_batch(f"P{i}", list(range(9)), [0.0] * 9) for i in range(5)]
    assert sink.write(batches) == []
    assert sent == [20, 10, 10, 5]
    sent.clear()
    assert sink.write(batches[:2]) == []
    assert sent == [10, 8]  # the next flush starts from what the last one learned


def test_backfill_pauses_for_realtime_lag_on_partitions_another_member_owns() -> None:
    """Real-time lag on a partition another consumer owns pauses our backfill too (the same
    QuestDB serves both); for our own partitions the fresher position-based lag counts."""
    fake = _FakeConsumer({})  # rt[0] is ours and has no lag
    now = [10.0]
    group = {0: 99_999, 1: 0}  # the group's commit on rt[0] is stale: ignored, it is ours
    loop = _loop(fake, now, group, REALTIME_LAG_PAUSE_THRESHOLD="1000")
    loop._steer()
    assert fake.paused == set()
    group[1] = 5000  # rt[1], owned by another member, falls behind
    now[0] += 1.5
    loop._steer()
    assert fake.paused == {("bf", 0), ("bf", 1)}
    assert loop._metrics.realtime_lag._value.get() == 5000
    group[1] = 100
    now[0] += 1.5
    loop._steer()
    assert fake.paused == set()


def test_sink_codes_each_refused_batch_by_what_it_holds() -> None:
    """A refused batch with a timestamp before 1970 is timestamp_out_of_range; one QuestDB
    refuses for another reason is questdb_rejected (the client names both BadDataFrame)."""
    sent: list[int] = []
    batches = [_batch(f"P{i}", [1, 2], [0.0, 1.0]) for i in range(8)]
    batches[2] = _batch("P2", [-60_000_000, 2], [0.0, 1.0])
    rejections = _sink(sent, {"P2", "P5"}).write(batches)
    assert [(r.index, r.code) for r in rejections] == [
        (2, RejectReason.TIMESTAMP_OUT_OF_RANGE),
        (5, RejectReason.QUESTDB_REJECTED),
    ]


def test_poison_carries_the_codec_code_and_a_tombstone_is_empty_message() -> None:
    """decode_message turns each refusal into Poison with the DecodeError's code."""
    codec = BatchCodec()
    for code, data in local_poison(codec).items():
        poison = decode_message(codec, FakeMessage("rt", 0, 1, data))  # type: ignore[arg-type]
        assert isinstance(poison, Poison)
        assert (poison.code, poison.error_type) == (code, "DecodeError")

    class _Tombstone(FakeMessage):
        def value(self) -> None:  # type: ignore[override]
            return None

    poison = decode_message(codec, _Tombstone("rt", 0, 2))  # type: ignore[arg-type]
    assert isinstance(poison, Poison)
    assert poison.code == DecodeReason.EMPTY_MESSAGE


class _TableSender(_FakeSender):
    """Records which table each request went to, and its frame."""

    def __init__(self, requests: list[tuple[str, pd.DataFrame]]) -> None:
        super().__init__([])
        self.requests = requests

    def dataframe(self, frame: pd.DataFrame, **kw: object) -> None:
        super().dataframe(frame)
        self.requests.append((str(kw["table_name"]), frame.copy()))


def test_sink_writes_each_points_unit_once_after_its_values_and_again_when_it_changes() -> None:
    """Units go to the points table, one upserted row per point, after the flush's values:
    written when first seen or changed, never for a point without a unit."""
    requests: list[tuple[str, pd.DataFrame]] = []
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    sink = QuestDBSink(
        "http::addr=x:9000;",
        "pd",
        sender_factory=lambda _conf: _TableSender(requests),  # type: ignore[arg-type,return-value]
        clock=lambda: moment,
    )
    sink.write([_batch("A", [1], [1.0], unit="kW"), _batch("B", [2], [2.0])])
    sink.write([_batch("A", [3], [3.0], unit="kW"), _batch("C", [4], [4.0], unit="degF")])
    sink.write([_batch("A", [5], [5.0], unit="MW")])
    tables = [table for table, _ in requests]
    assert tables == ["pd", "pd_points", "pd", "pd_points", "pd", "pd_points"]
    rows = [
        frame[["source_address", "unit", "connector"]].astype(str).values.tolist()
        for table, frame in requests
        if table == "pd_points"
    ]
    assert rows == [
        [["A", "kW", "Simulator"]],
        [["C", "degF", "Simulator"]],
        [["A", "MW", "Simulator"]],
    ]
    units = requests[1][1]
    assert units["ts"].iloc[0] == pd.Timestamp(0, tz="UTC")  # one row per point: upserted
    assert units["updated"].iloc[0] == pd.Timestamp(moment)


def test_unit_tracker_names_only_new_or_changed_units() -> None:
    """A unit already written is not written again; a changed one is."""
    tracker = UnitTracker()
    assert tracker.changed({"A": ("kW", "pi")}) == {"A": ("kW", "pi")}
    tracker.written({"A": ("kW", "pi")})
    assert tracker.changed({"A": ("kW", "pi"), "B": ("V", "pi")}) == {"B": ("V", "pi")}
    assert tracker.changed({"A": ("MW", "pi")}) == {"A": ("MW", "pi")}


def test_newest_value_carries_the_batch_unit_or_empty() -> None:
    """Redis's latest value of a point holds its unit ('' when the source gave none)."""
    assert newest_in(_batch("A", [1, 2], [1.0, 2.0], unit="kW")).unit == "kW"  # type: ignore[union-attr]
    assert newest_in(_batch("A", [1], [1.0])).unit == ""  # type: ignore[union-attr]


def test_sink_writes_request_ids_only_into_a_table_that_has_the_column() -> None:
    """By default (a table without request_id) the rows go without it, so ILP does not add
    the column; a sink for a table with the column writes each row's request id."""
    batches = [_batch("A", [1, 2], [1.0, 2.0], request_id="r1"), _batch("B", [3], [3.0])]
    for request_id, expected in ((False, None), (True, ["r1", "r1", None])):
        frames: list[pd.DataFrame] = []
        sink = QuestDBSink(
            "http::addr=x:9000;",
            "t",
            sender_factory=lambda _conf, f=frames: _FakeSender([], f),  # type: ignore[arg-type,misc]
            request_id=request_id,
        )
        assert sink.write(batches) == []
        frame = pd.concat(frames, ignore_index=True)
        if expected is None:
            assert "request_id" not in frame
        else:
            ids = frame["request_id"].astype(object).where(frame["request_id"].notna(), None)
            assert list(ids) == expected
