"""Checks over the whole test session."""

from __future__ import annotations

import gc
import subprocess

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a test left a child process running that nobody waits for.

    Python reports such a process only when its ``Popen`` is garbage-collected, which is often
    at interpreter exit after pytest has finished ("Exception ignored in Popen.__del__ ...
    ResourceWarning: subprocess N is still running"): outside any test, where
    ``filterwarnings = error`` cannot make it fail anything. So look for them here.
    """
    gc.collect()
    left = [
        obj for obj in gc.get_objects() if isinstance(obj, subprocess.Popen) and obj.poll() is None
    ]
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            "child processes left running by the tests (wait for, or kill, what a test starts): "
            + ", ".join(f"pid {p.pid} {p.args!r}" for p in left),
            red=True,
        )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
