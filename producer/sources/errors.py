"""What a historian request can fail with, and whether trying again can help.

::

    SourceError (shared.errors)
    +-- SourceRequestError        names the point(s) and window it concerns
        +-- AuthError             401/403 (not retriable; raised, not reported per point)
        +-- PointNotFound         the historian does not know the point (not retriable)
        +-- BadRequest            another 4xx, e.g. maxCount above the server limit
        +-- RateLimited           429 (retriable; ``retry_after`` from the header)
        +-- ServerError           5xx, or a WebException inside a 200 (retriable)
        +-- TransportFailure      connection refused/reset, timeout (retriable)
        +-- PointReadError        an ``Errors`` entry for one stream inside a 200 (retriable)
        +-- ProtocolError         a body that is not what the API documents (not retriable)
        +-- PagingError           more events at one instant than a page holds (not retriable)
"""

from __future__ import annotations

from collections.abc import Sequence

from producer.sources.base import TimeWindow
from shared.errors import SourceError


class SourceRequestError(SourceError):
    """A failed historian request; the message names the points and window it concerned."""

    def __init__(
        self,
        reason: str,
        *,
        points: Sequence[str] = (),
        window: TimeWindow | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.reason = reason
        self.points = tuple(points)
        self.window = window
        self.status = status
        self.retry_after = retry_after
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [self.reason]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.points:
            shown = ", ".join(self.points[:5]) + (", ..." if len(self.points) > 5 else "")
            parts.append(f"points=[{shown}]")
        if self.window is not None:
            parts.append(f"window={self.window}")
        return " ".join(parts)

    def for_points(self, points: Sequence[str], window: TimeWindow | None) -> SourceRequestError:
        """The same error, re-addressed to the points and window of the read that hit it."""
        clone = type(self)(
            self.reason,
            points=points,
            window=window,
            status=self.status,
            retry_after=self.retry_after,
        )
        clone.__cause__ = self.__cause__
        return clone


class AuthError(SourceRequestError):
    """The historian refused the credentials; fix the configuration."""


class PointNotFound(SourceRequestError):
    """The historian has no such point."""


class BadRequest(SourceRequestError):
    """The historian refused the request itself (a 4xx other than 401/403/404/429)."""


class RateLimited(SourceRequestError):
    """Too many requests; wait ``retry_after`` seconds (when the server said) and retry."""

    retriable = True


class ServerError(SourceRequestError):
    """The historian failed (5xx, or a WebException reported inside a 200)."""

    retriable = True


class TransportFailure(SourceRequestError):
    """The request never got an answer (connection failure or timeout)."""

    retriable = True


class PointReadError(SourceRequestError):
    """The historian reported an error for one stream inside an otherwise successful answer."""

    retriable = True


class ProtocolError(SourceRequestError):
    """The answer is not shaped as the API documents."""


class PagingError(SourceRequestError):
    """Paging cannot make progress (more events at one timestamp than a page may hold)."""
