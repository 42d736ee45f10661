"""The Avro wire format of a :class:`~shared.batch.PointBatch`, and its codec.

The ``schemas/*.avsc`` files are the single source of truth: this module adds no field of its own.
A message carries one point's slice as parallel columns. Since schema v3 the timestamps and
values are little-endian int64/float64 buffers in Avro ``bytes`` fields: encoding and decoding
are a copy each (numpy views them), about 30 times faster than the Avro arrays of v1/v2, which
are still read (fastavro builds a Python list per array, numpy takes it over in one C loop).

Two framings, told apart by the first byte so a consumer reads both during a migration:

* Avro single-object encoding (``0xC3 0x01``, then the writer schema's 8-byte little-endian
  CRC-64-AVRO fingerprint, then the Avro binary body), resolved against the local ``schemas/``;
  needs no service at all.
* Confluent Schema Registry framing (``0x00``, then a 4-byte big-endian schema id, then the body),
  used when a registry is configured: the writer schema is registered under ``<topic>-value`` once
  and schemas are fetched by id once; both are cached.

Writers write the newest schema version; readers always read with the newest, so older messages
are resolved by Avro schema evolution (a v1 message decodes with ``unit=None``). Every decoding
failure is a :class:`~shared.errors.DecodeError` carrying the original bytes, ready for the DLQ,
and a :class:`~shared.errors.DecodeReason` code saying which stage refused them: the framing, the
writer schema, the Avro body, or the columns it holds.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint, to_parsing_canonical_form

from shared.batch import PointBatch
from shared.errors import ConfigError, DecodeError, DecodeReason, HistfillError

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.serialization import SerializationContext
    from fastavro.types import Schema

__all__ = [
    "CONFLUENT_MAGIC",
    "DEFAULT_SCHEMAS_DIR",
    "DEFAULT_TOPIC",
    "SINGLE_OBJECT_MAGIC",
    "BatchCodec",
    "BatchDeserializer",
    "BatchSerializer",
    "RegistryError",
    "RegistryUnavailableError",
    "SchemaStore",
    "WireSchema",
]

SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
CONFLUENT_MAGIC: Final = b"\x00"
DEFAULT_SCHEMAS_DIR: Final = Path(__file__).resolve().parent.parent / "schemas"
DEFAULT_TOPIC: Final = "naia.datapoints"  # Settings.topic_realtime's default

_FINGERPRINT_ALGORITHM: Final = "CRC-64-AVRO"
_SINGLE_OBJECT_HEADER_LEN: Final = len(SINGLE_OBJECT_MAGIC) + 8
_CONFLUENT_HEADER_LEN: Final = len(CONFLUENT_MAGIC) + 4
_VERSION_RE: Final = re.compile(r"\.v(\d+)\.avsc$")
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1


class RegistryError(HistfillError):
    """The schema registry refused the writer schema, or could not be reached, while encoding."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class RegistryUnavailableError(DecodeError):
    """A registry-framed message whose writer schema could not be fetched *right now*.

    Still a :class:`DecodeError` (decoding never raises anything else), but retriable: the registry
    is down or refuses us, not the bytes at fault, so the consumer should retry rather than DLQ.
    Only an id the registry answers 404 for is a plain (DLQ) :class:`DecodeError`.
    """

    retriable = True

    def __init__(self, reason: str, raw: bytes) -> None:
        super().__init__(reason, raw, DecodeReason.REGISTRY_UNAVAILABLE)


@dataclass(frozen=True, slots=True, eq=False)
class WireSchema:
    """One parsed Avro schema and its identity on the wire."""

    version: int | None
    """The ``.vN`` of its file; ``None`` for a schema known only to the registry."""
    text: str
    """Compact JSON, as registered with a schema registry."""
    parsed: Schema
    canonical: str
    """Avro Parsing Canonical Form: what the fingerprint is computed over."""
    fingerprint: bytes
    """CRC-64-AVRO of the canonical form, 8 bytes little-endian (as in single-object encoding)."""

    @classmethod
    def from_json(cls, schema: dict[str, Any] | str, version: int | None = None) -> WireSchema:
        """Parse a schema (JSON text or its decoded form) and fingerprint it."""
        obj = json.loads(schema) if isinstance(schema, str) else schema
        parsed = parse_schema(obj)
        canonical = to_parsing_canonical_form(parsed)
        # fastavro already returns the hex of the little-endian bytes, like Java's Avro
        digest = bytes.fromhex(fingerprint(canonical, _FINGERPRINT_ALGORITHM))
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        return cls(version, text, parsed, canonical, digest)


class SchemaStore:
    """Every ``*.v<N>.avsc`` of one record family in a directory, indexed by fingerprint.

    The highest version is the reader schema and the default writer schema; the older ones stay
    so that messages written by older producers still decode.
    """

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else DEFAULT_SCHEMAS_DIR
        paths = sorted(self.directory.glob("*.avsc"))
        if not paths:
            raise ConfigError(f"no *.avsc schema in {self.directory}")
        by_version: dict[int, WireSchema] = {}
        for path in paths:
            match = _VERSION_RE.search(path.name)
            if match is None:
                raise ConfigError(f"schema file {path} is not named <name>.v<N>.avsc")
            version = int(match.group(1))
            if version in by_version:
                raise ConfigError(f"two schema files claim version {version} in {self.directory}")
            try:
                by_version[version] = WireSchema.from_json(path.read_text("utf-8"), version)
            except Exception as exc:
                raise ConfigError(f"invalid Avro schema {path}: {exc}") from exc
        self._versions = tuple(by_version[v] for v in sorted(by_version))
        self._by_fingerprint = {s.fingerprint: s for s in self._versions}

    @property
    def latest(self) -> WireSchema:
        """The newest version: what readers read with and writers write by default."""
        return self._versions[-1]

    @property
    def versions(self) -> tuple[WireSchema, ...]:
        """All versions, oldest first."""
        return self._versions

    def version(self, number: int) -> WireSchema:
        """The schema of one version (``KeyError`` if there is no such file)."""
        for schema in self._versions:
            if schema.version == number:
                return schema
        raise KeyError(f"no schema version {number} in {self.directory}")

    def by_fingerprint(self, digest: bytes) -> WireSchema | None:
        """The local schema with this 8-byte fingerprint, if any."""
        return self._by_fingerprint.get(digest)

    def resolve(self, schema_json: str) -> WireSchema:
        """A schema from elsewhere (a registry): the local twin when it has one, else parsed."""
        foreign = WireSchema.from_json(schema_json)
        return self._by_fingerprint.get(foreign.fingerprint, foreign)


@dataclass(frozen=True, slots=True)
class _ReadPlan:
    """How to read one writer schema's bytes as the reader schema, as cheaply as is exact.

    fastavro's schema resolution checks the schemas again for every array item, which costs
    about a third of decoding speed. When the writer's fields are the reader's with identical
    types and the reader's extra fields have a null or empty default (v1 -> v2: ``unit`` was
    added; v2 -> v3: the packed columns), reading with the writer schema alone and filling in
    those defaults gives exactly Avro's resolved record.
    """

    reader: Schema | None
    """Pass as fastavro's reader schema; ``None`` reads with the writer schema alone."""
    defaults: tuple[tuple[str, object], ...] = ()

    @classmethod
    def between(cls, writer: WireSchema, reader: WireSchema, raw: bytes) -> _ReadPlan:
        """The plan, or a FIELD_MISSING DecodeError (about ``raw``) when no plan can exist."""
        if writer.fingerprint == reader.fingerprint:
            return cls(None)
        missing_required = _required_fields_missing(writer.parsed, reader.parsed)
        if missing_required:
            raise DecodeError(
                f"the writer schema lacks field(s) {missing_required} that have no default",
                raw,
                DecodeReason.FIELD_MISSING,
            )
        try:
            missing = _defaulted_fields(writer.parsed, reader.parsed)
        except Exception:  # noqa: BLE001  # any doubt: full Avro resolution is always correct
            missing = None
        return cls(reader.parsed) if missing is None else cls(None, missing)


def _required_fields_missing(w: Schema, r: Schema) -> list[str]:
    """The reader's fields without a default that the writer has under no name or alias.

    Checked before resolving, so a missing field is told apart from other schema mismatches
    by the schemas themselves, not by fastavro's message.
    """
    if not isinstance(w, dict) or not isinstance(r, dict) or "fields" not in w:
        return []
    written = {f["name"] for f in w["fields"]}
    return [
        f["name"]
        for f in r.get("fields", [])
        if "default" not in f and not ({f["name"], *f.get("aliases", [])} & written)
    ]


def _body_failure(exc: Exception) -> DecodeReason:
    """The code of an exception fastavro raised reading a body (by its class)."""
    if isinstance(exc, EOFError):
        return DecodeReason.TRUNCATED_BODY
    if isinstance(exc, UnicodeDecodeError):
        return DecodeReason.INVALID_UTF8
    if isinstance(exc, SchemaResolutionError):
        return DecodeReason.SCHEMA_MISMATCH
    return DecodeReason.MALFORMED_BODY


def _defaulted_fields(w: Schema, r: Schema) -> tuple[tuple[str, object], ...] | None:
    """The reader's fields the writer lacks, with their (immutable) defaults, or None if the
    shortcut is not exact."""
    if not isinstance(w, dict) or not isinstance(r, dict) or w["name"] != r["name"]:
        return None
    if len(w["__named_schemas"]) > 1 or len(r["__named_schemas"]) > 1:
        return None  # a nested named type would compare by name only below: don't guess
    written = {f["name"]: _canonical(f["type"]) for f in w["fields"]}
    missing: list[tuple[str, object]] = []
    for field in r["fields"]:
        if field["name"] in written:
            if written[field["name"]] != _canonical(field["type"]):
                return None  # e.g. int promoted to long: let fastavro resolve it
        elif "default" in field and field["default"] is None:
            missing.append((field["name"], None))
        elif field["type"] == "bytes" and field.get("default") == "":
            missing.append((field["name"], b""))
        else:
            return None
    return tuple(missing)


def _canonical(schema: Schema) -> str:
    return str(to_parsing_canonical_form(schema))


def _registry_client(url: str) -> SchemaRegistryClient:
    """Import lazily: the registry client needs extras (authlib, httpx2) only its users need."""
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError(
            f"a schema registry is configured ({url}) but confluent_kafka.schema_registry cannot "
            f"be imported ({exc}); install confluent-kafka[schemaregistry]"
        ) from exc
    return SchemaRegistryClient({"url": url})


def _registry_failure_is_transient(exc: Exception) -> bool:
    """True when a registry call failed for want of the service rather than by its answer."""
    status = getattr(exc, "http_status_code", None)
    if isinstance(status, int):
        return status in (408, 429) or status >= 500
    # No HTTP answer at all (refused, reset, timeout, DNS): httpx's or httpx2's TransportError,
    # whichever confluent-kafka picked. Anything else (a malformed answer, a bug) is not retried.
    return isinstance(exc, OSError) or any(
        cls.__name__ == "TransportError" for cls in type(exc).__mro__
    )


class BatchCodec:
    """Encodes :class:`PointBatch` to Avro bytes and back; safe to share, cheap to call.

    ``registry`` (a URL or a ready ``SchemaRegistryClient``) switches *writing* to the Confluent
    framing; reading accepts both framings either way, but a ``0x00`` message needs a registry.
    ``writer_version`` pins an older schema version for writing (rolling upgrades, tests).
    """

    def __init__(
        self,
        store: SchemaStore | None = None,
        *,
        registry: str | SchemaRegistryClient | None = None,
        writer_version: int | None = None,
    ) -> None:
        self.store = store if store is not None else SchemaStore()
        self._reader = self.store.latest
        self._writer = (
            self._reader if writer_version is None else self.store.version(writer_version)
        )
        self._single_object_header = SINGLE_OBJECT_MAGIC + self._writer.fingerprint
        # v3 and later write timestamps and values packed; older versions as Avro arrays
        self._packed = any(
            f["name"] == "timestamps_us_packed" for f in json.loads(self._writer.text)["fields"]
        )
        self._owns_registry = isinstance(registry, str)
        self._registry = _registry_client(registry) if isinstance(registry, str) else registry
        self._ids_by_topic: dict[str, bytes] = {}
        self._schemas_by_id: dict[int, WireSchema] = {}
        self._plans: dict[bytes, _ReadPlan] = {}

    @property
    def writer_schema(self) -> WireSchema:
        """The schema this codec writes with."""
        return self._writer

    def close(self) -> None:
        """Close the registry client if this codec created it."""
        if self._owns_registry and self._registry is not None:
            self._registry.close()

    def __enter__(self) -> BatchCodec:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- encoding -------------------------------------------------------------------------------

    def encode(self, batch: PointBatch, topic: str = DEFAULT_TOPIC) -> bytes:
        """Frame and serialize one batch; ``topic`` only names the registry subject."""
        if batch.chunk_index is not None and not _INT32_MIN <= batch.chunk_index <= _INT32_MAX:
            raise ValueError(f"chunk_index {batch.chunk_index} does not fit Avro's 32-bit int")
        out = io.BytesIO()
        out.write(
            self._single_object_header
            if self._registry is None
            else self._id_header(self._registry, topic)
        )
        schemaless_writer(out, self._writer.parsed, _to_record(batch, self._packed))
        return out.getvalue()

    def _id_header(self, registry: SchemaRegistryClient, topic: str) -> bytes:
        header = self._ids_by_topic.get(topic)
        if header is None:
            schema_id = self._register(registry, f"{topic}-value")
            header = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
            self._ids_by_topic[topic] = header
        return header

    def _register(self, registry: SchemaRegistryClient, subject: str) -> int:
        from confluent_kafka.schema_registry import Schema  # noqa: PLC0415

        try:
            schema_id = registry.register_schema(subject, Schema(self._writer.text, "AVRO"))
        except Exception as exc:
            raise RegistryError(
                f"registering the writer schema under {subject!r} failed: {exc}",
                retriable=_registry_failure_is_transient(exc),
            ) from exc
        return int(schema_id)

    # -- decoding -------------------------------------------------------------------------------

    def decode(self, data: bytes) -> PointBatch:
        """Parse one message; any failure is a :class:`DecodeError` holding ``data``.

        ``quality`` comes back as a read-only view of the message's bytes (no copy).
        """
        raw = data if type(data) is bytes else bytes(data)
        try:
            return self._decode(raw)
        except DecodeError:
            raise
        except Exception as exc:
            # Each stage below translates the failures it expects; this is the net that lets a
            # consumer route anything else to the DLQ with one except clause too.
            raise DecodeError(
                f"undecodable batch: {type(exc).__name__}: {exc}", raw, DecodeReason.MALFORMED_BODY
            ) from exc

    def _decode(self, raw: bytes) -> PointBatch:
        writer, offset = self._writer_of(raw)
        plan = self._plans.get(writer.fingerprint)
        if plan is None:
            plan = self._plans[writer.fingerprint] = _ReadPlan.between(writer, self._reader, raw)
        body = io.BytesIO(raw)
        body.seek(offset)
        try:
            record = schemaless_reader(body, writer.parsed, plan.reader)
        except Exception as exc:
            # fastavro raises EOFError, ValueError, UnicodeDecodeError, IndexError, its own
            # SchemaResolutionError...: the class says which (see _body_failure)
            raise DecodeError(
                f"undecodable Avro body: {type(exc).__name__}: {exc}", raw, _body_failure(exc)
            ) from exc
        for name, default in plan.defaults:
            record.setdefault(name, default)  # type: ignore[union-attr]
        if body.tell() != len(raw):
            raise DecodeError(
                f"{len(raw) - body.tell()} trailing bytes after the Avro body",
                raw,
                DecodeReason.TRAILING_BYTES,
            )
        try:
            return _to_batch(record)  # type: ignore[arg-type]  # a record schema reads as a dict
        except KeyError as exc:
            raise DecodeError(
                f"the record has no field {exc}", raw, DecodeReason.FIELD_MISSING
            ) from exc
        except ValueError as exc:
            # np.frombuffer on a packed column that is not 8n bytes; PointBatch on unequal columns
            raise DecodeError(
                f"not a batch: {exc}", raw, DecodeReason.COLUMN_LENGTH_MISMATCH
            ) from exc

    def _writer_of(self, raw: bytes) -> tuple[WireSchema, int]:
        """The writer schema named by the framing, and where the Avro body starts."""
        if raw[:2] == SINGLE_OBJECT_MAGIC:
            if len(raw) < _SINGLE_OBJECT_HEADER_LEN:
                raise DecodeError(
                    f"truncated single-object header ({len(raw)} bytes)",
                    raw,
                    DecodeReason.TRUNCATED_HEADER,
                )
            digest = raw[2:_SINGLE_OBJECT_HEADER_LEN]
            writer = self.store.by_fingerprint(digest)
            if writer is None:
                raise DecodeError(
                    f"unknown schema fingerprint {digest.hex()} (not in {self.store.directory})",
                    raw,
                    DecodeReason.UNKNOWN_FINGERPRINT,
                )
            return writer, _SINGLE_OBJECT_HEADER_LEN
        if raw[:1] == CONFLUENT_MAGIC:
            if self._registry is None:
                raise DecodeError(
                    "Confluent-framed message (magic byte 0x00) but no schema registry is "
                    "configured to resolve its schema id",
                    raw,
                    DecodeReason.NO_SCHEMA_REGISTRY,
                )
            if len(raw) < _CONFLUENT_HEADER_LEN:
                raise DecodeError(
                    f"truncated Confluent header ({len(raw)} bytes)",
                    raw,
                    DecodeReason.TRUNCATED_HEADER,
                )
            schema_id = int.from_bytes(raw[1:5], "big")
            return self._schema_by_id(self._registry, schema_id, raw), _CONFLUENT_HEADER_LEN
        if not raw:
            raise DecodeError("empty message (zero bytes)", raw, DecodeReason.EMPTY_MESSAGE)
        if SINGLE_OBJECT_MAGIC.startswith(raw):
            raise DecodeError(
                "truncated single-object header (1 byte)", raw, DecodeReason.TRUNCATED_HEADER
            )
        raise DecodeError(
            f"unknown framing: starts with {raw[:2].hex()}, expected c301 or 00",
            raw,
            DecodeReason.BAD_MAGIC_BYTE,
        )

    def _schema_by_id(
        self, registry: SchemaRegistryClient, schema_id: int, raw: bytes
    ) -> WireSchema:
        cached = self._schemas_by_id.get(schema_id)
        if cached is not None:
            return cached
        try:
            schema_text = registry.get_schema(schema_id).schema_str
        except Exception as exc:
            if getattr(exc, "http_status_code", None) == 404:
                raise DecodeError(
                    f"schema id {schema_id} unknown to the registry",
                    raw,
                    DecodeReason.UNKNOWN_SCHEMA_ID,
                ) from exc
            # Down, overloaded or refusing our credentials: the bytes are not at fault, so do
            # not send them to the DLQ (where every message would follow them).
            raise RegistryUnavailableError(
                f"cannot fetch schema id {schema_id} from the registry: {exc}", raw
            ) from exc
        try:
            if schema_text is None:
                raise ValueError("the registry returned no schema text")
            schema = self.store.resolve(schema_text)
        except Exception as exc:
            raise DecodeError(
                f"registry schema id {schema_id} is not valid Avro: {exc}",
                raw,
                DecodeReason.INVALID_WRITER_SCHEMA,
            ) from exc
        self._schemas_by_id[schema_id] = schema
        return schema


def _to_record(batch: PointBatch, packed: bool) -> dict[str, Any]:
    # A v3 writer packs timestamps and values into little-endian buffers (a memcpy each way); a
    # v1/v2 writer fills the arrays (.tolist() hands fastavro native numbers in one C loop).
    # Keys the writer schema lacks are ignored by fastavro: that is how older writers drop fields.
    return {
        "source_address": batch.source_address,
        "connector": batch.connector,
        "request_id": batch.request_id,
        "chunk_index": batch.chunk_index,
        "timestamps_us": [] if packed else batch.timestamps_us.tolist(),
        "values": [] if packed else batch.values.tolist(),
        "timestamps_us_packed": batch.timestamps_us.astype("<i8", copy=False).tobytes()
        if packed
        else b"",
        "values_packed": batch.values.astype("<f8", copy=False).tobytes() if packed else b"",
        "quality": batch.quality.tobytes(),
        "texts": None if batch.texts is None else list(batch.texts),
        "unit": batch.unit,
    }


def _to_batch(record: dict[str, Any]) -> PointBatch:
    texts = record["texts"]
    packed_ts: bytes = record.get("timestamps_us_packed") or b""
    packed_values: bytes = record.get("values_packed") or b""
    return PointBatch(
        record["source_address"],
        record["connector"],
        # packed (v3): zero-copy views of the message's bytes; arrays (v1/v2): np.array over a
        # list of native numbers is a C loop, faster here than np.fromiter
        np.frombuffer(packed_ts, dtype="<i8")
        if packed_ts
        else np.array(record["timestamps_us"], dtype=np.int64),
        np.frombuffer(packed_values, dtype="<f8")
        if packed_values
        else np.array(record["values"], dtype=np.float64),
        np.frombuffer(record["quality"], dtype=np.uint8),
        None if texts is None else tuple(texts),
        record["request_id"],
        record["chunk_index"],
        record["unit"],
    )


class BatchSerializer:
    """A confluent-kafka value serializer: ``(batch, ctx) -> bytes``; ``ctx.topic`` names the
    registry subject when given."""

    def __init__(self, codec: BatchCodec, topic: str = DEFAULT_TOPIC) -> None:
        self._codec = codec
        self._topic = topic

    def __call__(self, obj: PointBatch, ctx: SerializationContext | None = None) -> bytes:
        topic = ctx.topic if ctx is not None and ctx.topic else self._topic
        return self._codec.encode(obj, topic)


class BatchDeserializer:
    """A confluent-kafka value deserializer: ``(bytes, ctx) -> PointBatch`` or DecodeError."""

    def __init__(self, codec: BatchCodec) -> None:
        self._codec = codec

    def __call__(self, data: bytes | None, ctx: SerializationContext | None = None) -> PointBatch:
        if data is None:
            raise DecodeError(
                "message has no value (a tombstone is not a batch)",
                b"",
                DecodeReason.EMPTY_MESSAGE,
            )
        return self._codec.decode(data)
