"""Static group membership: a ``group.instance.id`` that survives a restart, unique per host.

Why: a dynamic member that crashes keeps its partitions until its session times out (45 s by
default), and only then does the group rebalance to the restarted process. A *static* member
(KIP-345) that comes back with the same ``group.instance.id`` within the session timeout takes
its old member's place, with its assignment, at once.

Two live members with one instance id fence each other (the broker answers
``FENCED_INSTANCE_ID``, which librdkafka treats as fatal). Several consumers of one group often
run on one host (tests, ``histfill run`` next to a benchmark, a second terminal), so the default
id is ``<host name>-<n>``, where n is the lowest slot whose lock file no live consumer of the
group holds on this host. The lock is an ``flock``: the kernel drops it when the process dies,
even by SIGKILL, so the restarted process finds its old slot free and takes the same id. In a
container the host name is the container's own, so each replica gets ``<its host name>-0``.

A static member does not leave the group when it closes (librdkafka sends no LeaveGroup for
it on close), so a consumer stopped for good, as on scale-in, would keep its partitions unread
until ``CONSUMER_SESSION_TIMEOUT_MS`` expires. So on SIGTERM/SIGINT the loop leaves the group
explicitly after its last commit (``CONSUMER_LEAVE_GROUP_ON_STOP``, on by default): a clean
stop hands the partitions over at once, as a dynamic member's would, and only a crash keeps
them reserved for the restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog
from confluent_kafka import Consumer, KafkaException

from shared.errors import ConfigError

log = structlog.get_logger(__name__)

MAX_SLOTS = 256
_ILLEGAL = re.compile(r"[^A-Za-z0-9._\-]")


def _lock_path(lock_dir: Path, group: str, instance_id: str) -> Path:
    digest = hashlib.sha256(f"{group}\0{instance_id}".encode()).hexdigest()[:20]
    return lock_dir / f"histfill-consumer-{digest}.lock"


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on ``path``, or None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def host_name() -> str:
    """This host's name in the characters Kafka allows in an instance id."""
    return _ILLEGAL.sub("_", socket.gethostname())[:200] or "host"


@contextmanager
def claim_instance_id(
    group: str,
    configured: str | None,
    *,
    host: str | None = None,
    lock_dir: Path | None = None,
) -> Iterator[str]:
    """Hold this host's claim on an instance id of ``group`` while the consumer runs.

    ``configured`` (CONSUMER_INSTANCE_ID) is used as it is, but a second consumer of the group
    on this host asking for the same id is refused here, with a message naming the variable,
    rather than fenced by the broker later.
    """
    directory = lock_dir or Path(tempfile.gettempdir())
    if configured is not None:
        candidates = [configured]
    else:
        base = host or host_name()
        candidates = [f"{base}-{n}" for n in range(MAX_SLOTS)]
    for instance_id in candidates:
        fd = _try_lock(_lock_path(directory, group, instance_id))
        if fd is None:
            continue
        try:
            yield instance_id
        finally:
            os.close(fd)  # releases the lock
        return
    if configured is not None:
        raise ConfigError(
            f"CONSUMER_INSTANCE_ID={configured!r}: another consumer of group {group!r} on this "
            "host uses it (two members with one instance id fence each other)"
        )
    raise ConfigError(
        f"no free consumer instance slot of group {group!r} on this host ({MAX_SLOTS} in use): "
        "set CONSUMER_INSTANCE_ID"
    )


def leave_group(
    consumer: Consumer,
    holds_partitions: Callable[[], bool],
    timeout_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Leave the group now, before ``close()``: a static member's close() does not leave.

    unsubscribe() sends the LeaveGroup only once its revoke has been served by a poll (the
    revoke callback flushes and commits as on any rebalance); close() straight after it would
    not send it. Messages such a poll returns are dropped unstored: the partitions' next owner
    reads them again.
    """
    try:
        consumer.unsubscribe()
        deadline = clock() + timeout_s
        consumer.poll(0.2)
        while holds_partitions() and clock() < deadline:
            consumer.poll(0.1)
    except KafkaException as exc:
        log.warning("leave_group_failed", error=str(exc))
        return
    log.info("group_left")
