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


def test_store_that_never_answers_times_out_and_names_the_key(stack: None) -> None:
    """A store that accepts connections but never answers: each try ends at the configured
    timeout, then an error names the key."""
    import socket as sockets  # noqa: PLC0415
    import threading  # noqa: PLC0415

    server = sockets.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[sockets.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # never answered
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        store = ObjectStore(
            StoreConfig(
                "s3://anybucket/p",
                endpoint=f"http://127.0.0.1:{server.getsockname()[1]}",
                access_key=SecretStr(stack_mod.S3PROXY_IDENTITY),
                secret_key=SecretStr(stack_mod.S3PROXY_CREDENTIAL),
                retries=1,
                backoff_s=0.01,
                timeout_s=1.0,
            ),
            sleep=lambda _s: None,
        )
        with pytest.raises(ArchiveStoreError, match=r"timeseries/2024/03/Z\.parquet"):
            store.get("timeseries/2024/03/Z.parquet")
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def test_store_answering_500_is_retried_then_names_the_key(stack: None) -> None:
    """A store answering 500 InternalError to everything: every retry is made, then the error
    names the key (a real HTTP server on a socket, S3's error document)."""
    import threading  # noqa: PLC0415
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: PLC0415

    calls: list[str] = []

    class Failing(BaseHTTPRequestHandler):
        def _fail(self) -> None:
            calls.append(self.command)
            body = b"<Error><Code>InternalError</Code><Message>boom</Message></Error>"
            self.send_response(500)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_HEAD = do_POST = _fail

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        store = ObjectStore(
            StoreConfig(
                "s3://anybucket/p",
                endpoint=f"http://127.0.0.1:{server.server_address[1]}",
                access_key=SecretStr(stack_mod.S3PROXY_IDENTITY),
                secret_key=SecretStr(stack_mod.S3PROXY_CREDENTIAL),
                retries=2,
                backoff_s=0.01,
            ),
            sleep=lambda _s: None,
        )
        with pytest.raises(ArchiveStoreError, match=r"timeseries/2024/04/W\.parquet.*3 attempts"):
            store.get("timeseries/2024/04/W.parquet")
        assert len(calls) >= 3
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
