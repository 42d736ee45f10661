"""The PI and ACE simulators on loopback (uvicorn on a background thread), and clients for them.

The servers live for the session; each test gets its faults reset and a fresh host rate budget,
and clients whose retry waits are recorded instead of slept unless a test wants real time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from producer.sources import (
    AceIotConfig,
    AceIotSource,
    HostRateLimits,
    PIWebApiConfig,
    PIWebApiSource,
)
from simulators.ace import AceSimulator, AceSimulatorOptions
from simulators.pi import PISimulator, PISimulatorOptions
from simulators.server import serve_in_thread
from tests.unit.sources.sources_fakes import FakeClock, RecordingSleep

GENERATED_TAGS = 120


@dataclass
class Served:
    """A simulator and the base URL it answers on."""

    sim: Any
    url: str


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio, the loop histfill uses."""
    return "asyncio"


@pytest.fixture(scope="session")
def pi_server() -> Iterator[Served]:
    """The PI simulator (default options plus generated tags) for the whole session."""
    sim = PISimulator(PISimulatorOptions(generated_tags=GENERATED_TAGS))
    with serve_in_thread(sim.app) as running:
        yield Served(sim, running.url)


@pytest.fixture(scope="session")
def ace_server() -> Iterator[Served]:
    """The ACE simulator with small pages, so a day already spans several."""
    sim = AceSimulator(AceSimulatorOptions(generated_tags=GENERATED_TAGS, page_size=700))
    with serve_in_thread(sim.app) as running:
        yield Served(sim, running.url)


@pytest.fixture
def pi(pi_server: Served) -> Iterator[Served]:
    """The PI simulator with no faults before and after the test."""
    pi_server.sim.faults.reset()
    yield pi_server
    pi_server.sim.faults.reset()


@pytest.fixture
def ace(ace_server: Served) -> Iterator[Served]:
    """The ACE simulator with no faults before and after the test."""
    ace_server.sim.faults.reset()
    yield ace_server
    ace_server.sim.faults.reset()


@pytest.fixture
def clock() -> FakeClock:
    """The clock of the clients' rate budget: it moves only when a recorded sleep "waits"."""
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock) -> RecordingSleep:
    """Retry and rate-budget waits are recorded (and advance ``clock``), not slept."""
    return RecordingSleep(clock)


@pytest.fixture
def pi_source(pi: Served, sleep: RecordingSleep, clock: FakeClock) -> Callable[..., PIWebApiSource]:
    """Make PI clients of the simulator (keyword arguments override the config); tests open
    them with ``async with``."""

    def make(
        *,
        base_url: str | None = None,
        real_sleep: bool = False,
        rate_limits: HostRateLimits | None = None,
        **overrides: Any,
    ) -> PIWebApiSource:
        settings: dict[str, Any] = {
            "base_url": f"{base_url or pi.url}/piwebapi",
            "username": "tester",
            "password": SecretStr("anything"),
            "default_server": "SIMPI",
        } | overrides
        limits = rate_limits or (HostRateLimits() if real_sleep else HostRateLimits(clock=clock))
        config = PIWebApiConfig(**settings)
        if real_sleep:
            return PIWebApiSource(config, rate_limits=limits)
        return PIWebApiSource(config, rate_limits=limits, sleep=sleep)

    return make


@pytest.fixture
def ace_source(ace: Served, sleep: RecordingSleep, clock: FakeClock) -> Callable[..., AceIotSource]:
    """Make ACE clients of the simulator (keyword arguments override the config)."""

    def make(*, base_url: str | None = None, **overrides: Any) -> AceIotSource:
        settings: dict[str, Any] = {
            "base_url": f"{base_url or ace.url}/api",
            "api_key": SecretStr("any-key"),
        } | overrides
        limits = HostRateLimits(clock=clock)
        return AceIotSource(AceIotConfig(**settings), rate_limits=limits, sleep=sleep)

    return make
