"""The archive's errors, under histfill's root error.

::

    HistfillError
    +-- ArchiveError              anything the archive stage refuses or fails at
        +-- BadArchiveRequest     bad input (a 4xx at the API; names the field)
        +-- ArchiveStoreError     the object store is down or refused, after the retries
        |                         (retriable: a later run can succeed); names the key
        +-- CorruptObjectError    an object at a key is truncated, foreign or fails its checksum
"""

from __future__ import annotations

from shared.errors import HistfillError


class ArchiveError(HistfillError):
    """Base of the archive stage's errors."""


class BadArchiveRequest(ArchiveError):
    """Bad input: ``field`` names the offending request field (or CLI option)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ArchiveStoreError(ArchiveError):
    """The store did not do what was asked after every retry; the message names the key."""

    retriable = True

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class CorruptObjectError(ArchiveError):
    """The object at ``key`` is not a valid archive object for that key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
