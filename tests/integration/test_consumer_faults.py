"""Fault tests: the consumer SIGKILLed again and again, PostgreSQL restarted mid-stream.

Either way the table must end with exactly the published ``event_id`` set: no event lost,
none stored twice. The consumer runs as the real CLI in a child process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import KafkaError, Message, Producer

from provider_events.events._envelope import OutgoingEvent, build_provider_selection
from provider_events.publish._producer import kafka_config
from provider_events.settings import Settings
from provider_events.store._scratch import ScratchSchema
from tests.support import migrated_schema, produce_waiting, settings_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "dev" / "services.sh"


@pytest.fixture
def pg(database_url: str) -> Iterator[ScratchSchema]:
    """A throwaway, migrated schema; its DSN puts it first on search_path."""
    with migrated_schema(database_url, "test_faults") as schema:
        yield schema


def build(settings: Settings, n: int) -> list[OutgoingEvent]:
    """``n`` distinct events over ~200 correlation ids (so every partition gets some)."""
    cids = [f"req-{uuid.uuid4().hex[:12]}" for _ in range(200)]
    return [
        build_provider_selection(
            provider_name=("claude", "gemini-flash", "openai")[i % 3],
            model_name="model-x",
            correlation_id=cids[i % len(cids)],
            selection_reason="fault test",
            selection_criteria={"cost_per_token": 0.000001},
            settings=settings,
        )
        for i in range(n)
    ]


def produce(bootstrap: str, topic: str, events: list[OutgoingEvent], *, pace: float = 0.0) -> None:
    """Produce every event and wait for every acknowledgement (``pace``: seconds per 1,000)."""
    conf = kafka_config(settings_for(bootstrap, topic))
    conf.update({"message.timeout.ms": 120_000, "request.timeout.ms": 30_000})
    producer = Producer(conf)
    failed: list[str] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(str(err))

    for i, event in enumerate(events):
        produce_waiting(producer, topic, event.value, event.key, on_delivery=report)
        if pace and i % 1000 == 999:
            producer.poll(0)
            time.sleep(pace)
    assert producer.flush(120) == 0
    assert not failed, failed[:3]


def stored_ids(schema: ScratchSchema) -> list[str]:
    with psycopg.connect(schema.dsn, connect_timeout=5) as conn:
        return [str(r[0]) for r in conn.execute("SELECT event_id FROM provider_selection_events")]


def count(schema: ScratchSchema) -> int:
    try:
        with psycopg.connect(schema.dsn, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM provider_selection_events").fetchone()
        return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return -1  # PostgreSQL is down (the restart test)


def spawn(
    schema: ScratchSchema, bootstrap: str, topic: str, cwd: Path, *args: str
) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        DATABASE_URL=schema.dsn,
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        PROVIDER_EVENTS_TOPIC=topic,
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    cmd = [
        sys.executable,
        "-m",
        "provider_events.cli",
        "consume",
        "--metrics-port",
        "off",
        "--json",
        *args,
    ]
    return subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_until(
    predicate: Any, timeout: float, what: str, proc: subprocess.Popen[str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"consumer exited {proc.returncode} while waiting for {what}: {proc.stderr.read() if proc.stderr else ''}"
            )
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_sigkill_five_times_keeps_exactly_the_published_set(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema, tmp_path: Path
) -> None:
    """50,000 events, the consumer SIGKILLed 6 times mid-stream and restarted: each event once."""
    settings = settings_for(kafka_bootstrap, topic)
    events = build(settings, 50_000)
    published = {e.event_id for e in events}
    produce(kafka_bootstrap, topic, events[:25_000])
    late = threading.Thread(
        target=produce, args=(kafka_bootstrap, topic, events[25_000:]), kwargs={"pace": 0.15}
    )
    late.start()
    group, instance = f"g-{uuid.uuid4().hex}", f"i-{uuid.uuid4().hex[:8]}"
    # Static membership: a restart takes its partitions back without waiting for a session timeout.
    args = ("--group-id", group, "--instance-id", instance, "--batch-size", "500")
    rng = random.Random(4)
    kills = []
    try:
        for k in range(6):
            threshold = (k + 1) * 7_000
            proc = spawn(pg, kafka_bootstrap, topic, tmp_path, *args)
            try:
                wait_until(lambda t=threshold: count(pg) >= t, 90, f"{threshold} rows", proc)
                time.sleep(rng.uniform(0, 0.05))  # land anywhere in a batch
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
            finally:
                if proc.poll() is None:
                    proc.kill()
            kills.append(count(pg))
    finally:
        late.join(180)
    assert len(kills) == 6 and kills == sorted(kills) and kills[-1] < len(events), kills

    final = spawn(pg, kafka_bootstrap, topic, tmp_path, *args, "--until-idle", "3")
    _out, err = final.communicate(timeout=180)
    assert final.returncode == 0, err
    ids = stored_ids(pg)
    assert len(ids) == len(set(ids)) == len(published)
    assert set(ids) == published


@pytest.fixture
def postgres_control(database_url: str) -> Iterator[Any]:
    """Stops and starts the dev PostgreSQL; it is always running again after the test."""

    def run(command: str) -> None:
        subprocess.run([str(SERVICES), command], check=True, capture_output=True, timeout=180)

    try:
        yield run
    finally:
        deadline = time.monotonic() + 120
        while True:
            try:
                psycopg.connect(database_url, connect_timeout=3).close()
                break
            except psycopg.OperationalError:
                subprocess.run([str(SERVICES), "pg-start"], capture_output=True, timeout=180)
                assert time.monotonic() < deadline, "PostgreSQL did not come back"


def test_postgres_restart_mid_stream_keeps_exactly_the_published_set(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema, tmp_path: Path, postgres_control: Any
) -> None:
    """PostgreSQL stopped and started while events flow: the consumer waits, retries, loses nothing."""
    settings = settings_for(kafka_bootstrap, topic)
    events = build(settings, 20_000)
    published = {e.event_id for e in events}
    produce(kafka_bootstrap, topic, events[:8_000])
    late = threading.Thread(
        target=produce, args=(kafka_bootstrap, topic, events[8_000:]), kwargs={"pace": 0.3}
    )
    proc = spawn(
        pg,
        kafka_bootstrap,
        topic,
        tmp_path,
        "--group-id",
        f"g-{uuid.uuid4().hex}",
        "--batch-size",
        "500",
    )
    try:
        wait_until(lambda: count(pg) >= 2_000, 90, "the first rows", proc)
        late.start()
        postgres_control("pg-stop")
        time.sleep(2.0)  # the consumer keeps reading Kafka, fails to write, backs off
        assert proc.poll() is None, "the consumer must wait for PostgreSQL, not exit"
        postgres_control("pg-start")
        late.join(180)
        wait_until(lambda: count(pg) >= len(events), 120, "every event", proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        if late.is_alive():
            late.join(180)
    assert proc.returncode == 0, err
    kinds = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert "db_unavailable" in kinds and "db_recovered" in kinds, kinds
    assert kinds.index("db_unavailable") < kinds.index("db_recovered")
    ids = stored_ids(pg)
    assert len(ids) == len(set(ids)) == len(published)
    assert set(ids) == published
