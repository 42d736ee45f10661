"""The stack manager's pure parts and its refusal messages."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from histfill import stack
from shared.errors import StackError


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "25" 2025-09-16', 25),
        ('java version "1.8.0_402"', 8),
        ('openjdk version "21-ea" 2023-09-19', 21),
        ("no version here", None),
    ],
)
def test_java_major(output: str, major: int | None) -> None:
    """`java -version` output of several vendors and eras parses to its major version."""
    assert stack._java_major(output) == major


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without java on PATH, `stack up` says what to install instead of crashing."""
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(StackError, match=r"`java` was not found.*Java 17"):
        stack.check_java()


def test_missing_maven_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """With java but no mvn, the message names Maven and why it is needed."""
    real_which = stack.shutil.which
    monkeypatch.setattr(
        stack.shutil, "which", lambda tool: None if tool == "mvn" else real_which(tool)
    )
    with pytest.raises(StackError, match=r"`mvn` was not found.*Maven Central"):
        stack.check_java()


def test_kafka_heap_and_questdb_heap_are_bounded() -> None:
    """The JVMs are started with the heap caps the machine budget allows."""
    paths = stack.StackPaths()
    kafka = stack._kafka_command(paths)
    assert "-Xmx512m" in kafka
    assert "kafka.Kafka" in kafka


def test_stop_never_signals_a_process_that_reused_a_stale_pid(tmp_path: Path) -> None:
    """A pid file whose process is gone and whose pid now names another process (here: a
    `sleep` started later) is removed; that process is left alone. The right one is stopped."""
    paths = stack.StackPaths(root=tmp_path)
    paths.run.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        started = psutil.Process(other.pid).create_time()
        paths.pid_file("kafka").write_text(f"{other.pid} {started - 3600:.3f}\n")
        assert stack.stop_service("kafka", paths) is False
        assert other.poll() is None
        assert not paths.pid_file("kafka").exists()
        stack._write_pid(paths, "kafka", other.pid)
        assert stack.stop_service("kafka", paths, timeout=10) is True
        assert other.wait(10) == -signal.SIGTERM
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


_STARTER = """
import itertools, sys
from pathlib import Path
from histfill import stack
paths = stack.StackPaths(root=Path(sys.argv[1]))
for folder in (paths.run, paths.logs):
    folder.mkdir(parents=True, exist_ok=True)
asked = itertools.count()
sleeper = stack.Service("sleeper", int(sys.argv[2]), lambda _p: ["sleep", "60"],
                        lambda: next(asked) > 0)  # not running at first, then ready
print(stack.start_service(sleeper, paths, timeout=10))
"""


def test_a_started_service_outlives_its_starter_without_a_resource_warning(
    tmp_path: Path,
) -> None:
    """An interpreter that starts a service and exits (`histfill stack up`, or a test session
    that restarted QuestDB) leaves it running without Python's "subprocess N is still running"
    ResourceWarning at exit; the service is still stopped by its pid file."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # a port nothing listens on once closed
    done = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", _STARTER, str(tmp_path), str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    paths = stack.StackPaths(root=tmp_path)
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "started"
        assert "ResourceWarning" not in done.stderr
        assert "still running" not in done.stderr
        pid = int(paths.pid_file("sleeper").read_text().split()[0])
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    finally:
        stopped = stack.stop_service("sleeper", paths, timeout=10)
    assert stopped is True
