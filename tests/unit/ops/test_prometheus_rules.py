"""The Prometheus configs and rules pass Prometheus's own checks, and each rule's unit tests.

``promtool`` comes with Debian's ``prometheus`` package (``make test`` installs it through
``histfill stack tools``). Without it these tests skip on a workstation, but fail where ``CI``
is set: a CI run must never pass without having checked the rules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
OPS = ROOT / "ops" / "prometheus"
RULES = OPS / "histfill.rules.yml"
RULE_TESTS = OPS / "tests" / "histfill.rules.test.yml"


def promtool() -> str:
    """promtool's path; skip without it, unless in CI (then fail)."""
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is missing: `apt-get install prometheus` (or `make ops-tools`)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must check the Prometheus rules")
        pytest.skip(message)
    return found


def run(*args: str, cwd: Path = OPS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_promtool_accepts_the_configs_and_their_rules(config: str) -> None:
    """`promtool check config` passes for the local stack's and compose's configs."""
    result = run("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules() -> None:
    """`promtool check rules` passes (PromQL parses, templates render)."""
    result = run("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_they_pass() -> None:
    """`promtool test rules` passes, and names every alert of the rules file."""
    import yaml  # noqa: PLC0415

    result = run("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert alerts == tested, f"alerts without a unit test: {sorted(alerts - tested)}"
    assert len(alerts) == 9


def test_the_rule_tests_fail_when_a_rule_is_wrong(tmp_path: Path) -> None:
    """The unit tests can fail: a real-time threshold of 600 s instead of 60 s breaks them."""
    broken = RULES.read_text().replace("histfill_realtime_lag_seconds) > 60", "...) > 600")
    broken = broken.replace("...) > 600", "histfill_realtime_lag_seconds) > 600")
    assert broken != RULES.read_text()
    (tmp_path / "histfill.rules.yml").write_text(broken)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    result = run("test", "rules", str(tmp_path / "tests" / RULE_TESTS.name), cwd=tmp_path)
    assert result.returncode != 0
    assert "HistfillRealtimeLagHigh" in result.stdout + result.stderr


def test_a_missing_promtool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """With CI set, a machine without promtool fails these tests instead of skipping them."""
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must check"):
        promtool()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        promtool()
