"""Liveness vs readiness: a consumer stuck on a sink that is down says so, and recovers."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings
from tests.helpers import wait_for
from tests.integration.consumer.conftest import (
    BASE_US,
    BatchProducer,
    ConsumerProcess,
    free_port,
    make_batch,
    wait_for_count,
)

pytestmark = pytest.mark.stack

MAX_STUCK_S = 2


class TcpProxy:
    """Forwards a local port to QuestDB; ``close()`` cuts every connection and refuses new
    ones (QuestDB looks down to the consumer), ``open()`` serves the same port again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            if self._listener is not None:
                sockets.append(self._listener)
                self._listener = None
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _probe(consumer: ConsumerProcess, path: str) -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.get(f"http://127.0.0.1:{consumer.metrics_port}{path}", timeout=2)
    except httpx.HTTPError:
        return 0, {}
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {}  # not a JSON body
    return response.status_code, body


def test_ready_goes_503_naming_the_stuck_sink_while_health_stays_200_and_recovers(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
) -> None:
    """QuestDB unreachable: after READY_MAX_SINK_STUCK_SECONDS /ready is 503 and names
    questdb and for how long; /health stays 200 and says the same; once QuestDB is reachable
    again the flush lands and /ready is 200."""
    proxy = TcpProxy(("127.0.0.1", 9000)).open()
    try:
        consumer = start_consumer(
            QDB_CLIENT_CONF=f"http::addr=127.0.0.1:{proxy.port};",
            READY_MAX_SINK_STUCK_SECONDS=str(MAX_STUCK_S),
        )
        wait_for(lambda: _probe(consumer, "/ready")[0] == 200, timeout=60)
        assert _probe(consumer, "/health")[1].get("stuck_sinks") == []

        proxy.close()
        producer.send(infra.topic_realtime, make_batch("PLANT9.FIC101.PV", BASE_US, 50))
        producer.flush()
        wait_for(lambda: _probe(consumer, "/ready")[0] == 503, timeout=90, interval=0.2)
        _status, body = _probe(consumer, "/ready")
        stuck = {s["sink"]: s["seconds"] for s in body["stuck_sinks"]}
        assert stuck["questdb"] >= MAX_STUCK_S
        assert "sink questdb failing" in body["reason"]
        health_status, health = _probe(consumer, "/health")
        assert health_status == 200
        assert health["live"] is True
        assert health["ready"] is False
        assert [s["sink"] for s in health["stuck_sinks"]] == ["questdb"]
        assert _probe(consumer, "/live")[0] == 200

        proxy.open()
        wait_for_count(qdb, infra.qdb_table, 50)
        wait_for(lambda: _probe(consumer, "/ready")[0] == 200, timeout=30)
        assert _probe(consumer, "/ready")[1]["stuck_sinks"] == []
        assert consumer.terminate() == 0
    finally:
        proxy.close()
