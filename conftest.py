"""Shared pytest fixtures: real Kafka and PostgreSQL from the environment, kcat, isolation.

Integration tests read ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL``. When a service is not
reachable the test is skipped locally, and fails under ``CI=true``: CI never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))
# Child processes (`python -m provider_events.cli ...`) run this tree's code too, whatever an
# editable install elsewhere on the machine points at.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
)
#: The script that controls the local services; point it at another copy (with its own ports)
#: to run outage tests against a private broker: PROVIDER_EVENTS_DEV_SERVICES=/x/dev/services.sh
SERVICES = Path(os.environ.get("PROVIDER_EVENTS_DEV_SERVICES", str(ROOT / "dev" / "services.sh")))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(host_port: str, timeout: float = 2.0) -> bool:
    host, _, port = host_port.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def _unavailable(what: str) -> None:
    message = f"{what} is not reachable; start it with `make services`"
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    lines.append(f"kafka: {bootstrap or 'KAFKA_BOOTSTRAP_SERVERS not set'}")
    dsn = os.environ.get("DATABASE_URL")
    if dsn:
        try:
            import psycopg

            with psycopg.connect(dsn, connect_timeout=3) as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]
            lines.append(f"postgresql: {version}")
        except Exception as exc:  # pragma: no cover - header only
            lines.append(f"postgresql: unreachable ({type(exc).__name__})")
    lines.append(
        f"CI={os.environ.get('CI', '')!r} (missing services {'fail' if IN_CI else 'skip'})"
    )
    return lines


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The real broker's address (``KAFKA_BOOTSTRAP_SERVERS``)."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap or not _reachable(bootstrap):
        _unavailable(f"Kafka ({bootstrap or 'KAFKA_BOOTSTRAP_SERVERS unset'})")
    return bootstrap  # type: ignore[return-value]


@pytest.fixture(scope="session")
def database_url() -> str:
    """The real PostgreSQL server (``DATABASE_URL``)."""
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        _unavailable("PostgreSQL (DATABASE_URL unset)")
    try:
        import psycopg

        psycopg.connect(dsn, connect_timeout=3).close()
    except Exception:
        _unavailable("PostgreSQL")
    return dsn  # type: ignore[return-value]


@pytest.fixture(scope="session")
def kcat_bin() -> str:
    path = shutil.which("kcat")
    if path is None:
        _unavailable("kcat (apt-get install kcat)")
    return path  # type: ignore[return-value]


@dataclass
class KcatMessage:
    topic: str
    partition: int
    offset: int
    key: str | None
    payload: str | None
    headers: dict[str, str]

    @property
    def envelope(self) -> dict:
        return json.loads(self.payload or "null")


@dataclass
class Kcat:
    """The guide's own client, used as an independent reader and writer of the topic."""

    binary: str
    bootstrap: str

    def consume(self, topic: str, *, timeout: float = 30.0) -> list[KcatMessage]:
        """Every message on ``topic`` from the beginning to the current end."""
        proc = subprocess.run(
            [
                self.binary,
                "-C",
                "-b",
                self.bootstrap,
                "-t",
                topic,
                "-o",
                "beginning",
                "-e",
                "-J",
                "-q",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        out = []
        for line in proc.stdout.splitlines():
            doc = json.loads(line)
            raw_headers = doc.get("headers") or []
            headers = dict(zip(raw_headers[::2], raw_headers[1::2], strict=True))
            out.append(
                KcatMessage(
                    doc["topic"],
                    doc["partition"],
                    doc["offset"],
                    doc.get("key"),
                    doc.get("payload"),
                    headers,
                )
            )
        return out

    def wait_for(
        self,
        topic: str,
        predicate: Callable[[list[KcatMessage]], bool],
        *,
        timeout: float = 60.0,
    ) -> list[KcatMessage]:
        """Poll ``topic`` until ``predicate(messages)`` holds; tolerates a broker restarting.

        Returns the last read (the caller asserts on it, so a timeout shows what was there).
        """
        deadline = time.monotonic() + timeout
        messages: list[KcatMessage] = []
        while True:
            try:
                messages = self.consume(topic, timeout=max(5.0, deadline - time.monotonic()))
                if predicate(messages):
                    return messages
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                pass
            if time.monotonic() >= deadline:
                return messages
            time.sleep(0.5)

    def produce(self, topic: str, key: str, value: bytes, *, timeout: float = 30.0) -> None:
        subprocess.run(
            [self.binary, "-P", "-b", self.bootstrap, "-t", topic, "-k", key, "-Z"],
            input=value,
            timeout=timeout,
            check=True,
        )

    def metadata(self) -> str:
        return subprocess.run(
            [self.binary, "-L", "-b", self.bootstrap],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout


@pytest.fixture(scope="session")
def kcat(kcat_bin: str, kafka_bootstrap: str) -> Kcat:
    return Kcat(kcat_bin, kafka_bootstrap)


def create_topic(bootstrap: str, name: str, partitions: int = 6) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)], operation_timeout=30
    )
    futures[name].result(timeout=60)
    # Created is not yet usable: wait until every partition has a leader in the metadata.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = admin.list_topics(name, timeout=10).topics.get(name)
        ready = info is not None and info.error is None and len(info.partitions) == partitions
        if ready and all(p.leader >= 0 for p in info.partitions.values()):
            return name
        time.sleep(0.1)
    raise TimeoutError(f"topic {name} has no leader for every partition after 60 s")


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    """A fresh topic with 6 partitions, so each test reads only its own events."""
    return create_topic(kafka_bootstrap, f"test.provider.selected.{uuid.uuid4().hex[:12]}")


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated outbox/state directory, also seen by child processes."""
    path = tmp_path / "state"
    monkeypatch.setenv("PROVIDER_EVENTS_STATE_DIR", str(path))
    monkeypatch.delenv("PROVIDER_EVENTS_OUTBOX", raising=False)
    return path


@pytest.fixture
def kafka_env(
    kafka_bootstrap: str, topic: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Environment for a publisher (in-process or a CLI child) aimed at the test's topic."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("PROVIDER_EVENTS_TOPIC", topic)
    monkeypatch.setenv("PROVIDER_EVENTS_DELIVERY_TIMEOUT", "5")
    return dict(os.environ)


class BrokerControl:
    """Stops and starts the real dev broker (``dev/services.sh``), for outage tests."""

    def stop(self) -> None:
        subprocess.run([str(SERVICES), "kafka-stop"], check=True, capture_output=True, timeout=120)

    def kill(self) -> None:
        subprocess.run([str(SERVICES), "kafka-kill"], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        subprocess.run([str(SERVICES), "kafka-start"], check=True, capture_output=True, timeout=180)


@pytest.fixture
def broker(kafka_bootstrap: str) -> Iterator[BrokerControl]:
    """Control of the local broker; it is always running again after the test."""
    if not SERVICES.exists():
        _unavailable("dev/services.sh")
    control = BrokerControl()
    try:
        yield control
    finally:
        if not _reachable(kafka_bootstrap):
            control.start()


@pytest.fixture(autouse=True)
def _close_producers() -> Iterator[None]:
    """Each test starts without the previous test's Kafka producers (and their logs)."""
    yield
    from provider_events._producer import shutdown_producers

    shutdown_producers(timeout=0)
