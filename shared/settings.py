"""Typed, frozen settings, read from environment variables once, in each service's ``main()``.

Nothing else in histfill reads ``os.environ``. Every field's environment variable is its name in
upper case (``kafka_bootstrap_servers`` <- ``KAFKA_BOOTSTRAP_SERVERS``); its description is the
documentation, rendered into the README's table by :func:`env_table` and checked by a test.
A bad value stops the service at start with a :class:`~shared.errors.ConfigError` that names the
variable; secrets are :class:`~pydantic.SecretStr` and are never echoed, not even in that error.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared.errors import ConfigError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
Port = Annotated[int, Field(ge=1, le=65535)]
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")


def parse_qdb_conf(conf: str) -> tuple[str, dict[str, str]]:
    """Split a QuestDB client configuration string (``http::addr=h:9000;k=v;``) into parts.

    The grammar is the client's own: ``schema::key=value;`` pairs, where ``;;`` is a literal
    semicolon inside a value.
    """
    schema, sep, rest = conf.partition("::")
    if not sep or schema not in {"http", "https", "tcp", "tcps"}:
        raise ValueError("must start with http::, https::, tcp:: or tcps::")
    params: dict[str, str] = {}
    key, value, in_value, i = "", "", False, 0
    while i < len(rest):
        ch = rest[i]
        if not in_value:
            if ch == "=":
                in_value = True
            else:
                key += ch
        elif ch == ";":
            if rest[i + 1 : i + 2] == ";":
                value += ";"
                i += 1
            else:
                params[key.strip()] = value
                key, value, in_value = "", "", False
        else:
            value += ch
        i += 1
    if in_value:
        params[key.strip()] = value
    elif key.strip():
        raise ValueError(f"key {key.strip()!r} has no value")
    if "addr" not in params:
        raise ValueError("needs addr=host:port")
    return schema, params


class CommonSettings(BaseSettings):
    """What every histfill service reads: Kafka, topics, QuestDB, Redis, logging."""

    model_config = SettingsConfigDict(frozen=True, case_sensitive=False, extra="ignore")

    log_level: LogLevel = Field("INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="`json`, `console`, or `auto` (JSON unless stderr is a terminal)."
    )

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated `host:port`."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka `security.protocol`."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="Kafka SASL mechanism, when the protocol is SASL_*."
    )
    kafka_sasl_username: str | None = Field(None, description="Kafka SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="Kafka SASL password (secret).")

    topic_realtime: str = Field("naia.datapoints", description="Real-time data topic.")
    topic_backfill: str = Field("naia.datapoints.backfill", description="Backfill data topic.")
    consumer_group_id: str = Field(
        "histfill-ingest",
        description="Kafka consumer group id of the consumers; the producer reads its committed "
        "offsets to tell how much of a request is in QuestDB.",
    )
    topic_dlq: str = Field(
        "naia.datapoints.dlq", description="Dead-letter topic for poison messages."
    )
    topic_state: str = Field(
        "naia.backfill.state",
        description="Compacted topic holding backfill request state and chunk checkpoints.",
    )
    topic_realtime_partitions: int = Field(
        3, ge=1, description="Partitions of the real-time topic."
    )
    topic_backfill_partitions: int = Field(
        12, ge=1, description="Partitions of the backfill topic."
    )
    topic_dlq_partitions: int = Field(1, ge=1, description="Partitions of the dead-letter topic.")
    topic_state_partitions: int = Field(1, ge=1, description="Partitions of the state topic.")
    topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor for topics histfill creates."
    )
    schema_registry_url: str | None = Field(
        None,
        description="Confluent Schema Registry URL; unset = Avro single-object encoding, "
        "schemas resolved from `schemas/` by fingerprint.",
    )

    qdb_client_conf: SecretStr = Field(
        SecretStr("http::addr=127.0.0.1:9000;"),
        description="QuestDB client configuration string (ILP over HTTP), "
        "e.g. `http::addr=questdb:9000;username=..;password=..;` (secret).",
    )
    qdb_table: str = Field(
        "point_data",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,126}$",
        description="QuestDB table the values land in.",
    )
    qdb_request_id_column: bool = Field(
        False,
        description="Create the point table with a `request_id` symbol column naming the "
        "backfill request that wrote each row (the state topic records that too). It costs "
        "7-28 % of QuestDB's ingest rate (measured). An existing table keeps its columns: the "
        "consumer writes `request_id` exactly when the table has it (true adds it to one without).",
    )

    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis URL for the latest-value cache (secret: may hold a password).",
    )
    redis_key_prefix: str = Field(
        "histfill:latest:",
        description="Prefix of the latest-value keys (`<prefix><source_address>`).",
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers or not all(_HOST_PORT.match(s) for s in servers):
            raise ValueError("expected comma-separated host:port entries")
        return ",".join(servers)

    @field_validator("topic_realtime", "topic_backfill", "topic_dlq", "topic_state")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        if not _TOPIC.match(value) or value in {".", ".."}:
            raise ValueError("a Kafka topic name is 1-249 characters of [A-Za-z0-9._-]")
        return value

    @field_validator("qdb_client_conf")
    @classmethod
    def _check_qdb_conf(cls, value: SecretStr) -> SecretStr:
        schema, _ = parse_qdb_conf(value.get_secret_value())
        if schema not in {"http", "https"}:
            # Over TCP a flush returns once bytes are on the socket and QuestDB drops bad rows
            # by disconnecting: offsets would be committed for rows it never took.
            raise ValueError(
                "ILP over HTTP is required (http:: or https::): only it confirms writes"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {"redis", "rediss", "unix"} or not (parts.hostname or parts.path):
            raise ValueError("expected redis://[:password@]host:port/db (or rediss://, unix://)")
        return value

    @field_validator("schema_registry_url")
    @classmethod
    def _check_registry(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("expected an http(s):// URL")
        return value or None

    @property
    def qdb_http_url(self) -> str:
        """The QuestDB HTTP endpoint for SQL (DDL, checks), from the ILP configuration."""
        schema, params = parse_qdb_conf(self.qdb_client_conf.get_secret_value())
        return f"{schema}://{params['addr']}"

    @property
    def qdb_http_auth(self) -> tuple[str, str] | None:
        """Basic-auth credentials for SQL over HTTP, when the ILP configuration carries them."""
        _, params = parse_qdb_conf(self.qdb_client_conf.get_secret_value())
        if "username" in params and "password" in params:
            return params["username"], params["password"]
        return None


class ConsumerSettings(CommonSettings):
    """The consumer service: Kafka -> QuestDB + Redis."""

    consumer_instance_id: str | None = Field(
        None,
        description="Kafka `group.instance.id` (static membership): a consumer restarted with "
        "the same id within CONSUMER_SESSION_TIMEOUT_MS gets its partitions back at once. "
        "Unset: `<host name>-<n>`, n the lowest slot no other consumer of the group holds on "
        "this host (a lock file), so consumers on one host differ and a restart reuses its id.",
    )
    consumer_session_timeout_ms: int = Field(
        45_000,
        ge=6_000,
        le=300_000,
        description="Kafka `session.timeout.ms`: a consumer silent this long loses its "
        "partitions to the others; one that crashed and restarts within it gets them back at "
        "once (static membership). With CONSUMER_LEAVE_GROUP_ON_STOP=false a consumer stopped "
        "for good holds them this long too. 6000 to 300000 (the broker's "
        "group.min/max.session.timeout.ms bound it too).",
    )
    consumer_leave_group_on_stop: bool = Field(
        True,
        description="On SIGTERM/SIGINT, after the last commit, leave the group so the other "
        "consumers take this one's partitions at once (scale-in, a replacement with a new "
        "id). false: keep them for a restart with the same CONSUMER_INSTANCE_ID within the "
        "session timeout, without a rebalance. A crash never leaves.",
    )
    metrics_port: int = Field(
        9108,
        ge=0,
        le=65535,
        description="Port of the consumer's /metrics, /health, /ready (0: off).",
    )
    flush_rows: int = Field(
        400_000,
        ge=1,
        description="Flush to QuestDB once this many values are buffered (bigger flushes: "
        "fewer out-of-order merges in QuestDB, more consumer memory).",
    )
    qdb_request_rows: int = Field(
        125_000,
        ge=1,
        description="With QDB_TRANSACTION_PER_FLUSH=false: most rows per ILP/HTTP request "
        "(one QuestDB transaction); a flush is written sorted by time in requests of this size.",
    )
    qdb_request_bytes: int = Field(
        12 * 1024 * 1024,
        ge=64 * 1024,
        description="Approximate ILP bytes per request: fewer rows than QDB_REQUEST_ROWS go "
        "in one when rows are long (long point names or request ids). Bounds the buffer.",
    )
    qdb_connections: int = Field(
        1,
        ge=1,
        le=16,
        description="With QDB_TRANSACTION_PER_FLUSH=false: ILP/HTTP connections a consumer "
        "writes a flush over at once (its "
        "requests, each its own transaction, sent concurrently; the flush done when all are "
        "accepted). QuestDB parses each connection on its own thread: 1 waits for each answer "
        "before sending the next. Each connection holds a request buffer (QDB_REQUEST_BYTES). "
        "On a 2-core host shared with Kafka no faster end to end (measured); for a QuestDB "
        "with cores to spare.",
    )
    qdb_transaction_per_flush: bool = Field(
        True,
        description="Write each flush as one QuestDB transaction: one ILP/HTTP request whose "
        "body is streamed in chunks of 50,000 rows (fewer when rows are long: "
        "QDB_REQUEST_BYTES), so QuestDB pays its cost per transaction once per flush while "
        "the consumer holds one chunk. false: a flush goes out as time-ordered requests of "
        "QDB_REQUEST_ROWS rows, each its own transaction, over QDB_CONNECTIONS connections.",
    )
    flush_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Flush once the buffered Kafka messages reach this many bytes.",
    )
    flush_interval_ms: int = Field(
        500, ge=1, description="Flush at least this often (ms) while data is buffered."
    )
    poll_batch: int = Field(
        10,
        ge=1,
        le=100_000,
        description="Messages taken from Kafka per consume() call (each holds up to a page "
        "of values: this bounds memory).",
    )
    realtime_lag_pause_threshold: int = Field(
        1_000,
        ge=0,
        description="Pause the backfill partitions while the group's real-time lag "
        "(messages) exceeds this; resume below half of it. 0: never pause.",
    )
    backfill_max_values_per_second: float = Field(
        0.0, ge=0, description="Cap on backfill values ingested per second (0: no cap)."
    )
    backfill_align_window_s: float = Field(
        86_400.0,
        ge=0,
        description="Time-aligned backfill: a backfill partition whose newest value read is "
        "more than this many seconds ahead of the slowest partition's is paused until the "
        "slowest catches up, so each flush covers a narrow time range (fewer out-of-order "
        "merges in QuestDB). Idle and drained partitions never hold the others back; the "
        "real-time topic is never paused by it. 0: off.",
    )
    backfill_hold_max_s: float = Field(
        10.0,
        ge=0,
        description="With time alignment on: a flush writes the backfill batches older than "
        "every partition still being read and holds the rest for a later flush, so QuestDB "
        "takes history in time order instead of merging it into days it already wrote. A "
        "batch is held at most this long (s); past 3 x FLUSH_ROWS values held, the oldest "
        "go; real-time values are never held. 0: off (each flush writes all it has).",
    )
    sink_retry_max_backoff_s: float = Field(
        30.0, gt=0, description="Longest wait between retries while QuestDB or Redis is down."
    )
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="On SIGTERM/SIGINT: time allowed to flush and commit before exit."
    )
    ready_max_sink_stuck_seconds: float = Field(
        60.0,
        ge=0,
        description="/ready answers 503 once a sink (questdb, redis, dlq) has failed for this "
        "long without a success; /health stays 200 while the loop runs and names the sink.",
    )

    @field_validator("consumer_instance_id")
    @classmethod
    def _check_instance_id(cls, value: str | None) -> str | None:
        if value is not None and (not _TOPIC.match(value) or value in {".", ".."}):
            raise ValueError("must be 1-249 characters of letters, digits, '.', '_' or '-'")
        return value


class ProducerSettings(CommonSettings):
    """The producer service: historians -> Kafka, with the HTTP API."""

    api_host: str = Field("0.0.0.0", description="Address the backfill HTTP API binds to.")  # noqa: S104  # a service in a container listens on all interfaces
    api_port: Port = Field(5052, description="Port of the backfill HTTP API (the seed's 5052).")
    api_token: SecretStr | None = Field(
        None, description="Bearer token required by the mutating API endpoints, if set (secret)."
    )

    pi_web_api_url: str | None = Field(
        None, description="PI Web API base URL, e.g. `https://pi.example/piwebapi`."
    )
    pi_username: str | None = Field(None, description="PI Web API Basic-auth user.")
    pi_password: SecretStr | None = Field(
        None, description="PI Web API Basic-auth password (secret)."
    )
    pi_bearer_token: SecretStr | None = Field(None, description="PI Web API bearer token (secret).")
    pi_verify_tls: bool = Field(True, description="Verify the PI Web API's TLS certificate.")
    pi_ca_bundle: str | None = Field(None, description="CA bundle file for the PI Web API's TLS.")
    pi_max_count: int = Field(
        150_000, ge=1, le=10_000_000, description="`maxCount` per PI recorded-values request."
    )
    points_per_request: int = Field(
        10, ge=1, le=1000, description="Points per PI streamset request (the seed's 10)."
    )

    ace_api_url: str | None = Field(
        None, description="ACE IoT API base URL (the seed's `ACE_API_URL`)."
    )
    ace_api_key: SecretStr | None = Field(
        None, description="ACE IoT API bearer key (the seed's `ACE_API_KEY`; secret)."
    )

    source_max_requests_per_second: float = Field(
        20.0,
        gt=0,
        description="Request-rate budget per historian host, shared by all workers (of every "
        "producer process with SOURCE_RATE_LIMIT_SCOPE=fleet).",
    )
    source_rate_limit_scope: Literal["fleet", "process"] = Field(
        "fleet",
        description="Where the per-host budget lives: `fleet` (Redis at REDIS_URL: every producer "
        "process shares it, a 429 pauses them all; the local budget if Redis is unreachable) or "
        "`process` (each process alone).",
    )
    source_rate_limit_key_prefix: str = Field(
        "histfill:ratelimit:",
        description="Prefix of the fleet's rate-budget keys in Redis (`<prefix><host>:tat`, "
        "`<prefix><host>:pause`).",
    )

    backfill_workers: int = Field(
        4, ge=1, le=64, description="Backfill workers: chunks read and published concurrently."
    )
    default_chunk_size: str = Field(
        "30.00:00:00",
        description="Chunk length when a request gives none: TimeSpan, ISO-8601 (`P30D`) or `30d`.",
    )
    max_points_per_request: int = Field(
        10_000, ge=1, description="Most points one backfill request may name."
    )
    max_point_name_length: int = Field(
        2048,
        ge=16,
        description="Most characters in one point address: room for a `\\\\server\\` prefix "
        "and PI's 1023-character tag names, and for ACE IoT's long path-like names.",
    )
    max_window_days: int = Field(
        36_500,
        ge=1,
        description="Longest window one request may span (days; default 100 years: any start "
        "from 1970 to now fits).",
    )
    max_chunks_per_request: int = Field(
        1_000_000,
        ge=1,
        description="Most chunks (windows x point groups) one request may plan: each is a "
        "checkpoint record and an entry in the request's progress.",
    )
    api_max_body_bytes: int | None = Field(
        None,
        ge=1024,
        description="Largest request body the API reads (bytes; larger: 413 before parsing). "
        "Unset: MAX_POINTS_PER_REQUEST x (MAX_POINT_NAME_LENGTH + 16) + 64 KiB.",
    )
    max_values_per_chunk: int = Field(
        100_000,
        ge=0,
        description="A chunk expected to hold more values is split into shorter windows "
        "(0: never split). Shorter windows reach QuestDB in time order: every flush of the "
        "consumer then covers days, not a month, of all points (100 points x 30-day chunks: "
        "6-day windows).",
    )
    expected_sample_interval_seconds: float = Field(
        60.0,
        gt=0,
        description="Assumed seconds between a point's values, for planning and estimates.",
    )
    publish_max_values_per_second: float = Field(
        0.0,
        ge=0,
        description="Cap on backfill values published per second, all workers (0: none). "
        "With a cap, chunks are planned to publish within half the 10-minute transaction "
        "timeout at their worker's share of it.",
    )
    max_batches_in_flight: int = Field(
        1000, ge=8, description="Cap on backfill messages produced but not yet acknowledged."
    )
    chunk_retries: int = Field(
        3,
        ge=0,
        le=100,
        description="Retries of a failing chunk or point before it is recorded failed.",
    )
    retry_backoff_seconds: float = Field(
        1.0, ge=0, description="First wait before a chunk retry; doubles with each retry."
    )
    producer_fleet: bool = Field(
        False,
        description="Run as one member of a producer fleet: chunk tasks go through TOPIC_TASKS "
        "and any number of producer processes share them (false: one process does all).",
    )
    producer_instance_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="This fleet member's stable name (its transactional ids derive from it); "
        "unset: the host name.",
    )
    producer_group_id: str = Field(
        "histfill-producer", description="Kafka consumer group of the fleet's task workers."
    )
    topic_tasks: str = Field(
        "naia.backfill.tasks", description="Topic of the fleet's chunk tasks (fleet mode)."
    )
    test_commit_delay_seconds: float = Field(
        0.0,
        ge=0,
        description="Tests only: a fleet worker waits this long between producing a "
        "transaction's records and committing it (a window to kill it mid-commit). 0: never.",
    )
    topic_tasks_partitions: int = Field(
        12,
        ge=1,
        description="Partitions of the tasks topic: the most task workers the fleet can use.",
    )
    live_connector: Literal["PIWebApi", "AceIot", "Simulator"] | None = Field(
        None, description="Connector polled for current values in live mode; unset: live mode off."
    )
    live_points: str = Field("", description="Comma-separated points live mode polls.")
    live_poll_interval_seconds: float = Field(
        10.0, gt=0, description="Seconds between live-mode polls of current values."
    )
    pi_default_server: str | None = Field(
        None,
        description="PI Data Archive that bare tag names (`SINUSOID`) are read on "
        "(the seed's `DataArchive`); full PI point paths need none.",
    )
    simulator_interval_seconds: float = Field(
        60.0, gt=0, description="Seconds between the values of the in-process `Simulator` source."
    )
    simulator_generated_tags: int = Field(
        0, ge=0, description="Extra `SIMTAGnnnnn` sine-wave tags the `Simulator` source serves."
    )
    repull_enabled: bool = Field(
        False,
        description="Trailing re-pull: every REPULL_INTERVAL_SECONDS re-read LIVE_POINTS of "
        "LIVE_CONNECTOR over the last REPULL_WINDOW from the recorded-values API and publish what "
        "differs from QuestDB (late values, edits). Needs LIVE_CONNECTOR and LIVE_POINTS.",
    )
    repull_interval_seconds: float = Field(
        600.0, gt=0, description="Seconds between two trailing re-pulls."
    )
    repull_window: str = Field(
        "2h",
        description="Trailing window each re-pull re-reads (`2h`, `PT2H`, `02:00:00`); after "
        "missed runs it reaches back to the end of the last run instead (at most 12 windows).",
    )
    repull_lag_seconds: float = Field(
        60.0,
        ge=0,
        description="The newest seconds a re-pull leaves to live mode (its window ends this "
        "long before now), so values live mode is still publishing are not counted as added.",
    )
    topic_changes: str = Field(
        "naia.backfill.changes",
        description="Topic of the changes report: per run, per point and hour, the values the "
        "re-pull added and changed (written in the same Kafka transaction as the values).",
    )
    simulator_gaps: str = Field(
        "",
        description="Tests and demos: windows the in-process `Simulator` source has no values "
        "in, a real hole at the source: `TAG@START/END` (ISO-8601 UTC), `;`-separated.",
    )
    repair_enabled: bool = Field(
        False,
        description="Fill holes automatically: every REPAIR_INTERVAL_SECONDS, find holes in the "
        "live points (LIVE_CONNECTOR, LIVE_POINTS) over REPAIR_LOOKBACK and backfill them.",
    )
    repair_interval_seconds: float = Field(
        600.0, gt=0, description="Seconds between two runs of the hole repair."
    )
    repair_lookback: str = Field(
        "1d", description="How far back a repair run looks for holes (`90m`, `6h`, `7d`)."
    )
    repair_max_holes_per_run: int = Field(
        20, ge=1, description="Most holes one repair run turns into backfill requests."
    )
    repair_hole_factor: float = Field(
        3.0,
        ge=1.5,
        description="A hole is a gap between two values longer than this many times the "
        "point's cadence (the median interval of its own values in QuestDB).",
    )

    @property
    def api_body_limit(self) -> int:
        """The request body size the API accepts: the setting, or room for the largest request
        the point rules allow (16 bytes a name for its quotes, comma, indentation and escaped
        backslashes; 64 KiB for the other fields)."""
        if self.api_max_body_bytes is not None:
            return self.api_max_body_bytes
        return self.max_points_per_request * (self.max_point_name_length + 16) + 64 * 1024

    @field_validator("topic_changes")
    @classmethod
    def _check_changes_topic(cls, value: str) -> str:
        return CommonSettings._check_topic(value)

    @field_validator("repair_lookback")
    @classmethod
    def _check_lookback(cls, value: str) -> str:
        parse_span(value)
        return value

    @field_validator("simulator_gaps")
    @classmethod
    def _check_gaps(cls, value: str) -> str:
        parse_gaps(value)
        return value

    @field_validator("pi_web_api_url", "ace_api_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("expected an http(s):// URL")
        return value or None


class ArchiveSettings(CommonSettings):
    """The archive stage (``archive/``): QuestDB -> Parquet objects, the hot window, queries."""

    archive_url: str = Field(
        "s3://histfill-archive",
        description="Where the Parquet archive lives: `file:///path` or `s3://bucket/prefix` "
        "(AWS S3, Cloudflare R2, MinIO, S3Proxy: see the ARCHIVE_S3_* variables).",
    )
    archive_s3_endpoint: str | None = Field(
        "http://127.0.0.1:9100",
        description="S3 endpoint URL for a non-AWS store (R2: `https://<account>.r2."
        "cloudflarestorage.com`); empty: AWS S3.",
    )
    archive_s3_region: str = Field("us-east-1", description="S3 region (R2: `auto`).")
    archive_s3_access_key: SecretStr | None = Field(
        SecretStr("local-identity"), description="S3 access key id (secret)."
    )
    archive_s3_secret_key: SecretStr | None = Field(
        SecretStr("local-credential"), description="S3 secret access key (secret)."
    )
    archive_s3_path_style: bool = Field(
        True,
        description="Path-style S3 addressing (`endpoint/bucket/key`), as MinIO and S3Proxy "
        "need; false: virtual-hosted (`bucket.endpoint/key`).",
    )
    archive_store_retries: int = Field(
        5, ge=0, le=50, description="Retries of a failing object-store call (backoff doubles)."
    )
    archive_store_backoff_seconds: float = Field(
        0.5, ge=0, description="First wait before an object-store retry."
    )
    archive_store_timeout_seconds: float = Field(
        30.0, gt=0, description="Timeout of one object-store request (seconds)."
    )
    archive_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Point-months archived concurrently (each holds one in memory); 1 measured "
        "fastest on 2 cores shared with QuestDB.",
    )
    archive_api_host: str = Field(
        "0.0.0.0",  # noqa: S104  # a service in a container listens on all interfaces
        description="Address the archive HTTP API binds to.",
    )
    archive_api_port: Port = Field(5053, description="Port of the archive HTTP API.")
    producer_url: str = Field(
        "http://127.0.0.1:5052",
        description="The producer's API, which the archive asks to backfill what QuestDB lacks.",
    )
    producer_api_token: SecretStr | None = Field(
        None, description="Bearer token for the producer's API (its API_TOKEN), if it has one."
    )
    hot_retention: str | None = Field(
        None,
        description="Keep this much recent data in QuestDB (`30d`, `12h`); older day "
        "partitions are dropped once every row is in a verified archive object. Unset: never.",
    )
    query_max_points: int = Field(100, ge=1, description="Most points one query may name.")
    query_max_days: int = Field(3700, ge=1, description="Longest window one query may span.")
    query_max_rows: int = Field(
        2_000_000, ge=1, description="Most rows one query may return (more: 413, or use limit)."
    )

    @field_validator("hot_retention")
    @classmethod
    def _check_retention(cls, value: str | None) -> str | None:
        if value:
            parse_retention(value)
        return value or None

    @field_validator("archive_s3_endpoint", "producer_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("expected an http(s):// URL")
        return value or None

    @field_validator("archive_url")
    @classmethod
    def _check_archive_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"file", "s3"} or (parts.scheme == "s3" and not parts.netloc):
            raise ValueError("expected file:///path or s3://bucket[/prefix]")
        return value


_RETENTION = re.compile(r"^(\d+)\s*([dhw])$")


def parse_retention(text: str) -> float:
    """``30d``, ``12h``, ``2w`` -> seconds; ValueError otherwise."""
    found = _RETENTION.match(text.strip().lower())
    if not found or int(found[1]) <= 0:
        raise ValueError("expected a positive duration like 30d, 12h or 2w")
    return int(found[1]) * {"h": 3600, "d": 86400, "w": 604800}[found[2]]


_SPAN = re.compile(r"^(\d+)\s*([smhdw])$")


def parse_span(text: str) -> float:
    """``90s``, ``30m``, ``6h``, ``7d``, ``2w`` -> seconds; ValueError otherwise."""
    found = _SPAN.match(text.strip().lower())
    if not found or int(found[1]) <= 0:
        raise ValueError("expected a positive duration like 90m, 6h, 7d or 2w")
    return int(found[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[found[2]]


def parse_gaps(text: str) -> dict[str, list[tuple[datetime, datetime]]]:
    """``TAG@START/END;...`` -> the windows per tag (UTC); ValueError naming the bad part."""
    gaps: dict[str, list[tuple[datetime, datetime]]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        tag, sep, window = part.rpartition("@")
        start_text, slash, end_text = window.partition("/")
        try:
            if not (sep and slash and tag):
                raise ValueError
            start, end = (datetime.fromisoformat(t.strip()) for t in (start_text, end_text))
        except ValueError:
            raise ValueError(f"{part!r}: expected TAG@START/END (ISO-8601)") from None
        start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
        if end <= start:
            raise ValueError(f"{part!r}: END must be after START")
        gaps.setdefault(tag.strip(), []).append((start, end))
    return gaps


S = TypeVar("S", bound=CommonSettings)


def load_settings(cls: type[S], environ: dict[str, str] | None = None) -> S:
    """Read ``cls`` from the environment (or ``environ``), turning errors into one ConfigError.

    The message names each offending variable and, unless it is a secret, the value it had.
    """
    try:
        if environ is None:
            return cls()
        # An explicit mapping (tests, `histfill config check`) replaces the process environment.
        known = {name.upper(): name for name in cls.model_fields}
        values: dict[str, Any] = {
            known[key.upper()]: value for key, value in environ.items() if key.upper() in known
        }
        settings: S = _without_env(cls)(**values)
        return settings
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            annotation = (
                str(cls.model_fields[field].annotation) if field in cls.model_fields else ""
            )
            shown = "" if "SecretStr" in annotation else f" (got {error.get('input')!r})"
            problems.append(f"{field.upper()}: {error['msg']}{shown}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


@functools.cache
def _without_env(cls: type[S]) -> type[S]:
    """A subclass of ``cls`` that reads only its init arguments, never ``os.environ``."""

    class _InitOnly(cls):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            *_others: PydanticBaseSettingsSource,
            **_named: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    _InitOnly.__name__ = cls.__name__
    _InitOnly.__qualname__ = cls.__qualname__
    return _InitOnly


def env_table(*classes: type[CommonSettings]) -> str:
    """The Markdown table of every environment variable the given settings read."""
    rows: dict[str, tuple[str, str]] = {}
    for cls in classes:
        for name, info in cls.model_fields.items():
            default = info.default
            if isinstance(default, SecretStr):
                default = default.get_secret_value()
            shown = "" if default is None else f"`{default}`"
            rows.setdefault(name.upper(), (shown, info.description or ""))
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{var}` | {default} | {desc} |" for var, (default, desc) in rows.items()]
    return "\n".join(lines)


def all_env_vars() -> set[str]:
    """Every environment variable histfill's services read."""
    return {
        name.upper()
        for cls in (CommonSettings, ConsumerSettings, ProducerSettings, ArchiveSettings)
        for name in cls.model_fields
    }
