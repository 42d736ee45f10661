"""Prometheus in the local stack, from Debian's ``prometheus`` package (it ships ``promtool`` too).

``histfill stack up --prometheus`` (or ``HISTFILL_STACK_PROMETHEUS=1``) starts it on
127.0.0.1:9090 with ``ops/prometheus/prometheus.yml``: it scrapes the consumer (9108) and the
producer (5052) and loads ``ops/prometheus/histfill.rules.yml``; its data lives under
``.stack/data/prometheus``. Without the flag nothing of this runs, and the services never need
it: they only answer scrapes. ``make test`` installs the package (for ``promtool``) the way the
stack installs ``redis-server``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import structlog

from histfill.stack import REPO_ROOT, Service, StackPaths
from shared.errors import StackError

log = structlog.get_logger(__name__)

PROMETHEUS_PORT = 9090
OPS_PROMETHEUS = REPO_ROOT / "ops" / "prometheus"
RETENTION = "7d"


def ensure_prometheus() -> tuple[str, str]:
    """The ``prometheus`` and ``promtool`` paths, installing Debian's package when missing.

    The package's own service is kept from starting (``RUNLEVEL=1``, as for redis-server):
    the stack starts the one it owns, with its own configuration.
    """
    found = shutil.which("prometheus"), shutil.which("promtool")
    if found[0] and found[1]:
        return found[0], found[1]
    if os.geteuid() != 0:
        raise StackError(
            "prometheus/promtool are missing: install Debian's package with "
            "`apt-get install prometheus` (it ships both)."
        )
    log.info("stack_installing_prometheus")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise StackError(f"`{' '.join(cmd)}` failed:\n{result.stderr[-2000:]}")
    found = shutil.which("prometheus"), shutil.which("promtool")
    if not (found[0] and found[1]):
        raise StackError("prometheus/promtool are still missing after apt-get install")
    return found[0], found[1]


def prometheus_ready(port: int = PROMETHEUS_PORT) -> bool:
    """Prometheus answers its readiness endpoint (rules and TSDB loaded)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def prometheus_argv(
    binary: str, config: Path, data: Path, port: int = PROMETHEUS_PORT
) -> list[str]:
    """The command line of a Prometheus on loopback (the stack's, or a test's own)."""
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]


def _command(paths: StackPaths) -> list[str]:
    data = paths.data / "prometheus"
    data.mkdir(parents=True, exist_ok=True)
    return prometheus_argv(ensure_prometheus()[0], OPS_PROMETHEUS / "prometheus.yml", data)


PROMETHEUS = Service("prometheus", PROMETHEUS_PORT, _command, prometheus_ready)
"""The stack's optional Prometheus (``histfill stack up --prometheus``)."""
