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


class HistfillError(Exception):
    """Base of every error histfill raises on purpose."""

    retriable: bool = False


class ConfigError(HistfillError):
    """A setting is missing or invalid; the message names the environment variable."""


class DecodeError(HistfillError):
    """Bytes that cannot be decoded into a batch; keeps them so they can go to the DLQ."""

    def __init__(self, reason: str, raw: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


class StackError(HistfillError):
    """The local stack (Kafka, QuestDB, Redis processes) could not be brought up or down."""


class SinkError(HistfillError):
    """QuestDB or Redis did not accept a write."""

    retriable = True


class SchemaMismatchError(HistfillError):
    """An existing QuestDB table lacks what exactly-once needs (e.g. its dedup keys)."""


class SourceError(HistfillError):
    """A historian request failed; subclasses say whether a retry can help."""
