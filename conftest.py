"""Shared pytest fixtures: real Kafka and PostgreSQL from the environment, kcat, isolation.

Integration tests read ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL``. When a service is not
reachable the test is skipped locally, and fails under ``CI=true``: CI never skips.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import IN_CI, Kcat, create_topic, installed, relay_processes
from tests.support import reachable as _reachable
from tests.support import unavailable as _unavailable

if TYPE_CHECKING:
    from tests.chaos.harness import Services
    from tests.chaos.kit import ClusterControl, PostgresControl

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))
# Child processes (`python -m provider_events.cli ...`) run this tree's code too, whatever an
# editable install elsewhere on the machine points at.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
)
# LiteLLM (the [litellm] extra) would fetch its price map from the internet at import: use the
# copy it ships, as the docs tell offline users to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
#: The script that controls the local services; point it at another copy (with its own ports)
#: to run outage tests against a private broker: PROVIDER_EVENTS_DEV_SERVICES=/x/dev/services.sh
SERVICES = Path(os.environ.get("PROVIDER_EVENTS_DEV_SERVICES", str(ROOT / "dev" / "services.sh")))


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
    return installed("kcat", "apt-get install kcat")


@pytest.fixture(scope="session")
def kcat(kcat_bin: str, kafka_bootstrap: str) -> Kcat:
    return Kcat(kcat_bin, kafka_bootstrap)


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


@pytest.fixture
def postgres(database_url: str) -> Iterator[PostgresControl]:
    """Stops and starts PostgreSQL with the services script (``PROVIDER_EVENTS_DEV_SERVICES``,
    as ``broker``); it is always running again after the test."""
    from tests.chaos.kit import PostgresControl

    control = PostgresControl(database_url)
    try:
        yield control
    finally:
        control.ensure_running()


@pytest.fixture
def services(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> Iterator[Services]:
    """What a fault scenario (``tests/chaos``) runs against: the broker and PostgreSQL, checked
    to be the ones the services script controls, and a scratch directory; the test's topics
    are deleted afterwards."""
    from tests.chaos import kit
    from tests.chaos.harness import Services

    kit.check_services_target(kafka_bootstrap, database_url)
    services = Services(kafka_bootstrap, database_url, tmp_path)
    try:
        yield services
    finally:
        services.close()


@pytest.fixture
def cluster(kafka_bootstrap: str) -> Iterator[ClusterControl]:
    """The brokers of a 3-broker cluster (``KAFKA_BROKERS=3 make services``), one at a time;
    every broker is running again after the test. Without a cluster the test is skipped
    (fails under ``CI=true``)."""
    from tests.chaos import kit

    if len(kafka_bootstrap.split(",")) < 3:
        _unavailable(f"a 3-broker Kafka cluster (KAFKA_BROKERS=3; this run has {kafka_bootstrap})")
    kit.check_services_target(kafka_bootstrap)
    control = kit.ClusterControl(kafka_bootstrap)
    try:
        yield control
    finally:
        listed = set(control.brokers())
        for n in (1, 2, 3):
            if n not in listed:
                control.start(n)


@pytest.fixture
def cluster_services(services: Services, cluster: ClusterControl) -> Services:
    """``services`` whose new topics have 3 replicas and ``min.insync.replicas=2``."""
    services.replication = 3
    services.topic_config = {"min.insync.replicas": "2"}
    return services


@pytest.fixture(autouse=True)
def _close_producers() -> Iterator[None]:
    """Each test starts without the previous test's Kafka producers (and their logs)."""
    yield
    from provider_events.publish._producer import shutdown_producers

    shutdown_producers(timeout=0)


# -- detached relays: none may outlive the test that started it, nor the suite ----------------
def stop_relays(root: Path, grace: float = 10.0) -> list[int]:
    """SIGTERM the relays under ``root`` (they stop after the batch in flight), SIGKILL what is
    left after ``grace`` seconds; returns the pids found."""
    pids = relay_processes(root)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline and relay_processes(root):
        time.sleep(0.1)
    for pid in relay_processes(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


@pytest.fixture(autouse=True)
def _stop_test_relays(request: pytest.FixtureRequest) -> Iterator[None]:
    """The detached relays a test started end with it (pointed at a dead address they would
    retry for minutes after the suite): those under its ``tmp_path``, and any other relay
    under pytest's temporary directories that appeared while it ran (module-scoped fixtures
    keep their state in ``tmp_path_factory`` directories)."""
    root = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    base = _pytest_basetemp(request.config)
    before = set(relay_processes(base)) if base is not None else set()
    yield
    if root is not None:
        stop_relays(root)
    if base is not None:
        stop_pids([pid for pid in relay_processes(base) if pid not in before])


def _pytest_basetemp(config: pytest.Config) -> Path | None:
    factory = getattr(config, "_tmp_path_factory", None)
    try:
        return None if factory is None else Path(factory.getbasetemp())
    except Exception:
        return None


def stop_pids(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM ``pids``, SIGKILL those still alive after ``grace`` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if Path(f"/proc/{pid}").exists() and _not_zombie(pid)]
        time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _not_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a detached relay started under pytest's temporary directories is still
    alive 15 s after the end (it is killed, so `make test` leaves none running)."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        root = factory.getbasetemp()
    except Exception:
        return
    # A relay that just delivered lingers a few seconds and exits by itself (relays of
    # module-scoped fixtures end here); one still running after that would run on.
    deadline = time.monotonic() + 15.0
    while relay_processes(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = stop_relays(root, grace=5.0)
    if left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"FAILED: {len(left)} detached relay process(es) still running at the end of "
                f"the suite (pids {left}); they were killed",
                red=True,
            )
