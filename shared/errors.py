"""The root of histfill's errors.

Every package translates library errors at its boundary (``raise SomeError(...) from exc``) into a
subclass of :class:`HistfillError`, so callers handle one hierarchy and know, from
``retriable``, whether trying again can help::

    HistfillError
    +-- ConfigError              bad environment variable (not retriable: fix and restart)
    +-- DecodeError              bytes that are not a batch we can read (not retriable: DLQ)
    +-- StackError               the local Kafka/QuestDB/Redis stack failed to start or stop
    +-- SinkError                QuestDB/Redis refused or was unreachable
    +-- SourceError              a historian request failed (producer.sources.errors refines it)
"""

from __future__ import annotations

from enum import StrEnum


class HistfillError(Exception):
    """Base of every error histfill raises on purpose."""

    retriable: bool = False


class ConfigError(HistfillError):
    """A setting is missing or invalid; the message names the environment variable."""


class DecodeReason(StrEnum):
    """Why bytes are not a batch: a short code that stays stable across releases.

    The dead-letter topic carries it as the ``histfill.error.reason`` header, so an operator
    (or a script) can act on a class of failures without decoding the message by hand.
    """

    EMPTY_MESSAGE = "empty_message"
    """No value at all (a tombstone) or zero bytes."""
    BAD_MAGIC_BYTE = "bad_magic_byte"
    """Starts with neither single-object ``C3 01`` nor Confluent ``00``: not our framing."""
    TRUNCATED_HEADER = "truncated_header"
    """The framing is ours but the message ends inside its header."""
    UNKNOWN_FINGERPRINT = "unknown_fingerprint"
    """Single-object framing naming a writer schema that is not in ``schemas/``."""
    NO_SCHEMA_REGISTRY = "no_schema_registry"
    """Confluent framing, but no ``SCHEMA_REGISTRY_URL`` is configured to resolve its id."""
    UNKNOWN_SCHEMA_ID = "unknown_schema_id"
    """Confluent framing with a schema id the registry does not know (404)."""
    INVALID_WRITER_SCHEMA = "invalid_writer_schema"
    """The registry's schema for that id is not valid Avro."""
    REGISTRY_UNAVAILABLE = "registry_unavailable"
    """The registry could not be asked right now: retried, never dead-lettered."""
    FIELD_MISSING = "field_missing"
    """The writer schema lacks a field the reader needs and has no default for."""
    SCHEMA_MISMATCH = "schema_mismatch"
    """The writer schema cannot be resolved to the reader's (a field's type or the record's
    name differs)."""
    TRUNCATED_BODY = "truncated_body"
    """The Avro body ends before the record does."""
    INVALID_UTF8 = "invalid_utf8"
    """A string field's bytes are not UTF-8."""
    MALFORMED_BODY = "malformed_body"
    """Other bytes that are not an Avro record of the writer schema (a bad union index, a
    negative length, ...)."""
    TRAILING_BYTES = "trailing_bytes"
    """Bytes left over after the record: the writer schema named is not the one written with."""
    COLUMN_LENGTH_MISMATCH = "column_length_mismatch"
    """A well-formed record whose columns differ in length (or a packed column is not a whole
    number of 8-byte values)."""


class DecodeError(HistfillError):
    """Bytes that cannot be decoded into a batch; keeps them so they can go to the DLQ.

    ``reason`` is the human-readable message; ``code`` the stable :class:`DecodeReason`.
    """

    def __init__(self, reason: str, raw: bytes, code: DecodeReason) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw
        self.code = code


class StackError(HistfillError):
    """The local stack (Kafka, QuestDB, Redis processes) could not be brought up or down."""


class SinkError(HistfillError):
    """QuestDB or Redis did not accept a write."""

    retriable = True


class SchemaMismatchError(HistfillError):
    """An existing QuestDB table lacks what exactly-once needs (e.g. its dedup keys)."""


class SourceError(HistfillError):
    """A historian request failed; subclasses say whether a retry can help."""
