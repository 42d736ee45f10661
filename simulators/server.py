"""Run a simulator's ASGI app with uvicorn: in the foreground (the CLI) or on a background thread.

The background form binds its socket before uvicorn starts, so port 0 works and the caller knows
the port at once; readiness is polled with a deadline, never slept for.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp


def _config(app: ASGIApp, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        ws="none",
        http="h11",
        loop="asyncio",
    )


def serve_forever(app: ASGIApp, host: str, port: int, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM), as ``histfill simulate`` does."""
    uvicorn.Server(_config(app, host, port, log_level)).run()


@dataclass
class RunningServer:
    """A simulator serving on a background thread."""

    url: str
    port: int
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask uvicorn to exit and wait for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout_s)


@contextmanager
def serve_in_thread(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, ready_timeout_s: float = 10.0
) -> Iterator[RunningServer]:
    """Serve ``app`` on a daemon thread for the duration of the ``with`` block."""
    # proto IPPROTO_TCP, not the default 0: asyncio only sets TCP_NODELAY on sockets that say
    # they are TCP, and without it every response waits ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, host, bound_port, "warning"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"sim-{bound_port}", daemon=True
    )
    thread.start()
    running = RunningServer(f"http://{host}:{bound_port}", bound_port, server, thread)
    deadline = time.monotonic() + ready_timeout_s
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"simulator on {host}:{bound_port} did not start")
            time.sleep(0.005)  # polling a readiness flag with a deadline
        yield running
    finally:
        running.stop()
        sock.close()
