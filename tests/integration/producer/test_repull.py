"""The trailing re-pull on the real stack: the PI simulator edits the past over HTTP, the re-pull
publishes exactly the differences, QuestDB upserts them, Redis keeps its newer latest value, and
the changes report (Kafka, its API route and ``histfill changes``) lists them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import redis
from confluent_kafka.admin import AdminClient
from fastapi import FastAPI
from typer.testing import CliRunner

from histfill.cli import app as cli_app
from producer.sources.connectors import Connectors
from producer.upkeep.changes import changes_topic_spec, report
from producer.upkeep.changes_api import add_changes_route
from producer.upkeep.repull import Repull, RunResult
from shared.codec import BatchCodec
from shared.kafka import ensure_topics, topic_specs
from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings, ProducerSettings, load_settings
from simulators.pi import PISimulator, PISimulatorOptions
from simulators.server import serve_in_thread
from simulators.webid import point_web_id
from tests.helpers import wait_for
from tests.integration.consumer.conftest import (  # noqa: F401  # fixtures used by name
    ConsumerProcess,
    duplicate_keys,
    infra,
    start_consumer,
)
from tests.integration.producer.conftest import LoopThread, read_committed

pytestmark = [pytest.mark.stack, pytest.mark.slow]

TAGS = [f"SIMTAG{i:05d}" for i in range(5)]
POINTS = [f"\\\\SIMPI\\{tag}" for tag in TAGS]
MINUTE_US = 60_000_000
HOUR_US = 3_600_000_000
AUTH = ("pi", "pw")


@dataclass
class Rig:
    """A PI simulator, the producer's settings for it, and a re-pull on a fixed clock."""

    sim: PISimulator
    url: str
    settings: ProducerSettings
    repull: Repull
    loop: LoopThread
    end_us: int

    def run(self) -> RunResult:
        result: RunResult = self.loop.run(self.repull.run_once(), timeout=120)
        return result

    def run_when_ready(self, timeout: float = 120) -> RunResult:
        """The next run that is not skipped (the previous one's values visible in QuestDB)."""
        found: list[RunResult] = []

        def ran() -> bool:
            found.append(self.run())
            return found[-1].skipped is None

        wait_for(ran, timeout=timeout, interval=0.3)
        return found[-1]

    def write(self, tag: str, values: list[dict[str, object]]) -> None:
        web_id = point_web_id("SIMPI", tag)
        response = httpx.post(
            f"{self.url}/piwebapi/streams/{web_id}/recorded?updateOption=Replace",
            json=values,
            auth=AUTH,
            timeout=10,
        )
        assert response.status_code == 204, response.text


@pytest.fixture
def rig(stack_env: dict[str, str], infra: ConsumerSettings) -> Iterator[Rig]:  # noqa: F811
    options = PISimulatorOptions(generated_tags=len(TAGS), username="pi", password="pw")  # noqa: S106  # the simulator's test credentials
    sim = PISimulator(options)
    with serve_in_thread(sim.app) as served:
        env = {
            **stack_env,
            "PI_WEB_API_URL": f"{served.url}/piwebapi",
            "PI_USERNAME": "pi",
            "PI_PASSWORD": "pw",
            "LIVE_CONNECTOR": "PIWebApi",
            "LIVE_POINTS": ",".join(POINTS),
            "REPULL_LAG_SECONDS": "0",
            "SOURCE_RATE_LIMIT_SCOPE": "process",
            "SOURCE_MAX_REQUESTS_PER_SECOND": "1000",
            "TOPIC_CHANGES": f"{stack_env['TOPIC_STATE']}.changes",
        }
        settings = load_settings(ProducerSettings, env)
        ensure_topics(
            AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers}),
            [*topic_specs(settings), changes_topic_spec(settings)],
        )
        # a fixed "now" a little in the past: every run reads the same window, all of it recorded
        now_s = (time.time() // 60) * 60 - 120
        loop = LoopThread()
        connectors = Connectors.from_settings(settings)
        repull = Repull(settings, connectors, BatchCodec(), clock=lambda: now_s)
        try:
            yield Rig(sim, served.url, settings, repull, loop, int(now_s * 1_000_000))
        finally:
            loop.run(repull.stop())
            loop.run(connectors.aclose())
            loop.close()


def _hours(stamps: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for ts in stamps:
        out[ts // HOUR_US * HOUR_US] = out.get(ts // HOUR_US * HOUR_US, 0) + 1
    return out


def _iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).isoformat().replace("+00:00", "Z")


def test_edits_and_late_values_are_repulled_once_and_reported(
    rig: Rig,
    start_consumer: Callable[..., ConsumerProcess],  # noqa: F811
    qdb: QuestDBSQL,
    redis_client: redis.Redis,
) -> None:
    """The first run fills the window; a run with nothing changed publishes nothing; after the
    PI server changes 10 past values and receives 500 back-dated ones, the next run publishes
    exactly those 510 values in one transaction, QuestDB holds the new values once each (the
    old ones replaced), Redis's latest value (newer) is untouched, and the report lists 10
    changed and 500 added in the right point-hours."""
    start_consumer()
    table = rig.settings.qdb_table
    first = rig.run()
    assert first.skipped is None
    assert not first.failed_points
    per_point = 120  # 2 h of 1-minute values, start included, end excluded
    assert (first.added, first.changed) == (len(POINTS) * per_point, 0)

    quiet = rig.run_when_ready()
    assert quiet.published == 0
    assert quiet.values_read == len(POINTS) * per_point
    messages_before = len(read_committed(rig.settings))

    latest_key = f"{rig.settings.redis_key_prefix}{POINTS[0]}"
    latest_before = redis_client.hgetall(latest_key)
    assert int(latest_before[b"ts"]) == rig.end_us - MINUTE_US  # the window's newest value

    start_us = rig.end_us - 2 * HOUR_US
    changed: dict[tuple[str, int], float] = {}
    added: dict[str, list[int]] = {}
    for i, tag in enumerate(TAGS):
        edits = [start_us + (10 + 50 * j + i) * MINUTE_US for j in range(2)]  # 10 in all
        changed.update({(POINTS[i], ts): 9000.0 + i * 10 + j for j, ts in enumerate(edits)})
        late = [start_us + k * MINUTE_US + 30_000_000 for k in range(5 + i, 105 + i)]  # 500
        added[POINTS[i]] = late
        rig.write(
            tag,
            [{"Timestamp": _iso(ts), "Value": changed[(POINTS[i], ts)]} for ts in edits]
            + [{"Timestamp": _iso(ts), "Value": 1.25, "Questionable": True} for ts in late],
        )
    before_edits = datetime.now(UTC)

    edited = rig.run_when_ready()
    assert (edited.added, edited.changed) == (500, 10)
    assert len(read_committed(rig.settings)) == messages_before + len(POINTS)  # one per point

    after = rig.run_when_ready()  # runs only once QuestDB shows the edits: nothing left to do
    assert after.published == 0
    assert qdb.scalar(f"SELECT count() FROM {table}") == len(POINTS) * per_point + 500
    assert duplicate_keys(qdb, table) == []
    for (point, ts), value in changed.items():
        got = qdb.rows(
            f"SELECT value FROM {table} WHERE source_address = '{point}' AND ts = '{_iso(ts)}'"
        )
        assert got == [[value]], (point, ts)
    late_rows = qdb.scalar(f"SELECT count() FROM {table} WHERE quality = 2 AND value = 1.25")
    assert late_rows == 500
    assert redis_client.hgetall(latest_key) == latest_before  # an older edit never wins

    data = report(rig.settings, before_edits, datetime.now(UTC))
    assert data["totals"] == {"added": 500, "changed": 10}
    assert data["runs"] == 1
    expected: dict[tuple[str, str], tuple[int, int]] = {}
    for point, stamps in added.items():
        for hour, n in _hours(stamps).items():
            expected[(point, _iso(hour))] = (n, 0)
    for (point, ts), _ in changed.items():
        key = (point, _iso(ts // HOUR_US * HOUR_US))
        a, c = expected.get(key, (0, 0))
        expected[key] = (a, c + 1)
    got_rows = {(r["point"], r["hour"]): (r["added"], r["changed"]) for r in data["rows"]}
    assert got_rows == expected

    # the same report through the API route and `histfill changes`, over real HTTP
    api = FastAPI()
    add_changes_route(api, rig.settings, rig.repull)
    with serve_in_thread(api) as served:
        since = before_edits.isoformat()
        answer = httpx.get(f"{served.url}/api/backfill/changes", params={"since": since})
        assert answer.status_code == 200
        assert answer.json()["data"]["totals"] == {"added": 500, "changed": 10}
        one = httpx.get(
            f"{served.url}/api/backfill/changes", params={"since": since, "point": POINTS[0]}
        ).json()["data"]
        assert one["totals"] == {"added": 100, "changed": 2}
        bad = httpx.get(f"{served.url}/api/backfill/changes", params={"since": "yesterday"})
        assert bad.status_code == 400
        assert bad.json()["error"]["field"] == "since"
        out = CliRunner().invoke(cli_app, ["changes", "--since", since, "--url", served.url])
        assert out.exit_code == 0, out.output
        assert "500 values added, 10 changed, 5 points, 1 runs" in out.output
        assert POINTS[0] in out.output
