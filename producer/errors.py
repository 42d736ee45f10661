"""What the backfill producer raises, under :class:`~shared.errors.HistfillError`.

::

    HistfillError (shared.errors)
    +-- ProducerError
        +-- RequestRejected     a request the API refuses (HTTP 4xx; names the field)
        +-- UnknownRequest      no request with that id (HTTP 404)
        +-- PublishError        Kafka refused a produce or transaction step (retriable unless fatal)
        +-- FencedError         a newer producer took over this worker's transactional id (fatal)
        +-- StateError          the state topic could not be read back (retriable)
        +-- ChunkCancelled      the request was cancelled or paused while its chunk ran
        +-- IncompleteRead      a source ended a read without an outcome for a point (retriable)

Source errors (``producer.sources.errors``) stay ``SourceError``: they travel as data
(``PointFailure``) and are recorded per point.
"""

from __future__ import annotations

from shared.errors import HistfillError


class ProducerError(HistfillError):
    """Base of the producer's own errors."""


class RequestRejected(ProducerError):
    """A request the API must refuse; ``field`` names the offending request field."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


class UnknownRequest(ProducerError):
    """No backfill request has this id."""


class PublishError(ProducerError):
    """Kafka did not take a message or a transaction step; the chunk is aborted and retried."""

    retriable = True

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class FencedError(PublishError):
    """Another producer instance now owns this transactional id: this one must stop."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


class StateError(ProducerError):
    """The state topic could not be read to its end."""

    retriable = True


class ChunkCancelled(ProducerError):
    """The chunk's request was cancelled or paused; its open transaction is aborted."""


class IncompleteRead(ProducerError):
    """A source's read ended without saying how a point went (the Source contract says it must);
    reading again is the safe answer."""

    retriable = True
