"""Test helpers shared by the suites (imported by conftest.py and by test modules).

Kept out of ``conftest.py`` so tests never import a module named ``conftest``: with more than
one conftest in the tree that name is ambiguous.

``provider_events`` is imported inside the helpers that need it, never at the top: conftest.py
imports this module before it puts this tree's ``src`` first on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from confluent_kafka import Message, Producer

    from provider_events.settings import Settings
    from provider_events.store._scratch import ScratchSchema

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parents[1]
#: ``provider-events`` as a child process.
CLI = [sys.executable, "-m", "provider_events.cli"]

__all__ = [
    "CLI",
    "IN_CI",
    "Kcat",
    "KcatMessage",
    "cli_env",
    "create_topic",
    "installed",
    "json_lines",
    "migrated_schema",
    "produce_waiting",
    "reachable",
    "read_topic",
    "run_cli",
    "settings_for",
    "terminate",
    "unavailable",
]


def reachable(host_port: str, timeout: float = 2.0) -> bool:
    host, _, port = host_port.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def unavailable(what: str) -> None:
    message = f"{what} is not reachable; start it with `make services`"
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def installed(tool: str, how: str) -> str:
    """Where ``tool`` is on PATH; without it the test is skipped (fails under ``CI=true``),
    saying ``how`` to install it."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed; {how}"
        if IN_CI:
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return path


def terminate(proc: subprocess.Popen[Any] | None, timeout: float = 20.0) -> None:
    """SIGTERM a child we started (by its own pid), then SIGKILL if it does not exit."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


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


def create_topic(
    bootstrap: str, name: str, partitions: int = 6, config: dict[str, str] | None = None
) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=30,
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


# -- the consumer's surroundings: settings, a migrated schema, a topic's messages -------------
def settings_for(bootstrap: str, topic: str) -> Settings:
    """Settings for ``bootstrap`` and ``topic`` alone: no process environment, no ``.env``."""
    from provider_events.settings import load_settings

    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PROVIDER_EVENTS_TOPIC": topic}
    return load_settings(environ=env, dotenv=Path("/nonexistent/.env"))


@contextmanager
def migrated_schema(database_url: str, prefix: str) -> Iterator[ScratchSchema]:
    """A throwaway schema with every migration applied, dropped afterwards; its DSN puts it
    first on ``search_path``."""
    from provider_events.store import migrate
    from provider_events.store._scratch import scratch_schema

    with scratch_schema(database_url, prefix) as schema:
        migrate(schema.dsn)
        yield schema


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offset per partition (only partitions with a commit)."""
    from confluent_kafka import Consumer, TopicPartition

    client = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        partitions = client.list_topics(topic, timeout=10).topics[topic].partitions
        tps = client.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
    finally:
        client.close()


def cli_env(dsn: str, bootstrap: str, topic: str) -> dict[str, str]:
    """The environment of a ``provider-events`` child (this tree's ``src``) aimed at ``topic``
    and the database ``dsn``."""
    return dict(
        os.environ,
        DATABASE_URL=dsn,
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        PROVIDER_EVENTS_TOPIC=topic,
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``provider-events ARGS`` as a child with ``env``, its output captured as text."""
    return subprocess.run(
        [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects a ``--json`` command printed, one a line, in order."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def produce_waiting(
    producer: Producer, topic: str, value: bytes | None, key: bytes | None, **kw: Any
) -> None:
    """``producer.produce``, waiting while librdkafka's local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key, **kw)
            return
        except BufferError:
            producer.poll(0.05)


def read_topic(
    bootstrap: str, topic: str, *, timeout: float = 30.0, config: dict[str, Any] | None = None
) -> list[Message]:
    """Every message of ``topic`` (all partitions, start to end) with a throwaway reader;
    ``config`` adds to the reader's configuration."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            **(config or {}),
        }
    )
    try:
        partitions = reader.list_topics(topic, timeout=30).topics[topic].partitions
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[Message] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"reading {topic} took over {timeout:g}s"
            msg = reader.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                at_end.add(msg.partition())  # type: ignore[arg-type]
                continue
            out.append(msg)
        return out
    finally:
        reader.close()


def relay_processes(root: Path) -> list[int]:
    """Pids of ``provider_events.cli relay --detached`` processes whose state directory or
    outbox lies under ``root`` (read from /proc: their command line and environment)."""
    found = []
    prefix = str(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"provider_events.cli" not in argv or b"--detached" not in argv:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            name, _, value = item.partition(b"=")
            if name in (b"PROVIDER_EVENTS_STATE_DIR", b"PROVIDER_EVENTS_OUTBOX") and (
                os.fsdecode(value).startswith(prefix)
            ):
                found.append(int(entry.name))
                break
    return found


def publisher_settings(bootstrap: str, topic: str, state: Path, **env: str) -> Settings:
    """Settings of an in-process publisher aimed at ``topic``, its outbox in ``state``, no
    detached relay, a 10 s delivery bound (``env`` overrides), from no process environment."""
    from provider_events.settings import load_settings

    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PROVIDER_EVENTS_TOPIC": topic,
        "PROVIDER_EVENTS_STATE_DIR": str(state),
        "PROVIDER_EVENTS_RELAY_AUTOSTART": "false",
        "PROVIDER_EVENTS_DELIVERY_TIMEOUT": "10",
        **env,
    }
    return load_settings(environ=environ, dotenv=state / "none.env")


def wait_hook_outcomes(state_dir: Path, limit: float = 60.0) -> None:
    """Wait until no outcomes job of the lean Claude Code hook is pending in ``state_dir``
    (each clears its session's ``outcomes_pending`` marker when it ends); fails after
    ``limit`` seconds with the hook log. A bounded wait, not a timed assertion."""
    deadline = time.monotonic() + limit
    folder = state_dir / "claude-sessions"
    while True:
        pending = []
        for path in folder.glob("*.json") if folder.is_dir() else ():
            try:
                doc = json.loads(path.read_bytes() or b"{}")
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and "outcomes_pending" in doc:
                pending.append(path.name)
        if not pending:
            return
        if time.monotonic() > deadline:
            log = state_dir / "hook.log"
            text = log.read_text() if log.exists() else ""
            pytest.fail(f"outcomes jobs still pending after {limit:g}s: {pending}\n{text}")
        time.sleep(0.05)
