"""The local stack without Docker: a KRaft Kafka broker, QuestDB, Redis and S3Proxy as processes.

``histfill stack up`` fetches the pinned Kafka and QuestDB jars from Maven Central with Maven
(``stack/pom.xml`` pins the versions), installs Debian's ``redis-server`` when it is missing, and
starts them on loopback with their data and logs under the git-ignored ``.stack/`` folder.
Up is idempotent (a service that already answers is left alone), readiness is polled against each
service's own protocol (never a fixed sleep), and ``down`` stops the process groups it started,
escalating to SIGKILL only when SIGTERM is not honoured in time.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import redis
import structlog

from shared.errors import StackError

log = structlog.get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent

KAFKA_PORT = 9092
KAFKA_CONTROLLER_PORT = 9093
QUESTDB_HTTP_PORT = 9000
QUESTDB_PG_PORT = 8812
QUESTDB_ILP_TCP_PORT = 9009
QUESTDB_MIN_HTTP_PORT = 9003
REDIS_PORT = 6379
S3PROXY_PORT = 9100
# S3Proxy's fixed local credentials: the archive's defaults (ARCHIVE_S3_ACCESS_KEY/SECRET_KEY)
S3PROXY_IDENTITY = "local-identity"
S3PROXY_CREDENTIAL = "local-credential"

KAFKA_HEAP = "512m"
S3PROXY_HEAP = "256m"
QUESTDB_HEAP = "1g"

_KAFKA_PROPERTIES = f"""\
# Written by `histfill stack up`: a single-node KRaft broker on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT},CONTROLLER://127.0.0.1:{KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={{data_dir}}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=268435456
message.max.bytes=16777216
"""

_LOG4J2 = """\
# Written by `histfill stack up`: Kafka logs to one rolling file, warnings and up for libraries.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log_dir}/kafka-server.log
appender.file.filePattern = {log_dir}/kafka-server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache
logger.apache.level = WARN
"""

_QUESTDB_CONF = f"""\
# Written by `histfill stack up`: QuestDB on loopback, no telemetry (this network is closed).
http.bind.to=127.0.0.1:{QUESTDB_HTTP_PORT}
http.min.net.bind.to=127.0.0.1:{QUESTDB_MIN_HTTP_PORT}
pg.net.bind.to=127.0.0.1:{QUESTDB_PG_PORT}
line.tcp.net.bind.to=127.0.0.1:{QUESTDB_ILP_TCP_PORT}
line.udp.enabled=false
telemetry.enabled=false
"""


# S3Proxy: an S3-compatible server (AWS signatures v2/v4) over a folder under .stack/data.
_S3PROXY_CONF = f"""\
# Written by `histfill stack up`: S3Proxy on loopback over the filesystem.
s3proxy.endpoint=http://127.0.0.1:{S3PROXY_PORT}
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity={S3PROXY_IDENTITY}
s3proxy.credential={S3PROXY_CREDENTIAL}
jclouds.provider=filesystem-nio2
jclouds.identity={S3PROXY_IDENTITY}
jclouds.credential={S3PROXY_CREDENTIAL}
jclouds.filesystem.basedir={{data_dir}}
"""

# Without a configuration logback logs everything at DEBUG (every selector wake-up).
_S3PROXY_LOGBACK = """\
<configuration>
  <appender name="out" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{36} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="out"/></root>
</configuration>
"""


# QuestDB logs every query at INFO: a test run's polling made a 160 MB log. Keep what matters.
_QUESTDB_LOG_CONF = """\
writers=stdout
w.stdout.class=io.questdb.log.LogConsoleWriter
w.stdout.level=ERROR,CRITICAL,ADVISORY
"""


@dataclass(frozen=True)
class StackPaths:
    """Where the stack keeps jars, data, logs and pid files (all git-ignored)."""

    root: Path = field(default_factory=lambda: REPO_ROOT / ".stack")
    pom: Path = field(default_factory=lambda: REPO_ROOT / "stack" / "pom.xml")

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"


@dataclass(frozen=True)
class Service:
    """One process of the stack: how to prepare it, launch it and know it is ready."""

    name: str
    port: int
    command: Callable[[StackPaths], list[str]]
    ready: Callable[[], bool]
    prepare: Callable[[StackPaths], None] = lambda _paths: None
    env: Mapping[str, str] = field(default_factory=dict)  # added to this process's environment
    profile: str | None = None  # the stack/pom.xml profile holding its jars


# ---------------------------------------------------------------------------- prerequisites


def _require_tool(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise StackError(f"`{tool}` was not found on PATH. {hint}")
    return path


def check_java() -> None:
    """Refuse early, with the fix, when Java 17+ or Maven is missing."""
    _require_tool(
        "java",
        "The local stack runs Kafka and QuestDB on Java 17 or newer: "
        "install it, e.g. `apt-get install openjdk-17-jre-headless`.",
    )
    _require_tool(
        "mvn",
        "Maven fetches the pinned Kafka and QuestDB jars from Maven Central: "
        "install it, e.g. `apt-get install maven`.",
    )
    out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr
    major = _java_major(out)
    if major is not None and major < 17:
        raise StackError(f"Java {major} found; Kafka 4 and QuestDB 9.3 need Java 17 or newer.")


def _java_major(version_output: str) -> int | None:
    """Parse `java -version` output ('openjdk version "17.0.15" ...') into its major number."""
    for raw in version_output.split():
        token = raw.strip('"')
        if token[:1].isdigit():
            head = token.split(".")[0]
            if head == "1":  # 1.8.0 style
                return int(token.split(".")[1])
            with suppress(ValueError):
                return int(head.split("-")[0])
    return None


def _profile_stamp(pom: Path, profile: str) -> str:
    """What a profile's jars depend on: the POM's properties and that profile's block. Other
    profiles' edits do not invalidate it, so adding one never refetches jars in use."""
    text = pom.read_text()
    props = re.search(r"<properties>.*?</properties>", text, re.DOTALL)
    block = re.search(rf"<id>{re.escape(profile)}</id>.*?</profile>", text, re.DOTALL)
    material = (props[0] if props else "") + (block[0] if block else "")
    return hashlib.sha256(material.encode()).hexdigest()


def fetch_jars(paths: StackPaths, profiles: Iterable[str] = ("kafka", "questdb")) -> None:
    """Copy the pinned jars out of Maven Central into .stack/lib/<profile> (once)."""
    for profile in profiles:
        target = paths.lib / profile
        marker = target / ".complete"
        pom_stamp = _profile_stamp(paths.pom, profile)
        if marker.exists() and marker.read_text() == pom_stamp:
            continue
        log.info("stack_fetching_jars", profile=profile, target=str(target))
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        result = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(paths.pom),
                f"-P{profile}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={target}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                f"Maven could not fetch the {profile} jars (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-2000:]}"
            )
        marker.write_text(pom_stamp)


def ensure_redis_server() -> str:
    """Return the redis-server path, installing Debian's package when it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0:
        raise StackError("redis-server is missing: install it with `apt-get install redis-server`.")
    log.info("stack_installing_redis_server")
    # RUNLEVEL=1 keeps the package's init script from starting its own server on 6379:
    # the stack starts and stops the one it owns.
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise StackError(f"`{' '.join(cmd)}` failed:\n{result.stderr[-2000:]}")
    found = shutil.which("redis-server")
    if not found:
        raise StackError("redis-server is still missing after apt-get install")
    return found


# ---------------------------------------------------------------------------- readiness probes


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def kafka_ready() -> bool:
    """The broker answers a metadata request (the port alone opens before KRaft elects)."""
    if not _port_open(KAFKA_PORT):
        return False
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415  # heavy import, only here

    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{KAFKA_PORT}", "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=2)
    except Exception:  # noqa: BLE001  # any failure simply means "not ready yet"
        return False
    return bool(metadata.brokers)


def questdb_ready() -> bool:
    """QuestDB runs SQL over HTTP."""
    try:
        response = httpx.get(
            f"http://127.0.0.1:{QUESTDB_HTTP_PORT}/exec", params={"query": "select 1"}, timeout=2
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def redis_ready() -> bool:
    """Redis answers PING."""
    client = redis.Redis(host="127.0.0.1", port=REDIS_PORT, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def s3proxy_ready() -> bool:
    """S3Proxy answers HTTP (an anonymous request gets an S3 error document: it is up)."""
    try:
        response = httpx.get(f"http://127.0.0.1:{S3PROXY_PORT}/", timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code < 500


# ---------------------------------------------------------------------------- services


def _classpath(directory: Path) -> str:
    return os.pathsep.join(str(jar) for jar in sorted(directory.glob("*.jar")))


def _prepare_kafka(paths: StackPaths) -> None:
    data_dir = paths.data / "kafka"
    data_dir.mkdir(parents=True, exist_ok=True)
    properties = paths.conf / "kafka-server.properties"
    properties.write_text(_KAFKA_PROPERTIES.format(data_dir=data_dir))
    (paths.conf / "kafka-log4j2.properties").write_text(_LOG4J2.format(log_dir=paths.logs))
    if (data_dir / "meta.properties").exists():
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    result = subprocess.run(
        [
            "java",
            "-Xmx256m",
            "-cp",
            _classpath(paths.lib / "kafka"),
            f"-Dlog4j2.configurationFile={paths.conf / 'kafka-log4j2.properties'}",
            "kafka.tools.StorageTool",
            "format",
            # one argv item: an id starting with "-" (1 in 64 base64url ids) must not read as
            # an option; a CI run failed on exactly that
            f"--cluster-id={cluster_id}",
            "-c",
            str(properties),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"formatting Kafka's KRaft storage failed:\n{result.stderr[-2000:]}")


def _kafka_command(paths: StackPaths) -> list[str]:
    return [
        "java",
        f"-Xmx{KAFKA_HEAP}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={paths.conf / 'kafka-log4j2.properties'}",
        f"-Dkafka.logs.dir={paths.logs}",
        "-cp",
        _classpath(paths.lib / "kafka"),
        "kafka.Kafka",
        str(paths.conf / "kafka-server.properties"),
    ]


def _prepare_questdb(paths: StackPaths) -> None:
    conf_dir = paths.data / "questdb" / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "server.conf").write_text(_QUESTDB_CONF)
    (conf_dir / "log.conf").write_text(_QUESTDB_LOG_CONF)


def _questdb_command(paths: StackPaths) -> list[str]:
    jars = sorted((paths.lib / "questdb").glob("questdb-*.jar"))
    if not jars:
        raise StackError(f"no QuestDB jar in {paths.lib / 'questdb'}: run `histfill stack up`")
    return [
        "java",
        f"-Xmx{QUESTDB_HEAP}",
        "-Xms256m",
        "-XX:+UseParallelGC",
        "-p",
        str(jars[-1]),
        "-m",
        "io.questdb/io.questdb.ServerMain",
        "-d",
        str(paths.data / "questdb"),
    ]


def _redis_command(paths: StackPaths) -> list[str]:
    data_dir = paths.data / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        ensure_redis_server(),
        "--port",
        str(REDIS_PORT),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]


def _prepare_s3proxy(paths: StackPaths) -> None:
    data_dir = paths.data / "s3proxy"
    data_dir.mkdir(parents=True, exist_ok=True)
    (paths.conf / "s3proxy.properties").write_text(_S3PROXY_CONF.format(data_dir=data_dir))
    (paths.conf / "s3proxy-logback.xml").write_text(_S3PROXY_LOGBACK)


def _s3proxy_command(paths: StackPaths) -> list[str]:
    return [
        "java",
        f"-Xmx{S3PROXY_HEAP}",
        "-Djava.awt.headless=true",
        f"-Dlogback.configurationFile={paths.conf / 's3proxy-logback.xml'}",
        "-cp",
        _classpath(paths.lib / "s3proxy"),
        "org.gaul.s3proxy.Main",
        "--properties",
        str(paths.conf / "s3proxy.properties"),
    ]


SERVICES: tuple[Service, ...] = (
    Service("redis", REDIS_PORT, _redis_command, redis_ready),
    Service(
        "questdb",
        QUESTDB_HTTP_PORT,
        _questdb_command,
        questdb_ready,
        _prepare_questdb,
        profile="questdb",
    ),
    Service("kafka", KAFKA_PORT, _kafka_command, kafka_ready, _prepare_kafka, profile="kafka"),
    Service(
        "s3proxy",
        S3PROXY_PORT,
        _s3proxy_command,
        s3proxy_ready,
        _prepare_s3proxy,
        profile="s3proxy",
    ),
)


# ---------------------------------------------------------------------------- process control

# A service outlives the interpreter that starts it (`histfill stack up` exits at once; a test
# session that restarted QuestDB leaves it for the next). As our child it would be a Popen never
# waited for: Python reports each at exit ("ResourceWarning: subprocess N is still running"),
# and one that died while we ran would stay a zombie. So a launcher starts it in its own session
# (its pid is its process group, which `down` signals) and exits: the service is reparented to
# init, which reaps it, and nothing of it is left in this interpreter.
_LAUNCHER = """
import os, sys
log = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
null = os.open(os.devnull, os.O_RDONLY)
io = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)]
print(os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ, file_actions=io, setsid=True))
"""


def _spawn_detached(argv: list[str], log_path: Path, cwd: Path, env: Mapping[str, str]) -> int:
    """Start ``argv`` detached from this process (see above); returns its pid."""
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(log_path), *argv],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if launched.returncode != 0:
        raise StackError(f"could not start {argv[0]}: {launched.stderr.strip()[-2000:]}")
    return int(launched.stdout)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _write_pid(paths: StackPaths, name: str, pid: int) -> None:
    """Record a started service: its pid and the process's start time, which tells it apart
    from an unrelated process that got the same pid after a reboot or a crash."""
    started = psutil.Process(pid).create_time()
    paths.pid_file(name).write_text(f"{pid} {started:.3f}\n")


def _read_pid(paths: StackPaths, name: str) -> int | None:
    """The pid of a service we started and that still runs; a stale pid file is removed."""
    pid_file = paths.pid_file(name)
    try:
        fields = pid_file.read_text().split()
        pid = int(fields[0])
        started = float(fields[1]) if len(fields) > 1 else None
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        alive = psutil.Process(pid)
        same = started is None or abs(alive.create_time() - started) < 0.01
    except psutil.Error:
        same = False
    if not same:
        # the process is gone; the pid, if alive, now belongs to something else: never signal it
        log.info("stack_pid_file_stale", service=name, pid=pid)
        pid_file.unlink(missing_ok=True)
        return None
    return pid


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    interval: float = 0.25,
    alive: Callable[[], bool] | None = None,
) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; stop early if ``alive`` fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if alive is not None and not alive():
            return False
        time.sleep(interval)
    return condition()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def start_service(service: Service, paths: StackPaths, timeout: float = 120) -> str:
    """Start one service unless it already answers; wait until it is ready."""
    if service.ready():
        pid = _read_pid(paths, service.name)
        log.info("stack_service_already_running", service=service.name, pid=pid)
        return "already running"
    if _port_open(service.port):
        raise StackError(
            f"port {service.port} is taken by something that is not a ready {service.name}; "
            "stop it first"
        )
    service.prepare(paths)
    log_path = paths.logs / f"{service.name}.out"
    pid = _spawn_detached(
        service.command(paths), log_path, paths.root, {**os.environ, **service.env}
    )
    try:
        _write_pid(paths, service.name, pid)
    except psutil.Error as exc:  # it exited at once
        raise StackError(
            f"{service.name} exited right after starting; last lines of {log_path}:\n"
            f"{_tail(log_path)}"
        ) from exc
    started = time.monotonic()
    if not wait_until(service.ready, timeout, alive=lambda: _running(pid)):
        running = _running(pid)
        stop_service(service.name, paths)
        raise StackError(
            f"{service.name} did not become ready within {timeout:.0f}s "
            f"({'still running' if running else 'it exited'}); last lines of {log_path}:\n"
            f"{_tail(log_path)}"
        )
    log.info(
        "stack_service_started",
        service=service.name,
        pid=pid,
        seconds=round(time.monotonic() - started, 1),
    )
    return "started"


def stop_service(name: str, paths: StackPaths, timeout: float = 30) -> bool:
    """SIGTERM the service's process group, SIGKILL after ``timeout``; True if one was stopped."""
    pid = _read_pid(paths, name)
    if pid is None:
        return False
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if not wait_until(lambda: not _group_alive(pid), timeout):
        log.warning("stack_service_sigkill", service=name, pid=pid)
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: not _group_alive(pid), 10)
    paths.pid_file(name).unlink(missing_ok=True)
    log.info("stack_service_stopped", service=name, pid=pid)
    return True


def _group_alive(pgid: int) -> bool:
    for proc in psutil.process_iter(["pid", "status"]):
        with suppress(psutil.Error):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def up(
    paths: StackPaths | None = None, timeout: float = 120, *, prometheus: bool = False
) -> dict[str, str]:
    """Bring the whole stack up (idempotent); returns each service's outcome. ``prometheus``:
    also the optional Prometheus (:mod:`histfill.prometheus`)."""
    paths = paths or StackPaths()
    for directory in (paths.lib, paths.data, paths.logs, paths.run, paths.conf):
        directory.mkdir(parents=True, exist_ok=True)
    missing = [s.profile for s in SERVICES if s.profile and not s.ready()]
    if missing:
        check_java()
        fetch_jars(paths, missing)
    outcome = {service.name: start_service(service, paths, timeout) for service in SERVICES}
    if prometheus:
        from histfill.prometheus import PROMETHEUS  # noqa: PLC0415  # imports this module

        outcome[PROMETHEUS.name] = start_service(PROMETHEUS, paths, timeout)
    return outcome


def down(paths: StackPaths | None = None) -> dict[str, bool]:
    """Stop every process the stack started: `histfill run`'s services first, then S3Proxy,
    Kafka, QuestDB and Redis (Kafka before QuestDB and Redis, so it can close cleanly)."""
    paths = paths or StackPaths()
    ours = [service.name for service in reversed(SERVICES)]
    others = sorted(p.stem for p in paths.run.glob("*.pid") if p.stem not in ours)
    return {name: stop_service(name, paths) for name in [*others, *ours]}


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    ready: bool
    port: int


def status(paths: StackPaths | None = None) -> Iterator[ServiceStatus]:
    """Each service's pid (if we started it) and whether it answers."""
    paths = paths or StackPaths()
    for service in SERVICES:
        yield ServiceStatus(
            service.name, _read_pid(paths, service.name), service.ready(), service.port
        )
    if paths.pid_file("prometheus").exists():  # started with `stack up --prometheus`
        from histfill.prometheus import PROMETHEUS  # noqa: PLC0415  # imports this module

        pid = _read_pid(paths, PROMETHEUS.name)
        yield ServiceStatus(PROMETHEUS.name, pid, PROMETHEUS.ready(), PROMETHEUS.port)
