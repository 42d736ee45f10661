"""The object store behind ``ARCHIVE_URL``: a local folder or any S3-compatible service.

pyarrow's filesystems do the S3 signing and transfers (AWS S3, Cloudflare R2, MinIO, S3Proxy
by configuration: endpoint, region, keys, path-style). Every call is retried with exponential
backoff on failures that can pass (connection refused, timeouts, 5xx, 403 from a store that is
still starting); after the last attempt an ArchiveStoreError names the key.

Writes are atomic for readers: S3 makes an object visible only when its upload completes, and
the local folder writes a temporary file and renames it. A killed writer leaves at most a
stray temporary file (local) or an unfinished multipart upload (S3), never a partial object
at a key.

Custom S3 endpoints: the AWS SDK pyarrow links sends CRC checksums on every request by
default, which S3Proxy (and several other S3-compatible stores) refuse; the process sets
``AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED`` before pyarrow's S3 layer starts (only
when an endpoint is configured and the variable is not already set).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import pyarrow.fs as pafs
import structlog
from pydantic import SecretStr

from archive.errors import ArchiveStoreError

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class StoreConfig:
    """Where the archive lives and how to talk to it (from ArchiveSettings)."""

    url: str
    endpoint: str | None = None
    region: str = "us-east-1"
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    path_style: bool = True
    retries: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 30.0


class ObjectStore:
    """get/put/delete/list of whole objects by key, relative to the URL's prefix."""

    def __init__(self, config: StoreConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        parts = urlsplit(config.url)
        if parts.scheme == "file":
            root = Path(parts.netloc + parts.path).resolve() if parts.netloc else Path(parts.path)
            root.mkdir(parents=True, exist_ok=True)
            self._fs: pafs.FileSystem = pafs.LocalFileSystem()
            self._root = str(root)
            self._local = True
        elif parts.scheme == "s3":
            if not parts.netloc:
                raise ValueError("ARCHIVE_URL: s3:// needs a bucket, e.g. s3://bucket/prefix")
            self._fs = _s3(config)
            self._root = f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
            self._local = False
        else:
            raise ValueError(f"ARCHIVE_URL: expected file:// or s3://, got {config.url!r}")
        self.bucket = parts.netloc if not self._local else None

    @property
    def where(self) -> str:
        return self.config.url

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def _retry(self, what: str, key: str, call: Callable[[], T]) -> T:
        attempts = max(1, self.config.retries + 1)
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except FileNotFoundError:
                raise
            except (OSError, ValueError) as exc:  # pyarrow reports S3 errors as OSError
                if attempt == attempts:
                    raise ArchiveStoreError(
                        key, f"{what} failed after {attempts} attempts at {self.where}: {exc}"
                    ) from exc
                delay = min(30.0, self.config.backoff_s * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2  # noqa: S311  # jitter, not crypto
                log.warning(
                    "archive_store_retry", op=what, key=key, attempt=attempt, error=str(exc)[:300]
                )
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def ensure_bucket(self) -> None:
        """Create the bucket (S3) if it is missing; a store that is down fails here, early."""
        if self._local:
            return
        self._retry("create bucket", self._root, lambda: self._fs.create_dir(self._root))

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none at ``key``."""

        def read() -> bytes | None:
            try:
                with self._fs.open_input_stream(self._path(key)) as stream:
                    data: bytes = stream.read()
                    return data
            except FileNotFoundError:
                return None

        return self._retry("get", key, read)

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key``; readers see the old object or the whole new one."""

        def write() -> None:
            path = self._path(key)
            if self._local:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                temp = f"{path}.{uuid.uuid4().hex}.tmp"
                with self._fs.open_output_stream(temp) as out:
                    out.write(data)
                os.replace(temp, path)  # atomic on POSIX
            else:
                with self._fs.open_output_stream(path) as out:
                    out.write(data)

        self._retry("put", key, write)

    def delete(self, key: str) -> None:
        def remove() -> None:
            try:
                self._fs.delete_file(self._path(key))
            except FileNotFoundError:
                return

        self._retry("delete", key, remove)

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (a folder-like key ending in ``/``)."""
        base = self._path(prefix).rstrip("/")

        def listing() -> list[str]:
            try:
                infos = self._fs.get_file_info(pafs.FileSelector(base, recursive=True))
            except FileNotFoundError:
                return []
            cut = len(self._root) + 1
            return sorted(
                info.path[cut:]
                for info in infos
                if info.type == pafs.FileType.File and not info.path.endswith(".tmp")
            )

        return self._retry("list", prefix, listing)


def _s3(config: StoreConfig) -> pafs.S3FileSystem:
    endpoint = config.endpoint
    scheme = "https"
    override = None
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        scheme = parts.scheme or "https"
        override = parts.netloc
        # see the module docstring; must happen before pyarrow initialises its S3 layer
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED")
        os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "WHEN_REQUIRED")
    return pafs.S3FileSystem(
        access_key=config.access_key.get_secret_value() if config.access_key else None,
        secret_key=config.secret_key.get_secret_value() if config.secret_key else None,
        region=config.region,
        endpoint_override=override,
        scheme=scheme,
        force_virtual_addressing=not config.path_style,
        connect_timeout=min(config.timeout_s, 10.0),
        request_timeout=config.timeout_s,
        # our own retries name the key and back off; the SDK's are kept to one quick retry
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
        allow_bucket_creation=True,
    )
