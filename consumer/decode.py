"""Decode stage: Kafka message -> PointBatch, or a Poison record saying why not.

Errors are data here: a message that cannot be decoded becomes a :class:`Poison` carrying the
original message, so the loop can dead-letter it and move on instead of crash-looping on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Message

from shared.batch import PointBatch
from shared.codec import BatchCodec
from shared.errors import DecodeError


@dataclass(frozen=True, slots=True)
class Poison:
    """A message that will not be ingested, and why."""

    message: Message
    error_type: str
    reason: str


def decode_message(codec: BatchCodec, message: Message) -> PointBatch | Poison:
    """Decode one message's value; undecodable bytes become Poison (never an exception).

    A retriable DecodeError (the schema registry is unreachable) is raised instead: the message
    is fine, and dead-lettering it would lose it from the main table.
    """
    value = message.value()
    if value is None:
        return Poison(message, "EmptyMessage", "message has no value (tombstone)")
    try:
        return codec.decode(value)
    except DecodeError as exc:
        if exc.retriable:
            raise
        return Poison(message, type(exc).__name__, exc.reason)
