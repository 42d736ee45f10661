"""Settings: typed, frozen, read from the environment, errors that name the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.errors import ConfigError
from shared.settings import (
    CommonSettings,
    ConsumerSettings,
    ProducerSettings,
    all_env_vars,
    load_settings,
    parse_qdb_conf,
)


def test_defaults_are_the_local_stack() -> None:
    """With no environment the services point at the local stack's loopback ports."""
    s = load_settings(ConsumerSettings, {})
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.topic_backfill == "naia.datapoints.backfill"
    assert s.topic_backfill_partitions == 12
    assert s.qdb_http_url == "http://127.0.0.1:9000"
    assert s.qdb_table == "point_data"


def test_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit mapping the real environment is read, case-insensitively."""
    monkeypatch.setenv("TOPIC_BACKFILL", "plant7.backfill")
    monkeypatch.setenv("TOPIC_BACKFILL_PARTITIONS", "24")
    s = load_settings(ConsumerSettings)
    assert (s.topic_backfill, s.topic_backfill_partitions) == ("plant7.backfill", 24)


def test_explicit_mapping_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit mapping replaces os.environ, so tests cannot leak into each other."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "not a server")
    s = load_settings(ProducerSettings, {"API_PORT": "8080"})
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.api_port == 8080
    assert isinstance(s, ProducerSettings)


def test_settings_are_frozen() -> None:
    """A settings object cannot be changed after start."""
    s = load_settings(CommonSettings, {})
    with pytest.raises(ValidationError):
        s.qdb_table = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost"),
        ("TOPIC_DLQ", "bad topic!"),
        ("TOPIC_BACKFILL_PARTITIONS", "0"),
        ("QDB_CLIENT_CONF", "addr=localhost:9000"),
        ("QDB_CLIENT_CONF", "tcp::addr=localhost:9009;"),
        ("REDIS_URL", "http://localhost:6379"),
        ("API_PORT", "70000"),
        ("PI_WEB_API_URL", "ftp://pi"),
        ("LOG_LEVEL", "LOUD"),
        ("PI_VERIFY_TLS", "perhaps"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    """Each bad value stops start-up with an error naming the variable."""
    with pytest.raises(ConfigError, match=variable):
        load_settings(ProducerSettings, {variable: value})


def test_secret_values_are_never_echoed() -> None:
    """A bad secret is reported by name only; repr and str hide secrets."""
    with pytest.raises(ConfigError) as info:
        load_settings(ProducerSettings, {"REDIS_URL": "http://:hunter2@redis:6379"})
    assert "REDIS_URL" in str(info.value)
    assert "hunter2" not in str(info.value)
    s = load_settings(ProducerSettings, {"PI_PASSWORD": "hunter2", "ACE_API_KEY": "hunter3"})
    assert "hunter2" not in repr(s)
    assert "hunter3" not in repr(s)
    assert s.pi_password is not None
    assert s.pi_password.get_secret_value() == "hunter2"


def test_qdb_conf_parsing_handles_escaped_semicolons() -> None:
    """The QuestDB conf grammar's `;;` is a literal semicolon inside a value."""
    schema, params = parse_qdb_conf("https::addr=db:9000;username=admin;password=a;;b;")
    assert schema == "https"
    assert params == {"addr": "db:9000", "username": "admin", "password": "a;b"}


def test_qdb_http_url_follows_the_ilp_conf() -> None:
    """SQL goes to the same host as ILP over HTTP, with the same credentials."""
    s = load_settings(
        CommonSettings, {"QDB_CLIENT_CONF": "https::addr=db.example:9443;username=u;password=p;"}
    )
    assert s.qdb_http_url == "https://db.example:9443"
    assert s.qdb_http_auth == ("u", "p")


@pytest.mark.parametrize("conf", ["http::", "http::addr", "udp::addr=x:1;", "http::user=x;"])
def test_qdb_conf_rejects_malformed(conf: str) -> None:
    """A QuestDB conf without a schema or an addr is refused."""
    with pytest.raises(ValueError):  # noqa: PT011  # the message varies by the defect
        parse_qdb_conf(conf)


def test_all_env_vars_covers_every_service() -> None:
    """The variable inventory includes the seed's names and each service's own."""
    names = all_env_vars()
    assert {
        "ACE_API_KEY",
        "ACE_API_URL",
        "CONSUMER_GROUP_ID",
        "API_PORT",
        "QDB_CLIENT_CONF",
    } <= names
