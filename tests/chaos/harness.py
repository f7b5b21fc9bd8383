"""The fault scenarios' shared harness: what they run against, the publisher processes that
drive them, and the checks every scenario ends with."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from provider_events import load_settings
from provider_events.publish._outbox import Outbox
from provider_events.publish._relay import relay_running
from tests.chaos import kit

ACCEPTED = {"delivered", "spooled", "queued"}


class Broker(Protocol):
    """The conftest ``broker`` fixture: controls the broker of ``KAFKA_BOOTSTRAP_SERVERS``."""

    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def start(self) -> None: ...


@dataclass
class Services:
    """What a scenario runs against: the broker, PostgreSQL and a scratch directory."""

    bootstrap: str
    database_url: str
    workdir: Path
    topics: list[str] = field(default_factory=list)
    #: of the topics :meth:`new_topic` makes (3 and min.insync.replicas=2 on the cluster)
    replication: int = 1
    topic_config: dict[str, str] = field(default_factory=dict)

    def new_topic(self, partitions: int = 6) -> str:
        """A fresh topic, deleted by :meth:`close`."""
        topic = kit.new_topic(
            self.bootstrap, partitions, replication=self.replication, config=self.topic_config
        )
        self.topics.append(topic)
        return topic

    def close(self) -> None:
        """Delete the topics made for the test, and the consumer's dead-letter topics."""
        kit.delete_topics(self.bootstrap, [*self.topics, *(f"{t}.dlq" for t in self.topics)])
        self.topics.clear()

    @property
    def state_dir(self) -> Path:
        """The publishers' state directory (their outbox)."""
        return self.workdir / "state"

    def publisher_env(self, topic: str, **overrides: str) -> dict[str, str]:
        """The environment of a publishing child: this broker, ``topic``, the outbox in
        :attr:`state_dir`; ``overrides`` win."""
        env = kit.child_env(
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            PROVIDER_EVENTS_TOPIC=topic,
            PROVIDER_EVENTS_STATE_DIR=str(self.state_dir),
        )
        env.pop("PROVIDER_EVENTS_OUTBOX", None)
        env.update(overrides)
        return env

    def outbox(self) -> Outbox:
        """The publishers' outbox, opened without bounds (to watch and drain it)."""
        return Outbox(self.state_dir / "outbox.sqlite3", max_events=10**9, max_bytes=1 << 40)

    def consumer(self, dsn: str, topic: str, extra: tuple[str, ...] = ()) -> kit.ConsumerProcess:
        """A ``provider-events consume`` child (not started) of a fresh group, into ``dsn``."""
        return kit.ConsumerProcess(
            dsn, self.bootstrap, topic, f"chaos-{uuid.uuid4().hex}", self.workdir, extra=extra
        )


@dataclass
class DriverRun:
    """The results the publisher processes wrote: what was accepted, refused, how long calls took."""

    accepted: list[str]
    statuses: dict[str, int]
    call_seconds: list[float]
    errors: list[str]
    #: (seconds, wall-clock start, statuses, why not delivered) of every call
    calls: list[tuple[float, float, dict[str, int], str]] = field(default_factory=list)

    def over(self, bound: float) -> list[tuple[float, float, dict[str, int], str]]:
        """Calls that took longer than ``bound`` seconds, slowest first."""
        return sorted((c for c in self.calls if c[0] > bound), reverse=True)


def start_drivers(
    env: dict[str, str],
    out_dir: Path,
    publishers: int,
    per_publisher: int,
    tag: str = "",
    **opts: Any,
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """Start ``publishers`` driver processes (``publisher_driver.py``), ``per_publisher`` each;
    publisher ``p`` uses correlation ids ``p<p>-<n>``."""
    procs = []
    for p in range(publishers):
        out = out_dir / f"driver{tag}-{p}.jsonl"
        args = [sys.executable, str(kit.DRIVER), "--count", str(per_publisher), "--out", str(out)]
        args += ["--cid-prefix", f"p{p}"]
        for name, value in opts.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        log = (out_dir / f"driver-{p}.log").open("wb")
        procs.append((subprocess.Popen(args, env=env, stdout=log, stderr=log), out))
    return procs


def finish_drivers(procs: list[tuple[subprocess.Popen[bytes], Path]], timeout: float) -> DriverRun:
    deadline = time.monotonic() + timeout
    for proc, out in procs:
        try:
            code = proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other, _ in procs:
                other.kill()
            raise AssertionError(f"publisher {out.name} still running after {timeout:g}s") from None
        log = out.with_suffix(".log")
        assert code == 0, f"publisher exited {code}: {log.read_text(errors='replace')[-2000:]}"
    run = DriverRun([], {}, [], [])
    for _, out in procs:
        for line in out.read_text().splitlines():
            doc = json.loads(line)
            run.call_seconds.append(doc["s"])
            kinds: dict[str, int] = {}
            for status in doc["st"]:
                kinds[status] = kinds.get(status, 0) + 1
            run.calls.append((doc["s"], doc["at"], kinds, doc.get("why") or ""))
            if doc["error"]:
                run.errors.append(doc["error"])
            for eid, status in zip(doc["ids"], doc["st"], strict=True):
                run.statuses[status] = run.statuses.get(status, 0) + 1
                if status in ACCEPTED:
                    run.accepted.append(eid)
    return run


class Sampler:
    """Samples the outbox backlog and the table's row count in the background."""

    def __init__(self, outbox_path: Path, dsn: str | None, interval: float = 0.25) -> None:
        self.outbox_path = outbox_path
        self.dsn = dsn
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []  # (monotonic, outbox pending, rows)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        box = Outbox(self.outbox_path, max_events=10**9, max_bytes=1 << 40)
        while not self._stop.wait(self.interval):
            pending = -1
            with suppress(Exception):  # the file may not exist yet, or be busy
                pending = box.pending()
            rows = kit.table_count(self.dsn) if self.dsn else -1
            self.samples.append((time.monotonic(), pending, rows))
        box.close()

    @property
    def peak_backlog(self) -> int:
        return max((s[1] for s in self.samples), default=0)

    def relay_resumed_after(self, since: float) -> float | None:
        """Seconds from ``since`` until the backlog was first seen shrinking (the relay sending
        again, rather than sleeping out its backoff)."""
        previous = None
        for t, pending, _ in self.samples:
            if t >= since and previous is not None and 0 <= pending < previous:
                return t - since
            previous = pending if pending >= 0 else previous
        return None

    def backlog_cleared_after(self, since: float) -> float | None:
        """Seconds from ``since`` until the outbox was first seen empty."""
        for t, pending, _ in self.samples:
            if t >= since and pending == 0:
                return t - since
        return None


def drain_outbox(env: dict[str, str], outbox: Outbox, timeout: float) -> bool:
    """Wait for the automatic (detached) relay to empty the outbox; fail if it does not in
    ``timeout`` seconds. There is no manual fallback: a broken automatic relay fails the
    scenario. Returns ``False`` (no manual relay run), kept for the scenarios' reports."""
    try:
        kit.wait_until(lambda: outbox.pending() == 0, timeout, "the relay to drain the outbox", 0.2)
    except AssertionError:
        status = kit.cli(env, "outbox", "status", "--json", timeout=60)
        raise AssertionError(
            f"the automatic relay left {outbox.pending()} event(s) after {timeout:g}s: "
            f"{status.stdout.strip()[:2000]}"
        ) from None
    return False


def wait_relay_exit(env: dict[str, str], timeout: float = 30.0) -> None:
    settings = load_settings(environ=env, dotenv=Path("/nonexistent/.env"))
    kit.wait_until(lambda: not relay_running(settings), timeout, "the detached relay to exit", 0.2)


def check_exact(dsn: str, accepted: list[str]) -> dict[str, int]:
    """Assert the table holds each accepted event exactly once and nothing else."""
    ids = kit.table_ids(dsn)
    stored, published = set(ids), set(accepted)
    missing, extra = published - stored, stored - published
    duplicates = len(ids) - len(stored)
    assert len(published) == len(accepted), "an event id was published twice"
    assert not missing, (
        f"{len(missing)} accepted events missing from PostgreSQL, e.g. {sorted(missing)[:3]}"
    )
    assert not extra, f"{len(extra)} rows that were never published, e.g. {sorted(extra)[:3]}"
    assert duplicates == 0, f"{duplicates} duplicate rows"
    return {"rows_in_pg": len(ids), "missing": len(missing), "duplicates_in_pg": duplicates}
