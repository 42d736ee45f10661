"""A store that is down or refuses: retries with backoff, then an error naming the key."""

from __future__ import annotations

import socket

import pytest
from pydantic import SecretStr

from archive.errors import ArchiveStoreError
from archive.store import ObjectStore, StoreConfig
from histfill import stack as stack_mod

pytestmark = pytest.mark.stack


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_store_down_is_retried_then_names_the_key(stack: None) -> None:
    """Nothing listening: every attempt fails, with waits between, and the error names the key."""
    waits: list[float] = []
    store = ObjectStore(
        StoreConfig(
            "s3://anybucket/p",
            endpoint=f"http://127.0.0.1:{_closed_port()}",
            access_key=SecretStr(stack_mod.S3PROXY_IDENTITY),
            secret_key=SecretStr(stack_mod.S3PROXY_CREDENTIAL),
            retries=3,
            backoff_s=0.01,
            timeout_s=2,
        ),
        sleep=waits.append,
    )
    with pytest.raises(ArchiveStoreError, match=r"timeseries/2024/01/X\.parquet") as caught:
        store.put("timeseries/2024/01/X.parquet", b"data")
    assert "after 4 attempts" in str(caught.value)
    assert len(waits) == 3
    assert waits[0] < waits[2]  # the backoff grows
    assert caught.value.retriable


def test_store_refusing_credentials_names_the_key(stack: None) -> None:
    """The real S3Proxy refuses a wrong secret (403): retried, then an error naming the key."""
    store = ObjectStore(
        StoreConfig(
            "s3://anybucket/p",
            endpoint=f"http://127.0.0.1:{stack_mod.S3PROXY_PORT}",
            access_key=SecretStr(stack_mod.S3PROXY_IDENTITY),
            secret_key=SecretStr("wrong-secret"),
            retries=1,
            backoff_s=0.01,
        ),
        sleep=lambda _s: None,
    )
    with pytest.raises(ArchiveStoreError, match=r"timeseries/2024/02/Y\.parquet") as caught:
        store.get("timeseries/2024/02/Y.parquet")
    assert "wrong-secret" not in str(caught.value)
