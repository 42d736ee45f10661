"""The Avro wire format: round trips, framing, schema evolution and decode failures."""

from __future__ import annotations

import io
import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.batch import PointBatch, Quality
from shared.codec import (
    DEFAULT_SCHEMAS_DIR,
    BatchCodec,
    BatchDeserializer,
    BatchSerializer,
    RegistryError,
    RegistryUnavailableError,
    SchemaStore,
)
from shared.errors import ConfigError, DecodeError, DecodeReason
from tests.fake_registry import FakeRegistry, serve_registry
from tests.poison import local_poison, registry_poison

FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def batches(draw: st.DrawFn, max_size: int = 40) -> PointBatch:
    """Any batch the schema can carry, NaN payloads and odd unicode included."""
    n = draw(st.integers(0, max_size))
    texts = draw(st.none() | st.lists(st.text(max_size=8), min_size=n, max_size=n))
    return PointBatch.from_columns(
        draw(st.text(max_size=30)),
        draw(st.sampled_from(["pi", "aceiot", "é-connector"])),
        draw(st.lists(INT64, min_size=n, max_size=n)),
        draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n, max_size=n)),
        draw(st.lists(st.integers(0, 255), min_size=n, max_size=n)),
        texts,
        request_id=draw(st.none() | st.text(max_size=12)),
        chunk_index=draw(st.none() | st.integers(-(2**31), 2**31 - 1)),
        unit=draw(st.none() | st.text(max_size=6)),
    )


@pytest.fixture(scope="module")
def codec() -> BatchCodec:
    """A codec over the repository's schemas, without a registry."""
    return BatchCodec()


def sample_batch(n: int = 5, **meta: object) -> PointBatch:
    """A small batch with every column and field filled."""
    return PointBatch.from_columns(
        "\\\\PI-SRV\\Büro.Temperatur 🌡",
        "pi",
        np.arange(n, dtype=np.int64) * 1_000_000 + 1_700_000_000_000_000,
        [float("nan"), float("inf"), float("-inf"), -0.0, 1.5][:n] + [2.0] * max(0, n - 5),
        [Quality.GOOD, Quality.BAD, Quality.QUESTIONABLE | Quality.SUBSTITUTED, 8, 16][:n]
        + [0] * max(0, n - 5),
        ["", "Shutdown", "", "Pt Created", "ü"][:n] + [""] * max(0, n - 5),
        **{"request_id": "req-1", "chunk_index": 7, "unit": "degF", **meta},
    )


# -- round trips ----------------------------------------------------------------------------------


@FEW
@given(batches())
def test_round_trip_preserves_every_field(codec: BatchCodec, batch: PointBatch) -> None:
    """Any batch decodes to an equal batch, NaN bit patterns, infinities and unicode included."""
    assert codec.decode(codec.encode(batch)) == batch


def test_round_trip_of_special_values_and_flags(codec: BatchCodec) -> None:
    """NaN, +inf, -inf, -0.0, quality flags and texts survive the wire exactly."""
    batch = sample_batch()
    decoded = codec.decode(codec.encode(batch))
    assert np.isnan(decoded.values[0])
    assert decoded.values[1:3].tolist() == [float("inf"), float("-inf")]
    assert np.signbit(decoded.values[3])
    assert decoded.quality.tolist() == [0, 1, 6, 8, 16]
    assert decoded.texts == ("", "Shutdown", "", "Pt Created", "ü")
    assert (decoded.unit, decoded.request_id, decoded.chunk_index) == ("degF", "req-1", 7)
    assert decoded.timestamps_us.dtype == np.int64
    assert decoded.values.dtype == np.float64
    assert decoded.quality.dtype == np.uint8


def test_texts_none_and_all_empty_texts_stay_distinct(codec: BatchCodec) -> None:
    """A slice without texts decodes with texts None, one with empty texts keeps the empties."""
    bare = PointBatch.from_columns("p", "aceiot", [1, 2], [1.0, 2.0])
    empty = PointBatch.from_columns("p", "aceiot", [1, 2], [1.0, 2.0], texts=["", ""])
    assert codec.decode(codec.encode(bare)).texts is None
    assert codec.decode(codec.encode(empty)).texts == ("", "")
    no_values = PointBatch.from_columns("p", "aceiot", [], [], texts=[])
    assert codec.decode(codec.encode(no_values)).texts == ()


def test_empty_batch_round_trips(codec: BatchCodec) -> None:
    """A batch with no values is a valid message and decodes to empty arrays."""
    batch = PointBatch.from_columns("p", "pi", [], [])
    decoded = codec.decode(codec.encode(batch))
    assert decoded == batch
    assert len(decoded) == 0


def test_large_batch_round_trips(codec: BatchCodec) -> None:
    """A 100k-value batch round trips without loss."""
    n = 100_000
    rng = np.random.default_rng(7)
    batch = PointBatch.from_columns(
        "big",
        "pi",
        np.cumsum(rng.integers(1, 10**6, n)) + 1_600_000_000_000_000,
        rng.normal(size=n),
        rng.integers(0, 32, n),
    )
    assert codec.decode(codec.encode(batch)) == batch


def test_chunk_index_outside_avro_int_is_refused(codec: BatchCodec) -> None:
    """Encoding refuses a chunk index that Avro's 32-bit int cannot carry."""
    with pytest.raises(ValueError, match="32-bit"):
        codec.encode(sample_batch(chunk_index=2**31))


# -- framing and fingerprints ---------------------------------------------------------------------


def _crc64_avro(data: bytes) -> int:
    """The Avro spec's reference Rabin fingerprint, written out independently of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    result = empty
    for byte in data:
        result = (result >> 8) ^ table[(result ^ byte) & 0xFF]
    return result


def test_reference_fingerprint_matches_the_avro_test_vector() -> None:
    """The reference CRC-64-AVRO gives the Avro spec's value for the schema "int"."""
    assert _crc64_avro(b'"int"') == 8247732601305521295


def test_single_object_header_is_magic_and_little_endian_fingerprint(codec: BatchCodec) -> None:
    """Messages start with C3 01 and the writer schema's CRC-64-AVRO, little-endian."""
    data = codec.encode(sample_batch())
    canonical = to_parsing_canonical_form(codec.store.latest.parsed)
    expected = _crc64_avro(canonical.encode()).to_bytes(8, "little")
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == expected
    assert data[2:10] == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def test_store_orders_versions_and_reads_with_the_newest() -> None:
    """The store loads v1, v2 and v3 from schemas/, newest last, with distinct fingerprints."""
    store = SchemaStore()
    assert [s.version for s in store.versions] == [1, 2, 3]
    assert store.latest.version == 3
    assert len({s.fingerprint for s in store.versions}) == 3
    assert store.by_fingerprint(store.versions[0].fingerprint) is store.versions[0]


def test_store_in_another_directory_takes_its_own_newest(tmp_path: Path) -> None:
    """A directory holding only v1 makes v1 the reader schema."""
    (tmp_path / "datapoint_batch.v1.avsc").write_text(
        (DEFAULT_SCHEMAS_DIR / "datapoint_batch.v1.avsc").read_text("utf-8"), "utf-8"
    )
    assert SchemaStore(tmp_path).latest.version == 1


def test_store_refuses_an_empty_directory(tmp_path: Path) -> None:
    """A schemas directory without any .avsc is a configuration error."""
    with pytest.raises(ConfigError, match=r"no \*\.avsc"):
        SchemaStore(tmp_path)


# -- schema evolution -----------------------------------------------------------------------------


def test_v1_bytes_decode_with_the_v2_reader(codec: BatchCodec) -> None:
    """Bytes written with the v1 schema decode with unit None and everything else intact."""
    batch = sample_batch()
    v1_bytes = BatchCodec(writer_version=1).encode(batch)
    assert v1_bytes[2:10] == codec.store.version(1).fingerprint
    decoded = codec.decode(v1_bytes)
    assert decoded.unit is None
    assert decoded == PointBatch.from_columns(
        batch.source_address,
        batch.connector,
        batch.timestamps_us,
        batch.values,
        batch.quality,
        batch.texts,
        request_id="req-1",
        chunk_index=7,
    )


@pytest.mark.parametrize("writer_version", [1, 2])
def test_older_bytes_decode_the_same_with_full_avro_resolution(
    codec: BatchCodec, writer_version: int
) -> None:
    """The default-filling shortcut gives what fastavro's own schema resolution gives."""
    old_bytes = BatchCodec(writer_version=writer_version).encode(sample_batch())
    resolved = cast(
        dict[str, Any],
        schemaless_reader(
            io.BytesIO(old_bytes[10:]),
            codec.store.version(writer_version).parsed,
            codec.store.latest.parsed,
        ),
    )
    # fastavro resolves the empty bytes default to "" (a str); the codec's shortcut gives b""
    assert not resolved["timestamps_us_packed"]
    assert not resolved["values_packed"]
    expected = PointBatch.from_columns(
        resolved["source_address"],
        resolved["connector"],
        resolved["timestamps_us"],
        resolved["values"],
        np.frombuffer(resolved["quality"], dtype=np.uint8),
        resolved["texts"],
        request_id=resolved["request_id"],
        chunk_index=resolved["chunk_index"],
        unit=resolved["unit"],
    )
    assert codec.decode(old_bytes) == expected
    assert expected == sample_batch() if writer_version == 2 else expected.unit is None


def test_v3_packs_timestamps_and_values_little_endian(codec: BatchCodec) -> None:
    """A v3 message carries the columns as 8-byte little-endian buffers and empty arrays."""
    batch = sample_batch()
    data = codec.encode(batch)
    assert data[2:10] == codec.store.version(3).fingerprint
    record = cast(
        dict[str, Any], schemaless_reader(io.BytesIO(data[10:]), codec.store.latest.parsed, None)
    )
    assert record["timestamps_us"] == record["values"] == []
    assert record["timestamps_us_packed"] == struct.pack(
        f"<{len(batch)}q", *batch.timestamps_us.tolist()
    )
    assert record["values_packed"] == struct.pack(f"<{len(batch)}d", *batch.values.tolist())
    assert codec.decode(data) == batch


# -- decode failures ------------------------------------------------------------------------------


def test_every_truncation_is_a_decode_error_keeping_the_bytes(codec: BatchCodec) -> None:
    """Every proper prefix of a message raises DecodeError carrying exactly that prefix."""
    data = codec.encode(sample_batch())
    for cut in range(len(data)):
        with pytest.raises(DecodeError) as info:
            codec.decode(data[:cut])
        assert info.value.raw == data[:cut]


@FEW
@given(batches(max_size=10), st.data())
def test_truncated_random_batches_fail_cleanly(
    codec: BatchCodec, batch: PointBatch, data: st.DataObject
) -> None:
    """A prefix of any batch's message raises DecodeError with the prefix as raw."""
    encoded = codec.encode(batch)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError) as info:
        codec.decode(encoded[:cut])
    assert info.value.raw == encoded[:cut]


@FEW
@given(st.binary(max_size=200))
def test_random_bytes_are_a_decode_error(codec: BatchCodec, junk: bytes) -> None:
    """Arbitrary bytes never decode and never raise anything but DecodeError."""
    with pytest.raises(DecodeError) as info:
        codec.decode(junk)
    assert info.value.raw == junk


@FEW
@given(st.binary(max_size=300))
def test_random_body_behind_a_valid_header_fails_only_as_decode_error(
    codec: BatchCodec, junk: bytes
) -> None:
    """A known fingerprint then garbage either decodes or raises DecodeError, nothing else."""
    data = b"\xc3\x01" + codec.store.latest.fingerprint + junk
    try:
        outcome: PointBatch | DecodeError = codec.decode(data)
    except DecodeError as exc:
        outcome = exc
    assert isinstance(outcome, PointBatch) or outcome.raw == data


def test_trailing_bytes_are_a_decode_error(codec: BatchCodec) -> None:
    """A valid message with extra bytes appended is refused rather than half-read."""
    data = codec.encode(sample_batch()) + b"\x00"
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode(data)


def test_unknown_fingerprint_is_a_decode_error(codec: BatchCodec) -> None:
    """A single-object message naming a schema we do not have is refused by fingerprint."""
    data = bytearray(codec.encode(sample_batch()))
    data[5] ^= 0xFF
    with pytest.raises(DecodeError, match="unknown schema fingerprint") as info:
        codec.decode(bytes(data))
    assert info.value.raw == bytes(data)


@pytest.mark.parametrize("magic", [b"", b"\xc3", b"\xc3\x02", b"\x01", b"{", b"\xff\xff"])
def test_wrong_magic_is_a_decode_error(codec: BatchCodec, magic: bytes) -> None:
    """Bytes that start with neither framing are refused with the reason and raw bytes."""
    data = magic + bytes(20)
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    assert info.value.raw == data


@pytest.mark.parametrize(
    ("version", "columns"),
    [
        (2, {"timestamps_us": [1, 2, 3], "values": [1.0, 2.0]}),
        (3, {"timestamps_us_packed": struct.pack("<3q", 1, 2, 3), "values_packed": b"\0" * 16}),
        (3, {"timestamps_us_packed": b"\0" * 20, "values_packed": b"\0" * 24}),  # not 8n bytes
    ],
)
def test_parallel_arrays_of_unequal_length_are_a_decode_error(
    codec: BatchCodec, version: int, columns: dict[str, Any]
) -> None:
    """A well-formed Avro record whose columns differ in length is not a batch."""
    body = io.BytesIO()
    record = {
        "source_address": "p",
        "connector": "pi",
        "timestamps_us": [],
        "values": [],
        "timestamps_us_packed": b"",
        "values_packed": b"",
        "quality": b"\x00\x00\x00",
        **columns,
    }
    schema = codec.store.version(version)
    schemaless_writer(body, schema.parsed, record)
    data = b"\xc3\x01" + schema.fingerprint + body.getvalue()
    with pytest.raises(DecodeError, match=r"differ in length|multiple of element size") as info:
        codec.decode(data)
    assert info.value.raw == data


def test_confluent_frame_without_a_registry_is_a_decode_error(codec: BatchCodec) -> None:
    """A 0x00-framed message cannot be read by a codec that has no registry."""
    data = b"\x00\x00\x00\x00\x01" + bytes(10)
    with pytest.raises(DecodeError, match="registry") as info:
        codec.decode(data)
    assert info.value.raw == data


# -- confluent-kafka callables --------------------------------------------------------------------


def test_serializer_and_deserializer_round_trip_with_and_without_context(
    codec: BatchCodec,
) -> None:
    """The (obj, ctx) callables encode and decode, with ctx None or a real context."""
    serialize, deserialize = BatchSerializer(codec), BatchDeserializer(codec)
    ctx = SerializationContext("points", MessageField.VALUE)
    batch = sample_batch()
    assert deserialize(serialize(batch, None), None) == batch
    assert deserialize(serialize(batch, ctx), ctx) == batch


def test_deserializer_refuses_a_tombstone(codec: BatchCodec) -> None:
    """A message without a value is a DecodeError, not a crash."""
    with pytest.raises(DecodeError, match="tombstone"):
        BatchDeserializer(codec)(None, None)


# -- Confluent Schema Registry framing ------------------------------------------------------------


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    """A real HTTP Schema Registry stand-in on 127.0.0.1, one per test."""
    with serve_registry() as state:
        yield state


def test_confluent_round_trip_registers_once_and_fetches_once(registry: FakeRegistry) -> None:
    """With a registry, messages carry 0x00 + schema id, registered once and fetched once."""
    batch = sample_batch()
    with BatchCodec(registry=registry.url) as producer, BatchCodec(registry=registry.url) as cons:
        messages = [producer.encode(batch, topic="points") for _ in range(3)]
        assert messages[0][:5] == b"\x00\x00\x00\x00\x01"
        assert [cons.decode(m) for m in messages] == [batch] * 3
    assert registry.subjects == {"points-value": [1]}
    assert registry.requests == [
        ("POST", "/subjects/points-value/versions"),
        ("GET", "/schemas/ids/1"),
    ]
    assert json.loads(registry.schemas[0])["name"] == "DataPointBatch"


def test_confluent_subject_follows_the_serialization_context(registry: FakeRegistry) -> None:
    """The serializer registers under the context's topic, one subject per topic."""
    with BatchCodec(registry=registry.url) as codec:
        serialize = BatchSerializer(codec)
        serialize(sample_batch(), SerializationContext("a", MessageField.VALUE))
        serialize(sample_batch(), SerializationContext("b", MessageField.VALUE))
    assert registry.subjects == {"a-value": [1], "b-value": [1]}


def test_confluent_v1_writer_decodes_with_unit_none(registry: FakeRegistry) -> None:
    """An old producer registering v1 is read by a v2 consumer through the registry."""
    with (
        BatchCodec(registry=registry.url, writer_version=1) as old,
        BatchCodec(registry=registry.url) as new,
    ):
        decoded = new.decode(old.encode(sample_batch(), topic="points"))
    assert decoded.unit is None
    assert decoded.texts == sample_batch().texts


def test_registry_codec_still_reads_single_object_messages(
    registry: FakeRegistry, codec: BatchCodec
) -> None:
    """A registry-configured consumer reads single-object messages without asking the registry."""
    with BatchCodec(registry=registry.url) as consumer:
        assert consumer.decode(codec.encode(sample_batch())) == sample_batch()
    assert registry.requests == []


def test_unknown_schema_id_is_a_decode_error(registry: FakeRegistry) -> None:
    """A schema id the registry does not know is a plain, non-retriable DecodeError."""
    data = b"\x00\x00\x00\x00\x2a" + bytes(8)
    with BatchCodec(registry=registry.url) as consumer, pytest.raises(DecodeError) as info:
        consumer.decode(data)
    assert info.value.raw == data
    assert not info.value.retriable


def test_unreachable_registry_is_a_retriable_decode_error() -> None:
    """A registry that refuses connections makes a retriable DecodeError, not a DLQ verdict."""
    from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = SchemaRegistryClient({"url": f"http://127.0.0.1:{port}", "max.retries": 0})
    data = b"\x00\x00\x00\x00\x01" + bytes(8)
    try:
        with pytest.raises(RegistryUnavailableError) as info:
            BatchCodec(registry=client).decode(data)
        assert info.value.retriable
        assert info.value.raw == data
        with pytest.raises(RegistryError) as reg:
            BatchCodec(registry=client).encode(sample_batch())
        assert reg.value.retriable
    finally:
        client.close()


# -- why a message is refused ---------------------------------------------------------------------


@pytest.mark.parametrize("code", list(local_poison(BatchCodec())))
def test_each_kind_of_poison_is_refused_with_its_own_code(
    codec: BatchCodec, code: DecodeReason
) -> None:
    """Each stage's failure (framing, writer schema, Avro body, columns) has a stable code."""
    data = local_poison(codec)[code]
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    assert (info.value.code, info.value.raw) == (code, data)
    assert not info.value.retriable


def test_writer_schemas_the_reader_cannot_use_are_refused_with_their_own_code(
    registry: FakeRegistry,
) -> None:
    """Through a registry: a writer schema without a required field, with a field of another
    type, that is not Avro, or an unknown id: each has its code, and none is retried."""
    with BatchCodec(registry=registry.url) as consumer:
        poison = registry_poison(consumer, registry)
        assert set(poison) == {
            DecodeReason.FIELD_MISSING,
            DecodeReason.SCHEMA_MISMATCH,
            DecodeReason.INVALID_WRITER_SCHEMA,
            DecodeReason.UNKNOWN_SCHEMA_ID,
        }
        for code, data in poison.items():
            with pytest.raises(DecodeError) as info:
                consumer.decode(data)
            assert (info.value.code, info.value.retriable) == (code, False), info.value.reason


def test_a_tombstone_and_an_unreachable_registry_have_their_codes() -> None:
    """No value is EMPTY_MESSAGE; a registry that cannot be asked is REGISTRY_UNAVAILABLE."""
    with pytest.raises(DecodeError) as empty:
        BatchDeserializer(BatchCodec())(None, None)
    assert empty.value.code is DecodeReason.EMPTY_MESSAGE
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        BatchCodec(registry=f"http://127.0.0.1:{port}") as consumer,
        pytest.raises(RegistryUnavailableError) as down,
    ):
        consumer.decode(b"\x00\x00\x00\x00\x07\x02p")
    assert (down.value.code, down.value.retriable) == (DecodeReason.REGISTRY_UNAVAILABLE, True)
