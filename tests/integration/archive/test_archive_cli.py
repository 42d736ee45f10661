"""The operator's commands as processes: `histfill archive`, `histfill verify --archive`,
`histfill query`, with their exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from archive.fileformat import encode
from archive.keys import Month
from archive.service import Archive
from tests.integration.archive.conftest import Seed

pytestmark = pytest.mark.stack

JAN = Month(2024, 1)


def histfill(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # our own interpreter and module
        [sys.executable, "-m", "histfill", *args],
        env={**os.environ, **env, "LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_archive_verify_and_query_commands(
    archive: Archive, seed: Seed, archive_env: dict[str, str]
) -> None:
    """archive exits 0 with the summary; verify --archive 0, then 1 once an object is short;
    query prints the rows."""
    seed(["SINUSOID", "CDT158"], JAN.start, JAN.end)
    months = ("--start-month", "2024-01", "--end-month", "2024-01")
    done = histfill(archive_env, "archive", "--no-backfill", "--points", "SINUSOID,CDT158", *months)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Progress: 100.0% (2/2 point-months)" in done.stdout
    assert "Data points: 89,280" in done.stdout
    ok = histfill(archive_env, "verify", "--archive", "--points", "SINUSOID,CDT158", *months)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "archive verified" in ok.stdout

    found = archive.archiver.load("CDT158", JAN)
    assert found is not None
    short, _ = encode(found[0].slice(0, 100), "CDT158", JAN)
    archive.store.put(archive.archiver.key("CDT158", JAN), short)
    bad = histfill(archive_env, "verify", "--archive", "--points", "SINUSOID,CDT158", *months)
    assert bad.returncode == 1
    assert "2024-01 CDT158: MISMATCH" in bad.stdout

    rows = histfill(
        archive_env,
        "query",
        "--points",
        "SINUSOID",
        "--start",
        "2024-01-31T00:00:00Z",
        "--end",
        "2024-02-01",
        "--format",
        "csv",
    )
    assert rows.returncode == 0, rows.stderr
    lines = rows.stdout.splitlines()
    assert lines[0] == "pointId,ts,value,quality,text"
    assert len(lines) == 1 + 1440
    bad_query = histfill(archive_env, "query", "--points", "SINUSOID", "--start", "x", "--end", "y")
    assert bad_query.returncode == 2
    assert "--start" in bad_query.stdout + bad_query.stderr


def test_archive_exits_nonzero_naming_the_store_when_it_is_down(
    archive: Archive, archive_env: dict[str, str]
) -> None:
    """The store down: the run ends with errors, the summary names the location, exit 1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**archive_env, "ARCHIVE_S3_ENDPOINT": f"http://127.0.0.1:{port}"}
    env["ARCHIVE_STORE_RETRIES"] = "1"
    done = histfill(
        env,
        "archive",
        "--no-backfill",
        "--points",
        "SINUSOID",
        "--start-month",
        "2024-01",
        "--end-month",
        "2024-01",
    )
    assert done.returncode == 1
    assert "Errors encountered:" in done.stdout
    assert "failed after 2 attempts" in done.stdout
