"""The ACE IoT client against the ACE simulator over real sockets on loopback."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import SecretStr

from producer.sources import AceIotSource, AuthError, PointNotFound, TimeWindow
from producer.sources.collect import collect
from simulators.ace import AceSimulator, AceSimulatorOptions
from simulators.data import TagCatalog, TagKind, events
from simulators.server import serve_in_thread
from tests.integration.sources.conftest import GENERATED_TAGS, Served
from tests.unit.sources.sources_fakes import RecordingSleep

pytestmark = pytest.mark.anyio
START = datetime(2024, 1, 1, tzinfo=UTC)
CATALOG = TagCatalog(60, GENERATED_TAGS)
MakeAce = Callable[..., AceIotSource]


def name(tag: str) -> str:
    return f"sim/sim_site/{tag}"


async def test_every_sample_arrives_across_pages_with_numbers_and_text(
    ace: Served, ace_source: MakeAce
) -> None:
    """Two days in pages of 700: counts match; numbers are exact; states and strings are text."""
    span = TimeWindow(START, START + timedelta(days=2))
    tags = CATALOG.names()[:6]
    before = ace.sim.stats.get("requests", 0)
    async with ace_source() as source:
        got = await collect(source.read([name(t) for t in tags], span))
    for tag in tags:
        history = got[name(tag)]
        assert history.complete is not None, history.failure
        assert len(history) == CATALOG.expected_count(tag, span.start, span.end)
        spec = CATALOG.get(tag)
        assert spec is not None
        want = events(spec, span.start_us, span.end_us)
        assert np.array_equal(history.timestamps_us, want.timestamps_us)
        if spec.kind in (TagKind.FLOAT, TagKind.MULTI):
            assert np.array_equal(history.values, want.values)
        else:
            assert history.texts == want.texts
            assert np.isnan(history.values).all()
    assert ace.sim.stats["requests"] - before > 6 + 10  # point checks plus many pages


async def test_more_than_100_points_are_read_100_a_call(ace: Served, ace_source: MakeAce) -> None:
    """126 points take two ``get_timeseries`` calls and every point completes."""
    names = [name(t) for t in CATALOG.names()]
    span = TimeWindow(START, START + timedelta(minutes=5))
    async with ace_source(verify_points=False) as source:
        got = await collect(source.read(names, span))
        calls = source.http.requests
    assert len(names) == 126
    assert all(got[n].complete is not None for n in names)
    assert calls >= 2


async def test_an_unknown_point_fails_alone(ace_source: MakeAce) -> None:
    """A point ACE does not know fails with PointNotFound; the others complete."""
    span = TimeWindow(START, START + timedelta(hours=1))
    async with ace_source() as source:
        got = await collect(source.read([name("SINUSOID"), name("GHOST"), name("CDT158")], span))
    failure = got[name("GHOST")].failure
    assert failure is not None
    assert isinstance(failure.error, PointNotFound)
    assert len(got[name("SINUSOID")]) == len(got[name("CDT158")]) == 60


async def test_a_whole_site_is_read_to_the_end(ace_source: MakeAce) -> None:
    """The site's paginated timeseries yields every tag of the site, each complete."""
    span = TimeWindow(START, START + timedelta(hours=3))
    async with ace_source() as source:
        got = await collect(source.read_site("sim_site", span))
    assert set(got) == {name(t) for t in CATALOG.names()}
    for tag in CATALOG.names():
        history = got[name(tag)]
        assert history.complete is not None
        assert len(history) == CATALOG.expected_count(tag, span.start, span.end)


async def test_throttling_and_server_errors_are_retried(
    ace: Served, ace_source: MakeAce, sleep: RecordingSleep
) -> None:
    """A 429 with Retry-After and a 500 on the way are waited out; the read completes."""
    span = TimeWindow(START, START + timedelta(hours=1))
    async with ace_source() as source:
        ace.sim.faults.throttle_next = 1
        ace.sim.faults.fail_next = 1
        got = await collect(source.read([name("SINUSOID")], span))
    assert len(got[name("SINUSOID")]) == 60
    assert 1.0 in sleep.waits
    assert len(sleep.waits) == 2


async def test_a_wrong_api_key_is_a_clear_error(ace_source: MakeAce) -> None:
    """With a required key, a wrong one raises AuthError (401)."""
    sim = AceSimulator(AceSimulatorOptions(api_key="the-key"))
    span = TimeWindow(START, START + timedelta(hours=1))
    with serve_in_thread(sim.app) as server:
        async with ace_source(base_url=server.url, api_key=SecretStr("nope")) as source:
            with pytest.raises(AuthError, match="401"):
                await collect(source.read([name("SINUSOID")], span))
        async with ace_source(base_url=server.url, api_key=SecretStr("the-key")) as source:
            got = await collect(source.read([name("SINUSOID")], span))
    assert len(got[name("SINUSOID")]) == 60
