"""Small helpers shared by tests: waiting on a condition with a deadline, never on the clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from histfill.stack import wait_until


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    if not wait_until(condition, timeout, interval):
        pytest.fail(f"condition not met within {timeout}s: {condition}")
