"""Poison messages, one per dead-letter reason the codec can tell apart, built from the real
schemas (shared by the codec's unit tests and the consumer's dead-letter test on the stack)."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import numpy as np
from fastavro import parse_schema, schemaless_writer

from shared.batch import PointBatch
from shared.codec import BatchCodec
from shared.errors import DecodeReason
from tests.fake_registry import FakeRegistry

MINUTE_US = 60_000_000
BASE_US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z


def good_batch(address: str = "PLANT1.POISON") -> PointBatch:
    ts = BASE_US + np.arange(5, dtype=np.int64) * MINUTE_US
    return PointBatch.from_columns(address, "Simulator", ts, np.arange(5.0))


def local_poison(codec: BatchCodec) -> dict[DecodeReason, bytes]:
    """Messages a consumer without a schema registry refuses, by the code it must give."""
    latest = codec.store.latest
    header = b"\xc3\x01" + latest.fingerprint
    good = codec.encode(good_batch())
    return {
        DecodeReason.EMPTY_MESSAGE: b"",
        DecodeReason.BAD_MAGIC_BYTE: b'{"source_address": "not avro"}',
        DecodeReason.TRUNCATED_HEADER: b"\xc3\x01\x12\x34",
        DecodeReason.UNKNOWN_FINGERPRINT: b"\xc3\x01" + struct.pack("<Q", 12345) + bytes(40),
        DecodeReason.NO_SCHEMA_REGISTRY: b"\x00\x00\x00\x00\x01" + bytes(10),
        DecodeReason.TRUNCATED_BODY: header + b"\x02p\x02c\x00",  # ends inside the record
        DecodeReason.INVALID_UTF8: header + b"\x04\xff\xfe",  # source_address of 2 bad bytes
        DecodeReason.MALFORMED_BODY: header + b"\x02p\x02c\x0a",  # request_id: union branch 5
        DecodeReason.TRAILING_BYTES: good + b"\x00",
        DecodeReason.COLUMN_LENGTH_MISMATCH: header
        + _body(
            latest.parsed,
            timestamps_us_packed=struct.pack("<3q", 1, 2, 3),
            values_packed=b"\0" * 16,
            quality=b"\0\0\0",
        ),
    }


def _body(schema: Any, **columns: object) -> bytes:
    record = {
        "source_address": "p",
        "connector": "c",
        "timestamps_us": [],
        "values": [],
        "timestamps_us_packed": b"",
        "values_packed": b"",
        "quality": b"",
        **columns,
    }
    out = io.BytesIO()
    schemaless_writer(out, schema, record)
    return out.getvalue()


def registry_poison(codec: BatchCodec, registry: FakeRegistry) -> dict[DecodeReason, bytes]:
    """Confluent-framed messages a consumer reading through ``registry`` refuses, by code.

    Their writer schemas are put in the registry here: one lacking a field the reader needs,
    one with a field of another type, one that is not valid Avro; and an id it does not know.
    """
    latest = json.loads(codec.store.latest.text)
    fields = latest["fields"]
    without_address = {**latest, "fields": [f for f in fields if f["name"] != "source_address"]}
    address_as_int = {
        **latest,
        "fields": [{**f, "type": "int"} if f["name"] == "source_address" else f for f in fields],
    }
    not_avro = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "nosuchtype"}]}
    cases = {
        DecodeReason.FIELD_MISSING: without_address,
        DecodeReason.SCHEMA_MISMATCH: address_as_int,
        DecodeReason.INVALID_WRITER_SCHEMA: not_avro,
    }
    messages = {}
    for code, schema in cases.items():
        registry.schemas.append(json.dumps(schema))
        body = b"" if schema is not_avro else _written_with(schema)
        messages[code] = b"\x00" + len(registry.schemas).to_bytes(4, "big") + body
    messages[DecodeReason.UNKNOWN_SCHEMA_ID] = b"\x00" + (10_000).to_bytes(4, "big") + b"\x02p"
    return messages


def _written_with(schema: dict[str, Any]) -> bytes:
    """A small record written with ``schema`` (whichever of the usual fields it has)."""
    types = {f["name"]: f["type"] for f in schema["fields"]}
    values: dict[str, object] = {
        "source_address": 7 if types.get("source_address") == "int" else "p",
        "connector": "c",
        "timestamps_us": [],
        "values": [],
        "timestamps_us_packed": b"",
        "values_packed": b"",
        "quality": b"",
    }
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(schema), {k: v for k, v in values.items() if k in types})
    return out.getvalue()
