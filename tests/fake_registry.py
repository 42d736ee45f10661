"""A tiny Confluent Schema Registry on 127.0.0.1: the few REST endpoints the confluent-kafka
client calls, over a real HTTP socket (for the codec's tests and the consumer's on the stack)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class FakeRegistry:
    """What the tiny registry knows and which requests it served."""

    url: str
    schemas: list[str] = field(default_factory=list)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)


class _RegistryHandler(BaseHTTPRequestHandler):
    """The few Schema Registry REST endpoints the confluent-kafka client calls."""

    state: FakeRegistry

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        self.state.requests.append(("POST", path))
        match = re.fullmatch(r"/subjects/([^/]+)/versions", path)
        if match is None:
            self._reply(404, {"error_code": 404, "message": "not found"})
            return
        schema = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["schema"]
        if schema not in self.state.schemas:
            self.state.schemas.append(schema)
        schema_id = self.state.schemas.index(schema) + 1
        self.state.subjects.setdefault(match.group(1), []).append(schema_id)
        self._reply(200, {"id": schema_id})

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.state.requests.append(("GET", path))
        match = re.fullmatch(r"/schemas/ids/(\d+)", path)
        if match is None or not 0 < int(match.group(1)) <= len(self.state.schemas):
            self._reply(404, {"error_code": 40403, "message": "Schema not found"})
            return
        self._reply(200, {"schema": self.state.schemas[int(match.group(1)) - 1]})

    def _reply(self, status: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@contextmanager
def serve_registry() -> Iterator[FakeRegistry]:
    """A real HTTP Schema Registry stand-in on 127.0.0.1, one per test."""
    state = FakeRegistry("")
    handler = type("Handler", (_RegistryHandler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
