"""Dead-letter publishing: poison messages go to the DLQ topic with their original bytes.

Headers keep the original ones and add where the message came from and why it was refused:
``histfill.source.topic``, ``histfill.source.partition``, ``histfill.source.offset``,
``histfill.error.type``, ``histfill.error.message`` and ``histfill.error.reason``: a short stable
code (``unknown_fingerprint``, ``timestamp_out_of_range``, ...; see
:class:`shared.errors.DecodeReason` and :class:`consumer.questdb_sink.RejectReason`) that a
script can match on, where the message is for people. The loop flushes the DLQ producer before it
commits the poison message's offset, so a refused message is never just dropped.
"""

from __future__ import annotations

from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from shared.errors import SinkError

log = structlog.get_logger(__name__)

HEADER_PREFIX = "histfill."


class DeadLetterPublisher:
    """Produces poison messages to the DLQ topic and confirms their delivery."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._failed: list[KafkaError] = []

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._failed.append(err)

    def publish(self, message: Message, error_type: str, reason: str, code: str) -> None:
        original = message.headers() or []
        headers: list[tuple[str, Any]] = list(
            original.items() if isinstance(original, dict) else original
        )
        headers += [
            (f"{HEADER_PREFIX}source.topic", message.topic() or ""),
            (f"{HEADER_PREFIX}source.partition", str(message.partition())),
            (f"{HEADER_PREFIX}source.offset", str(message.offset())),
            (f"{HEADER_PREFIX}error.type", error_type),
            (f"{HEADER_PREFIX}error.message", reason[:4000]),
            (f"{HEADER_PREFIX}error.reason", code),
        ]
        try:
            self._producer.produce(
                self._topic,
                value=message.value(),
                key=message.key(),
                headers=headers,
                on_delivery=self._on_delivery,
            )
        except (KafkaException, BufferError) as exc:
            # the loop retries a flush on SinkError; anything else would unwind it
            raise SinkError(f"dead-letter produce failed: {exc}") from exc
        self._producer.poll(0)
        log.warning(
            "message_dead_lettered",
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            error_type=error_type,
            code=code,
            reason=reason[:300],
        )

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every dead letter is acknowledged; raise SinkError (retriable) if not."""
        remaining = self._producer.flush(timeout)
        failed, self._failed = self._failed, []
        if remaining or failed:
            raise SinkError(
                f"dead-letter delivery incomplete: {remaining} pending, "
                f"{len(failed)} failed ({failed[:1]})"
            )
