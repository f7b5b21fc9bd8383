"""Tools the fault tests share: service control, child processes, topic and table readers.

Used by the long suite (``tests/chaos``, ``make chaos``) and the short form inside the normal
run (``tests/integration/test_faults_short.py``). Nothing here is mocked: brokers are killed
with ``dev/services.sh`` (the copy named by ``PROVIDER_EVENTS_DEV_SERVICES``), PostgreSQL is
stopped and started the same way, and every check reads the real topic and the real table.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from tests.support import CLI, run_cli

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
DRIVER = Path(__file__).resolve().parent / "publisher_driver.py"
ARTIFACTS = ROOT / "artifacts"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# -- the services script ------------------------------------------------------------------------
def services_script() -> Path:
    """The ``dev/services.sh`` the ``broker`` fixture controls (``PROVIDER_EVENTS_DEV_SERVICES``)."""
    return Path(os.environ.get("PROVIDER_EVENTS_DEV_SERVICES", str(ROOT / "dev" / "services.sh")))


def _port(address: str) -> str:
    return address.split(",")[0].rpartition(":")[2]


def check_services_target(kafka_bootstrap: str, database_url: str | None = None) -> None:
    """Fail unless the services script controls the broker (and database) this run uses.

    A fault test kills what the script manages; if that is not the service the test talks to,
    it would take down someone else's broker and prove nothing, so it refuses to start.
    """
    script = services_script()
    proc = subprocess.run(
        [str(script), "env"], capture_output=True, text=True, timeout=30, check=False
    )
    exports = dict(re.findall(r"^export (\w+)=(.*)$", proc.stdout, flags=re.M))
    theirs = exports.get("KAFKA_BOOTSTRAP_SERVERS", "?")
    if _port(theirs) != _port(kafka_bootstrap):
        pytest.fail(
            f"{script} controls the broker at {theirs}, but this run uses {kafka_bootstrap}: "
            "set PROVIDER_EVENTS_DEV_SERVICES to the services.sh of that broker and use its "
            "`env` exports",
            pytrace=False,
        )
    if database_url is not None:
        mine = psycopg.conninfo.conninfo_to_dict(database_url).get("port")
        dsn = exports.get("DATABASE_URL", "")
        other = psycopg.conninfo.conninfo_to_dict(dsn).get("port") if dsn else "?"
        if str(mine) != str(other):
            pytest.fail(
                f"{script} controls PostgreSQL on port {other}, but DATABASE_URL uses {mine}",
                pytrace=False,
            )


class PostgresControl:
    """Stops and starts the PostgreSQL that ``services_script()`` manages."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.script = services_script()

    def _run(self, command: str) -> float:
        started = time.monotonic()
        subprocess.run([str(self.script), command], check=True, capture_output=True, timeout=180)
        return time.monotonic() - started

    def stop(self) -> float:
        return self._run("pg-stop")

    def kill(self) -> float:
        """``pg_ctl stop -m immediate``: a crash; the next start runs WAL recovery."""
        return self._run("pg-kill")

    def start(self) -> float:
        return self._run("pg-start")

    def ensure_running(self, patience: float = 120.0) -> None:
        deadline = time.monotonic() + patience
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=3).close()
                return
            except psycopg.OperationalError:
                subprocess.run(
                    [str(self.script), "pg-start"], capture_output=True, timeout=180, check=False
                )
                if time.monotonic() > deadline:
                    raise


# -- child processes ------------------------------------------------------------------------------
def child_env(base: dict[str, str] | None = None, **overrides: str) -> dict[str, str]:
    """An environment for a child that imports this tree's ``src`` (not an installed copy)."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.update(overrides)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``provider-events ARGS`` in ``env``, its output captured as text."""
    return run_cli(*args, env=env, timeout=timeout)


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll ``predicate`` until true; returns the seconds waited or fails naming ``what``."""
    started = time.monotonic()
    deadline = started + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


@dataclass
class ConsumerProcess:
    """``provider-events consume`` in a child process, writing JSON lines to a log file."""

    dsn: str
    bootstrap: str
    topic: str
    group: str
    log_dir: Path
    extra: tuple[str, ...] = ()
    #: names the log files (several members of one group each need their own)
    label: str = ""
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    logs: list[Path] = field(default_factory=list)

    def start(self, *more: str) -> None:
        self.runs += 1
        log = self.log_dir / f"consumer-{self.label or self.group[-8:]}-{self.runs}.jsonl"
        self.logs.append(log)
        env = child_env(
            DATABASE_URL=self.dsn,
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            PROVIDER_EVENTS_TOPIC=self.topic,
        )
        args = [*CLI, "consume", "--metrics-port", "off", "--json", "--group-id", self.group]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*args, *self.extra, *more],
                env=env,
                cwd=self.log_dir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.logs[-1].read_text(errors="replace")[-2000:]
            raise AssertionError(f"consumer exited {self.proc.returncode}:\n{tail}")

    def rows_at_least(self, n: int) -> bool:
        """Whether the table has ``n`` rows; raises if the consumer died meanwhile."""
        self.assert_alive()
        return table_count(self.dsn) >= n

    def wait_rows(self, n: int, what: str, timeout: float = 300.0, interval: float = 0.2) -> float:
        """Wait until the table has ``n`` rows, failing if the consumer dies; the seconds waited."""
        return wait_until(lambda: self.rows_at_least(n), timeout, what, interval)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        """SIGTERM, wait, and return the ``stopped`` totals the run printed."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        events = self.events(self.runs)
        stopped = next((e for e in reversed(events) if e.get("event") == "stopped"), None)
        assert code == 0 and stopped is not None, self.logs[-1].read_text(errors="replace")[-2000:]
        return stopped

    def events(self, run: int) -> list[dict[str, Any]]:
        out = []
        for line in self.logs[run - 1].read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def all_events(self) -> list[dict[str, Any]]:
        return [e for run in range(1, self.runs + 1) for e in self.events(run)]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


# -- Kafka --------------------------------------------------------------------------------------------
def delete_topics(bootstrap: str, topics: list[str]) -> None:
    """Best effort: a broker restarted after SIGKILL recovers every partition log it holds, so
    leftover test topics would slow every later restart."""
    if not topics:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until every result is in
    try:
        futures = admin.delete_topics(topics, operation_timeout=30)
    except Exception:  # the broker may be down after a failed test
        return
    for future in futures.values():
        with suppress(Exception):  # e.g. a dead-letter topic that was never created
            future.result(timeout=60)


def new_topic(
    bootstrap: str,
    partitions: int = 6,
    prefix: str = "chaos",
    replication: int = 1,
    config: dict[str, str] | None = None,
) -> str:
    name = f"{prefix}.provider.selected.{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(
        name, num_partitions=partitions, replication_factor=replication, config=config or {}
    )
    futures = admin.create_topics([topic], operation_timeout=30)
    futures[name].result(timeout=60)
    _wait_for_leaders(admin, name, partitions)
    return name


def add_partitions(bootstrap: str, topic: str, total: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_partitions([NewPartitions(topic, total)], operation_timeout=30)
    futures[topic].result(timeout=60)
    _wait_for_leaders(admin, topic, total)


def _wait_for_leaders(admin: AdminClient, topic: str, partitions: int) -> None:
    """Created is not yet usable: wait until the metadata shows every partition with a leader."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = admin.list_topics(topic, timeout=10).topics.get(topic)
        if (
            info is not None
            and info.error is None
            and len(info.partitions) == partitions
            and all(p.leader >= 0 for p in info.partitions.values())
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic}: not every one of {partitions} partitions has a leader")


class ClusterControl:
    """The brokers of the 3-broker cluster ``services_script()`` runs (``KAFKA_BROKERS=3``):
    stop, SIGKILL and start one of them, and read who leads and who is in sync."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.script = services_script()
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def _run(self, command: str, broker: int) -> float:
        started = time.monotonic()
        proc = subprocess.run(
            [str(self.script), command, str(broker)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert proc.returncode == 0, f"{command} {broker}: {proc.stderr[-1500:]}"
        return time.monotonic() - started

    def stop(self, broker: int) -> float:
        """SIGTERM (controlled shutdown: its leaderships move first); the seconds it took."""
        return self._run("broker-stop", broker)

    def kill(self, broker: int) -> float:
        return self._run("broker-kill", broker)

    def start(self, broker: int) -> float:
        """Start it and wait until the cluster lists it again; the seconds it took."""
        return self._run("broker-start", broker)

    def brokers(self) -> list[int]:
        return sorted(self.admin.list_topics(timeout=10).brokers)

    def partitions(self, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
        """partition -> (leader, replicas, ISR)."""
        info = self.admin.list_topics(topic, timeout=10).topics[topic]
        return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in info.partitions.values()}

    def busiest_leader(self, topic: str) -> int:
        """The broker leading the partitions of ``topic`` that hold the most messages."""
        reader = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "chaos-watermarks"})
        try:
            load: Counter[int] = Counter()
            for p, (leader, _, _) in self.partitions(topic).items():
                low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                load[leader] += 1 + high - low
        finally:
            reader.close()
        return load.most_common(1)[0][0]

    def wait_in_sync(self, topic: str, timeout: float = 120.0) -> float:
        """Wait until every partition of ``topic`` has its whole replica set in sync."""

        def full() -> bool:
            try:
                parts = self.partitions(topic)
            except Exception:
                return False
            return all(leader >= 0 and len(isr) == len(r) for leader, r, isr in parts.values())

        return wait_until(full, timeout, f"every replica of {topic} back in sync", 0.25)

    def min_isr(self, topic: str) -> int:
        return min(len(isr) for _, _, isr in self.partitions(topic).values())


def group_owners(bootstrap: str, group: str, topic: str) -> dict[str, list[int]]:
    """Each live member's ``group.instance.id`` (or member id) -> its partitions of ``topic``;
    empty unless the group is stable."""
    from confluent_kafka import ConsumerGroupState

    admin = AdminClient({"bootstrap.servers": bootstrap})
    desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    if desc.state != ConsumerGroupState.STABLE:
        return {}
    return {
        m.group_instance_id or m.member_id: sorted(
            tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic
        )
        for m in desc.members
    }


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-watermarks"})
    try:
        parts = reader.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts
        }
    finally:
        reader.close()


def partition_count(bootstrap: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return len(admin.list_topics(topic, timeout=30).topics[topic].partitions)


@dataclass(frozen=True, slots=True)
class TopicMessage:
    partition: int
    offset: int
    key: bytes | None
    event_id: str
    value: bytes


def read_topic(bootstrap: str, topic: str, timeout: float = 120.0) -> list[TopicMessage]:
    """Every message of ``topic`` from the start of each partition to its current end."""
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 << 20,
        }
    )
    try:
        parts = reader.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {
            p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in parts
        }
        todo = {p for p, end in ends.items() if end > 0}
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        out: list[TopicMessage] = []
        deadline = time.monotonic() + timeout
        while todo:
            assert time.monotonic() < deadline, f"reading {topic} took over {timeout:g}s"
            for msg in reader.consume(10_000, timeout=1.0):
                p, offset = msg.partition(), msg.offset()
                if msg.error() is not None or p is None or offset is None:
                    continue
                headers = dict(msg.headers() or [])
                eid = headers.get("event_id")
                key = msg.key()
                out.append(
                    TopicMessage(
                        p,
                        offset,
                        key.encode() if isinstance(key, str) else key,
                        eid.decode() if isinstance(eid, bytes) else str(eid),
                        cast(bytes, msg.value() or b""),
                    )
                )
                if offset + 1 >= ends[p]:
                    todo.discard(p)
        return out
    finally:
        reader.close()


def redeliveries(messages: list[TopicMessage]) -> int:
    """Copies on the topic beyond the first of each ``event_id``."""
    return sum(n - 1 for n in Counter(m.event_id for m in messages).values())


class BlackHole:
    """A TCP listener on 127.0.0.1 that accepts every connection and never answers a byte."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self.bytes_swallowed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="black-hole", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        conns: list[socket.socket] = []
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._sock:
                        conn, _ = self._sock.accept()
                        conn.setblocking(False)
                        conns.append(conn)
                        self.connections += 1
                        sel.register(conn, selectors.EVENT_READ)
                        continue
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        self.bytes_swallowed += len(data)  # read and ignored: never a reply
                    else:
                        sel.unregister(sock)
                        sock.close()
        finally:
            for conn in conns:
                conn.close()
            self._sock.close()
            sel.close()


# -- PostgreSQL ---------------------------------------------------------------------------------------
def table_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return [str(r[0]) for r in conn.execute("SELECT event_id FROM provider_selection_events")]


def table_count(dsn: str) -> int:
    """Rows in the events table, or -1 while PostgreSQL is unreachable."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM provider_selection_events").fetchone()
        return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return -1


# -- a small disk for the outbox --------------------------------------------------------------------
@contextmanager
def small_filesystem(where: Path, size_kib: int = 1024) -> Iterator[str]:
    """Mount a ``size_kib`` tmpfs on ``where`` (or, if tmpfs is refused, a loop ext4 image).

    Yields the kind mounted. Needs root (CAP_SYS_ADMIN); without it the test cannot make a
    disk fill up without filling a real one, so it fails under CI and is skipped elsewhere.
    """
    where.mkdir(parents=True, exist_ok=True)
    tried = []
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    kind = "tmpfs"
    image = where.with_suffix(".img")
    if mount.returncode != 0:
        tried.append(f"tmpfs: {mount.stderr.strip()}")
        kind = "ext4 loop image"
        subprocess.run(["truncate", "-s", f"{max(size_kib, 512)}K", str(image)], check=True)
        mkfs = subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], capture_output=True, text=True
        )
        mount = subprocess.run(
            ["mount", "-o", "loop", str(image), str(where)], capture_output=True, text=True
        )
        if mkfs.returncode != 0 or mount.returncode != 0:
            tried.append(f"loop: {mkfs.stderr.strip()} {mount.stderr.strip()}")
            message = "cannot mount a small filesystem for the disk-full test: " + "; ".join(tried)
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
    try:
        yield kind
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(where)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)  # a relay child may still hold a file open
        else:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        image.unlink(missing_ok=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


# -- figures --------------------------------------------------------------------------------------------
def record(config: pytest.Config, suite: str, name: str, figures: dict[str, Any]) -> None:
    """Append the run's figures as one JSON line to ``artifacts/<suite>/<name>.json`` and print a
    one-line summary (visible without ``-s``)."""
    doc = {"test": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **figures}
    folder = ARTIFACTS / suite
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.json").open("a") as out:
        out.write(json.dumps(doc, sort_keys=False) + "\n")
    summary = f"[{suite}] {name}: " + " ".join(f"{k}={_fmt(v)}" for k, v in figures.items())
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(summary)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(summary)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (and librdkafka's ``murmur2``) picks for ``key``."""
    m, length = 0x5BD1E995, len(key)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = key[i] | key[i + 1] << 8 | key[i + 2] << 16 | key[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, extra = length & ~3, length % 4
    if extra == 3:
        h ^= key[tail + 2] << 16
    if extra >= 2:
        h ^= key[tail + 1] << 8
    if extra >= 1:
        h ^= key[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions
