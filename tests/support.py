"""Test helpers shared by the suites (imported by conftest.py and by test modules).

Kept out of ``conftest.py`` so tests never import a module named ``conftest``: with more than
one conftest in the tree that name is ambiguous.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

__all__ = ["IN_CI", "Kcat", "KcatMessage", "create_topic", "reachable", "unavailable"]


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
