"""Every metric the dashboard and the rules query is one the services export.

The exported names come from the services' own exposition, in process: the consumer's
registry, and the producer's ``/metrics`` served by its real app (with one request, so every
per-request family is there). The queried names come from the PromQL of every dashboard panel
and every rule, with a small tokenizer: promtool cannot read a dashboard, and a renamed metric
must break this test, not a graph in production.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumer.metrics import ConsumerMetrics
from producer.api.app import create_app
from producer.sources.connectors import Connectors
from producer.upkeep.repair import RepairScheduler
from producer.upkeep.repull import Repull
from producer.worker.orchestrator import Orchestrator
from shared.settings import ProducerSettings, load_settings
from tests.unit.producer.test_producer_outcomes import request

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((ROOT / "ops" / "grafana" / "dashboards").glob("*.json"))
RULES = ROOT / "ops" / "prometheus" / "histfill.rules.yml"
PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
"""Series Prometheus itself makes (scrape health, alert state)."""

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_KEYWORDS |= {"unless", "offset", "bool", "inf", "nan", "Inf", "NaN"}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ()}


def metric_names(expr: str) -> set[str]:
    """The series names one PromQL expression selects (functions, keywords, label names in
    ``by (...)``/``on (...)``, matchers, durations, strings and Grafana variables removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, quantiles' labels)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range durations
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables ($__rate_interval)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        following = text[match.end() :].lstrip()[:1]
        preceding = text[: match.start()].rstrip()[-1:]
        if following == "(" or word in _KEYWORDS or preceding.isdigit():
            continue  # a function, a keyword, or a number's exponent/unit
        names.add(word)
    return names


def _exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def dashboard_exprs() -> list[str]:
    return [e for path in DASHBOARDS for e in _exprs(json.loads(path.read_text()))]


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def exported(text: str) -> set[str]:
    """Sample names an exposition text offers (a counter's ``_total``, a histogram's
    ``_bucket``/``_sum``/``_count``), samples or not."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def services_export() -> set[str]:
    """What the consumer and the producer export, read from their own code."""
    consumer = generate_latest(ConsumerMetrics().registry).decode()
    settings = load_settings(ProducerSettings)
    orchestrator = Orchestrator(settings, Connectors.from_settings(settings))
    entry = orchestrator._entry(replace(request(), request_id="r1"))
    orchestrator.entries["r1"] = entry
    live = settings.model_copy(
        update={"live_connector": "Simulator", "live_points": "SINUSOID", "repull_enabled": True}
    )
    jobs = [
        RepairScheduler(live, orchestrator),
        Repull(live, orchestrator.connectors, orchestrator.codec),
    ]
    producer = TestClient(create_app(orchestrator, collectors=jobs)).get("/metrics").text
    return exported(consumer) | exported(producer)


def unknown(queried: set[str], known: set[str]) -> set[str]:
    recorded = {r["record"] for r in rules() if "record" in r}
    return queried - known - recorded - PROMETHEUS_OWN


def test_the_tokenizer_finds_series_names_only() -> None:
    """Functions, aggregation labels, matchers, durations and variables are not names."""
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(histfill_flush_seconds_bucket{job=~"a.*"}'
        "[$__rate_interval]))) > 1e3 and on (request_id) max by (request_id) "
        '(histfill_backfill_request_status{status="Running"}) unless up offset 5m'
    )
    assert metric_names(expr) == {
        "histfill_flush_seconds_bucket",
        "histfill_backfill_request_status",
        "up",
    }


def test_every_queried_metric_is_exported() -> None:
    """Each name in the dashboard's panels and the rules' expressions is exported by a service
    (or is a recording rule's, or Prometheus's own)."""
    assert DASHBOARDS, "no dashboard in ops/grafana/dashboards"
    exprs = dashboard_exprs() + [r["expr"] for r in rules()]
    queried = {name for e in exprs for name in metric_names(e)}
    assert len(queried) >= 20
    missing = unknown(queried, services_export())
    assert not missing, f"queried but exported by no service: {sorted(missing)}"


def test_a_renamed_metric_breaks_the_check() -> None:
    """Renaming an exported metric (here the lag in seconds) makes the check name it."""
    known = services_export()
    renamed = (known - {"histfill_consumer_lag_seconds"}) | {"histfill_consumer_lag_secs"}
    queried = {name for e in dashboard_exprs() for name in metric_names(e)}
    assert unknown(queried, renamed) == {"histfill_consumer_lag_seconds"}


def test_the_dashboard_shows_what_operators_watch() -> None:
    """Lag (seconds, messages), values/s in and out, progress and ETA per request, DLQ, flush
    latency, sink errors and RSS each have a panel."""
    queried = {name for e in dashboard_exprs() for name in metric_names(e)}
    assert {
        "histfill_consumer_lag_seconds",
        "histfill_consumer_lag_messages",
        "histfill_values_ingested_total",
        "histfill_backfill_values_published_total",
        "histfill_backfill_progress_ratio",
        "histfill_backfill_ingested_ratio",
        "histfill_backfill_eta_seconds",
        "histfill_dlq_messages_total",
        "histfill_flush_seconds_bucket",
        "histfill_sink_errors_total",
        "process_resident_memory_bytes",
    } <= queried
