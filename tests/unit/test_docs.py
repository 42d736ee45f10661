"""The documentation and compose.yaml agree with the settings the services read."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from shared.settings import all_env_vars

ROOT = Path(__file__).resolve().parents[2]


def test_readme_documents_every_variable() -> None:
    """Every environment variable a service reads has a row in the README's table."""
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    missing = all_env_vars() - documented
    assert not missing, f"README lacks rows for {sorted(missing)}"
    unknown = documented - all_env_vars()
    assert not unknown, f"README documents variables no service reads: {sorted(unknown)}"


def _compose_variables(compose: dict[str, object]) -> dict[str, set[str]]:
    services = compose.get("services")
    assert isinstance(services, dict)
    found: dict[str, set[str]] = {}
    anchors = {**compose.get("x-histfill-env", {}), **compose.get("x-pi-env", {})}
    for name, service in services.items():
        env = service.get("environment", {}) if isinstance(service, dict) else {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        found[name] = set(env)
    found["x-histfill-env"] = set(anchors)
    return found


def test_compose_names_only_known_variables() -> None:
    """compose.yaml configures our services only with variables the settings know."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    ours = {"producer", "consumer", "init", "job", "x-histfill-env"}
    per_service = _compose_variables(compose)
    assert ours - {"x-histfill-env"} <= set(per_service), "compose lacks a histfill service"
    for name in ours:
        unknown = per_service[name] - all_env_vars()
        assert not unknown, f"compose service {name} sets unknown variables {sorted(unknown)}"
    assert "KAFKA_BOOTSTRAP_SERVERS" in per_service["x-histfill-env"]
