"""Fixtures for the source unit tests: asyncio under anyio's pytest plugin, and instant sleeps."""

from __future__ import annotations

import pytest

from tests.unit.sources.sources_fakes import RecordingSleep


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio, the loop histfill uses."""
    return "asyncio"


@pytest.fixture
def sleep() -> RecordingSleep:
    """A sleep that never sleeps."""
    return RecordingSleep()
