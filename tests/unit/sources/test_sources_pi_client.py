"""The PI Web API client's requests and error handling, against an in-memory transport."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from producer.sources import (
    AuthError,
    BadRequest,
    HostRateLimits,
    PIWebApiConfig,
    PIWebApiSource,
    ServerError,
    TimeWindow,
    TransportFailure,
)
from producer.sources.collect import collect
from shared.errors import ConfigError
from tests.unit.sources.sources_fakes import RecordingSleep

pytestmark = pytest.mark.anyio
START = datetime(2024, 1, 1, tzinfo=UTC)
WINDOW = TimeWindow(START, START + timedelta(hours=1))
Handler = Callable[[httpx.Request], httpx.Response]


def point(tag: str) -> dict[str, Any]:
    return {"WebId": f"W-{tag}", "Name": tag, "Path": f"\\\\S\\{tag}", "EngineeringUnits": "degC"}


def recorded(n: int = 2) -> list[dict[str, Any]]:
    return [
        {
            "Timestamp": f"2024-01-01T00:0{i}:00Z",
            "Value": float(i),
            "Good": True,
            "Questionable": False,
            "Substituted": False,
            "Annotated": False,
        }
        for i in range(n)
    ]


class FakePI:
    """Answers points and recorded-values requests; ``override`` can replace any answer."""

    def __init__(self, override: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.override = override

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.override is not None:
            answer = self.override(request)
            if answer is not None:
                return answer
        path, q = request.url.path, request.url.params
        if path.endswith("/points"):
            return httpx.Response(200, json=point(q["path"].rsplit("\\", 1)[-1]))
        if path.endswith("/points/multiple"):
            items = [
                {"Identifier": p, "Object": point(p.rsplit("\\", 1)[-1]), "Exception": None}
                for p in q.get_list("path")
            ]
            return httpx.Response(200, json={"Items": items})
        if path.endswith("/streamsets/recorded"):
            streams = [{"WebId": w, "Items": recorded()} for w in q.get_list("webId")]
            return httpx.Response(200, json={"Items": streams})
        if "/streams/" in path:
            return httpx.Response(200, json={"Items": recorded()})
        return httpx.Response(404, json={"Errors": ["no route"]})


def make(fake: FakePI, sleep: RecordingSleep | None = None, **overrides: Any) -> PIWebApiSource:
    settings: dict[str, Any] = {
        "base_url": "https://pi.test/piwebapi",
        "username": "reader",
        "password": SecretStr("s3cret"),
        "default_server": "S",
    } | overrides
    return PIWebApiSource(
        PIWebApiConfig(**settings),
        transport=httpx.MockTransport(fake),
        rate_limits=HostRateLimits(),
        sleep=sleep or RecordingSleep(),
    )


async def test_recorded_requests_ask_inside_boundary_selected_fields_and_a_budgeted_max() -> None:
    """A stream-set read repeats ``webId``, asks ``Inside`` and splits the value budget."""
    fake = FakePI()
    source = make(fake, max_values_per_request=1000)
    got = await collect(source.read(["A", "B", "C", "D"], WINDOW))
    assert all(h.complete is not None and len(h) == 2 for h in got.values())
    data = [r for r in fake.requests if r.url.path.endswith("/streamsets/recorded")]
    assert len(data) == 1
    q = data[0].url.params
    assert q.get_list("webId") == ["W-A", "W-B", "W-C", "W-D"]
    assert (q["boundaryType"], q["maxCount"]) == ("Inside", "250")
    assert (q["startTime"], q["endTime"]) == ("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z")
    assert "Items.Items.Timestamp" in q["selectedFields"]


async def test_one_point_reads_its_stream_and_keeps_its_units() -> None:
    """A single point uses ``streams/{webId}/recorded``; its batches carry the point's units."""
    fake = FakePI()
    got = await collect(make(fake).read(["\\\\other\\X"], WINDOW))
    paths = [r.url.path for r in fake.requests]
    assert paths == ["/piwebapi/points", "/piwebapi/streams/W-X/recorded"]
    assert got["\\\\other\\X"].batches[0].unit == "degC"


async def test_basic_and_bearer_credentials_are_sent_and_never_shown() -> None:
    """Basic or Bearer goes in the ``Authorization`` header; reprs mask the secrets."""
    basic, bearer = FakePI(), FakePI()
    await collect(make(basic).read(["A"], WINDOW))
    config = {"username": None, "password": None, "bearer_token": SecretStr("tok-123")}
    await collect(make(bearer, **config).read(["A"], WINDOW))
    assert basic.requests[0].headers["Authorization"].startswith("Basic ")
    assert bearer.requests[0].headers["Authorization"] == "Bearer tok-123"
    shown = repr(PIWebApiConfig("https://x/piwebapi", bearer_token=SecretStr("tok-123")))
    assert "tok-123" not in shown


async def test_refused_credentials_raise_a_clear_error() -> None:
    """A 401 is not retried and not a per-point failure: the read raises ``AuthError``."""
    sleep = RecordingSleep()
    fake = FakePI(lambda r: httpx.Response(401, json={"Errors": ["Authorization denied."]}))
    with pytest.raises(AuthError, match=r"credentials refused.*Authorization denied.*status=401"):
        await collect(make(fake, sleep).read(["A", "B"], WINDOW))
    assert (len(fake.requests), sleep.waits) == (1, [])


async def test_other_4xx_fail_the_points_once_naming_point_and_window() -> None:
    """A 400 on recorded values fails each point of the request, unretried, naming both."""

    def refuse(request: httpx.Request) -> httpx.Response | None:
        if "recorded" in request.url.path:
            return httpx.Response(400, json={"Errors": ["maxCount too large"]})
        return None

    fake = FakePI(refuse)
    got = await collect(make(fake).read(["A", "B"], WINDOW))
    for tag in ("A", "B"):
        failure = got[tag].failure
        assert failure is not None
        assert isinstance(failure.error, BadRequest)
        assert f"points=[{tag}]" in str(failure.error)
        assert "2024-01-01T00:00:00+00:00" in str(failure.error)
        assert "maxCount too large" in str(failure.error)
    assert sum("recorded" in r.url.path for r in fake.requests) == 1


async def test_web_exception_inside_a_200_is_retried_like_a_500() -> None:
    """A ``WebException`` in a 200 answer is retried; the second answer is read."""
    broken = {"Items": [], "WebException": {"StatusCode": 500, "Errors": ["stream broke"]}}
    state = {"left": 1}

    def once_broken(request: httpx.Request) -> httpx.Response | None:
        if "recorded" in request.url.path and state["left"]:
            state["left"] -= 1
            return httpx.Response(200, content=json.dumps(broken).encode())
        return None

    sleep = RecordingSleep()
    got = await collect(make(FakePI(once_broken), sleep).read(["A"], WINDOW))
    assert got["A"].complete is not None
    assert len(got["A"]) == 2
    assert len(sleep.waits) == 1


async def test_persistent_server_errors_fail_after_five_attempts() -> None:
    """Five 500s in a row: the point fails with a retriable ServerError."""
    fake = FakePI(lambda r: httpx.Response(500) if "recorded" in r.url.path else None)
    sleep = RecordingSleep()
    got = await collect(make(fake, sleep).read(["A"], WINDOW))
    failure = got["A"].failure
    assert failure is not None
    assert isinstance(failure.error, ServerError)
    assert failure.retriable
    assert sum("recorded" in r.url.path for r in fake.requests) == 5
    assert len(sleep.waits) == 4


async def test_connection_failures_are_retried_then_reported() -> None:
    """A refused connection is a retriable TransportFailure."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    got = await collect(make(FakePI(refuse)).read(["A"], WINDOW))
    failure = got["A"].failure
    assert failure is not None
    assert isinstance(failure.error, TransportFailure)


async def test_bare_tags_need_a_default_server() -> None:
    """Without ``default_server`` a bare tag fails alone; a full path still reads."""
    got = await collect(make(FakePI(), default_server=None).read(["A", "\\\\S\\B"], WINDOW))
    failure = got["A"].failure
    assert failure is not None
    assert isinstance(failure.error, BadRequest)
    assert got["\\\\S\\B"].complete is not None


async def test_web_ids_are_resolved_once_per_client() -> None:
    """A second read of the same points does not resolve them again."""
    fake = FakePI()
    source = make(fake)
    await collect(source.read(["A", "B"], WINDOW))
    await collect(source.read(["A", "B"], WINDOW))
    assert sum(r.url.path.endswith("/points/multiple") for r in fake.requests) == 1


@pytest.mark.parametrize(
    "settings",
    [
        {"base_url": "pi.test"},
        {"base_url": "https://pi", "username": "u", "bearer_token": SecretStr("t")},
        {"base_url": "https://pi", "points_per_request": 0},
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, Any]) -> None:
    """A URL without scheme, two kinds of credentials, or zero points a request are refused."""
    with pytest.raises(ConfigError):
        PIWebApiConfig(**settings)


def test_kerberos_without_its_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kerberos is refused with a clear message when httpx-gssapi cannot be imported."""
    monkeypatch.setitem(sys.modules, "httpx_gssapi", None)
    with pytest.raises(ConfigError, match="httpx-gssapi"):
        PIWebApiSource(PIWebApiConfig("https://pi/piwebapi", kerberos=True))
