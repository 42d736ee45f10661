"""Decode stage: Kafka message -> PointBatch, or a Poison record saying why not.

Errors are data here: a message that cannot be decoded becomes a :class:`Poison` carrying the
original message, so the loop can dead-letter it and move on instead of crash-looping on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

from confluent_kafka import Message

from shared.batch import PointBatch
from shared.codec import BatchCodec
from shared.errors import DecodeError, DecodeReason, SinkError


@dataclass(frozen=True, slots=True)
class Poison:
    """A message that will not be ingested, and why."""

    message: Message
    error_type: str
    reason: str
    """Human-readable: the DLQ's ``histfill.error.message``."""
    code: str
    """A short stable code (a :class:`~shared.errors.DecodeReason`, or a QuestDB refusal's
    :class:`~consumer.questdb_sink.RejectReason`): the DLQ's ``histfill.error.reason``."""


def decode_message(codec: BatchCodec, message: Message) -> PointBatch | Poison:
    """Decode one message's value; undecodable bytes become Poison (never an exception).

    A retriable DecodeError (the schema registry is unreachable) is raised instead: the message
    is fine, and dead-lettering it would lose it from the main table.
    """
    value = message.value()
    if value is None:
        return Poison(
            message,
            "EmptyMessage",
            "message has no value (tombstone)",
            DecodeReason.EMPTY_MESSAGE,
        )
    try:
        return codec.decode(value)
    except DecodeError as exc:
        if exc.retriable:
            raise
        return Poison(message, type(exc).__name__, exc.reason, exc.code)


class LazyBatches(Sequence[PointBatch]):
    """A flush's batches, decoded from their Kafka messages only when read.

    The loop decodes each message once when it is polled (to count its values and find poison)
    and then keeps only the message: holding the decoded arrays too would double the memory of
    a flush in waiting. The writer reads the batches again through this sequence, one at a time
    (decoding is a copy of two buffers since schema v3), so a flush's values are in memory once
    as Kafka bytes and once as columns, never also as a list of batches.
    """

    def __init__(self, codec: BatchCodec, messages: Sequence[Message]) -> None:
        self._codec = codec
        self._messages = messages

    def __len__(self) -> int:
        return len(self._messages)

    @overload
    def __getitem__(self, index: int) -> PointBatch: ...

    @overload
    def __getitem__(self, index: slice) -> LazyBatches: ...

    def __getitem__(self, index: int | slice) -> PointBatch | LazyBatches:
        if isinstance(index, slice):
            return LazyBatches(self._codec, self._messages[index])
        message = self._messages[index]
        try:
            return self._codec.decode(message.value() or b"")
        except DecodeError as exc:
            # It decoded when polled; failing now means the schema registry became unreachable.
            raise SinkError(
                f"re-decoding {message.topic()}[{message.partition()}]@{message.offset()} "
                f"failed: {exc.reason}"
            ) from exc
