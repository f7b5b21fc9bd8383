"""The consumer against the real broker and PostgreSQL: rows, duplicates, dead letters, metrics,
SIGTERM, migrations and the guide's own aiokafka consumer example.

Every test uses a fresh topic and a throwaway PostgreSQL schema, so runs never see each other.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import (
    KafkaError,
    Message,
    Producer,
)
from prometheus_client.parser import text_string_to_metric_families

from provider_events import Publisher, load_settings
from provider_events.events._envelope import OutgoingEvent, build_provider_selection
from provider_events.ingest._consumer import ConsumerOptions, IngestConsumer, Totals
from provider_events.observability._metrics import REGISTRY, start_metrics_server
from provider_events.publish._producer import kafka_config
from provider_events.settings import Settings
from provider_events.store._scratch import ScratchSchema, scratch_schema
from tests.support import (
    cli_env,
    committed,
    json_lines,
    migrated_schema,
    produce_waiting,
    read_topic,
    run_cli,
    settings_for,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EVENT_TYPE = "omninode.agent.provider.selected.v1"


# -- helpers ---------------------------------------------------------------------------------
@pytest.fixture
def pg(database_url: str) -> Iterator[ScratchSchema]:
    """A throwaway, migrated schema; its DSN puts it first on search_path."""
    with migrated_schema(database_url, "test_consumer") as schema:
        yield schema


def build(settings: Settings, n: int, **fields: Any) -> list[OutgoingEvent]:
    base = {
        "provider_name": "gemini-flash",
        "model_name": "gemini-1.5-flash-002",
        "correlation_id": None,
        "selection_reason": "Cost-effective for high-volume pattern matching",
        "selection_criteria": {"cost_per_token": 0.000001, "latency_ms": 50},
    }
    base.update(fields)
    return [build_provider_selection(settings=settings, **base) for _ in range(n)]


def produce(
    bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes | None]], **kw: Any
) -> list[Message]:
    """Produce (key, value) pairs in order; returns the delivered messages (partition, offset)."""
    producer = Producer(
        kafka_config(settings_for(bootstrap, topic)) | {"message.timeout.ms": 30_000}
    )
    delivered: list[Message] = []
    failed: list[str] = []

    def report(err: KafkaError | None, msg: Message) -> None:
        (failed.append(str(err)) if err else delivered.append(msg))

    for key, value in items:
        produce_waiting(producer, topic, value, key, on_delivery=report, **kw)
    assert producer.flush(60) == 0
    assert not failed, failed
    return delivered


def produce_events(bootstrap: str, topic: str, events: list[OutgoingEvent]) -> list[Message]:
    return produce(bootstrap, topic, [(e.key, e.value) for e in events])


def ingest(bootstrap: str, topic: str, schema: ScratchSchema, group: str, **opts: Any) -> Totals:
    """Run the consumer in this process until ``max_messages`` or ``until_idle``."""
    options = ConsumerOptions(
        topic=topic, dlq_topic=f"{topic}.dlq", group_id=group, batch_timeout=0.3, **opts
    )
    return IngestConsumer(settings_for(bootstrap, topic), options, schema.dsn).run()


def table(schema: ScratchSchema) -> list[dict[str, Any]]:
    with psycopg.connect(schema.dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM provider_selection_events ORDER BY id").fetchall()


def headers_of(msg: Message) -> dict[str, bytes]:
    return {k: v for k, v in msg.headers() or [] if v is not None}  # type: ignore[misc]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- publish -> consume -> row ---------------------------------------------------------------
def test_published_event_becomes_one_row_equal_to_the_envelope(
    kafka_env: dict[str, str], kafka_bootstrap: str, topic: str, pg: ScratchSchema, kcat: Any
) -> None:
    """An event published by our Publisher is one row whose every column equals the envelope."""
    publisher = Publisher(load_settings())
    try:
        result = publisher.publish_sync(
            provider_name="claude",
            model_name="claude-3-5-sonnet-20241022",
            correlation_id="abc-123-def-456",  # the guide's own id: not a UUID, hence text
            causation_id="req-42",
            tenant_id="acme",
            selection_reason="High quality\twith a tab, a \\ backslash, a\nnewline and ünïcödé",
            selection_criteria={
                "quality_score": 0.95,
                "cost_per_token": 0.003,
                "tags": ["a", {"b": None}],
            },
        )
    finally:
        publisher.close()
    assert result.delivered, result
    totals = ingest(kafka_bootstrap, topic, pg, f"g-{uuid.uuid4().hex}", max_messages=1)
    assert (totals.messages, totals.inserted, totals.duplicates, totals.dead_lettered) == (
        1,
        1,
        0,
        0,
    )

    [message] = kcat.consume(topic)
    envelope, payload = message.envelope, message.envelope["payload"]
    [row] = table(pg)
    assert row["event_id"] == uuid.UUID(envelope["event_id"]) == uuid.UUID(result.event_id)
    assert row["correlation_id"] == envelope["correlation_id"] == "abc-123-def-456"
    assert row["provider_name"] == payload["provider_name"] == "claude"
    assert row["model_name"] == payload["model_name"]
    assert row["selection_reason"] == payload["selection_reason"]
    assert row["selection_criteria"] == payload["selection_criteria"]
    assert row["selected_at"] == _ts(payload["selected_at"])
    assert row["event_timestamp"] == _ts(envelope["timestamp"])
    assert row["tenant_id"] == envelope["tenant_id"] == "acme"
    assert row["namespace"] == envelope["namespace"]
    assert row["source"] == envelope["source"]
    assert row["causation_id"] == envelope["causation_id"] == "req-42"
    assert (row["kafka_partition"], row["kafka_offset"]) == (message.partition, message.offset)
    assert (
        row["id"] >= 1
        and abs((datetime.now(row["created_at"].tzinfo) - row["created_at"]).total_seconds()) < 300
    )


def test_same_event_twice_is_one_row(kafka_bootstrap: str, topic: str, pg: ScratchSchema) -> None:
    """A redelivered event (in one batch, and again after a commit) never becomes a second row."""
    settings = settings_for(kafka_bootstrap, topic)
    first, second = build(settings, 2)
    produce_events(kafka_bootstrap, topic, [first, second, first])  # duplicate within a batch
    group = f"g-{uuid.uuid4().hex}"
    before = sample("provider_events_consumer_duplicates_total")
    totals = ingest(kafka_bootstrap, topic, pg, group, max_messages=3)
    assert (totals.messages, totals.inserted, totals.duplicates) == (3, 2, 1)

    produce_events(kafka_bootstrap, topic, [first])  # and once more, in a later batch
    totals = ingest(kafka_bootstrap, topic, pg, group, max_messages=1)
    assert (totals.messages, totals.inserted, totals.duplicates) == (1, 0, 1)
    rows = table(pg)
    assert sorted(str(r["event_id"]) for r in rows) == sorted([first.event_id, second.event_id])
    assert sample("provider_events_consumer_duplicates_total") - before == 2


# -- dead letters ------------------------------------------------------------------------------
def test_poison_messages_go_to_the_dlq_and_the_partition_keeps_flowing(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema
) -> None:
    """Undecodable messages land in <topic>.dlq with reason and origin; good ones around them are stored."""
    settings = settings_for(kafka_bootstrap, topic)
    good = build(settings, 2)
    wrong_schema = json.loads(good[0].value)
    wrong_schema["event_id"] = "not-a-uuid"
    unknown = json.loads(good[1].value)
    unknown["event_type"] = "omninode.agent.something.else.v1"
    poison: list[tuple[str, bytes | None]] = [
        ("bad_json", b"\x00\x01 this is not JSON {"),
        ("bad_utf8", b"\xff\xfe not UTF-8"),
        ("bad_utf8", b'{"event_type": "\xff\xfe"}'),  # msgspec raises UnicodeDecodeError here
        ("schema", json.dumps(wrong_schema).encode()),
        ("unknown_event_type", json.dumps(unknown).encode()),
        ("too_large", b'{"event_type": "' + b"x" * 70_000 + b'"}'),
        ("bad_json", None),  # a tombstone
    ]
    items = (
        [(good[0].key, good[0].value)]
        + [(b"poison-key", v) for _, v in poison]
        + [(good[1].key, good[1].value)]
    )
    before = {r: sample("provider_events_consumer_dlq_total", reason=r) for r, _ in poison}
    # Everything on partition 0, in order: the poison sits between the two good events.
    delivered = produce(kafka_bootstrap, topic, items, partition=0, headers=[("trace", b"t-1")])
    group = f"g-{uuid.uuid4().hex}"
    totals = ingest(kafka_bootstrap, topic, pg, group, max_messages=len(items))

    assert (totals.messages, totals.inserted, totals.dead_lettered) == (len(items), 2, len(poison))
    assert sorted(str(r["event_id"]) for r in table(pg)) == sorted(e.event_id for e in good)
    assert committed(kafka_bootstrap, group, topic) == {0: delivered[-1].offset() + 1}

    dead = sorted(
        read_topic(kafka_bootstrap, f"{topic}.dlq"),
        key=lambda m: int(headers_of(m)["dlq_original_offset"]),
    )
    assert len(dead) == len(poison)
    for (reason, value), original, msg in zip(poison, delivered[1:-1], dead, strict=True):
        h = headers_of(msg)
        assert h["dlq_reason"].decode() == reason
        assert h["dlq_error"]
        assert h["dlq_original_topic"].decode() == topic
        assert h["dlq_original_partition"] == b"0"
        assert int(h["dlq_original_offset"]) == original.offset()
        assert h["dlq_consumer_group"].decode() == group
        assert h["trace"] == b"t-1"  # the original headers travel along
        assert (msg.key(), msg.value()) == (b"poison-key", value)
    for reason, _ in poison:
        expected = sum(1 for r, _ in poison if r == reason)
        assert (
            sample("provider_events_consumer_dlq_total", reason=reason) - before[reason] == expected
        )


# -- metrics -----------------------------------------------------------------------------------
def test_metrics_endpoint_reports_ingest(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema
) -> None:
    """/metrics serves the consumer counters, the batch histogram, lag per partition and selections."""
    settings = settings_for(kafka_bootstrap, topic)
    model = f"model-{uuid.uuid4().hex[:8]}"
    events = build(settings, 30, provider_name="openai", model_name=model)
    produce_events(kafka_bootstrap, topic, events)
    port = start_metrics_server(0)
    before = sample("provider_events_consumer_rows_inserted_total")
    totals = ingest(kafka_bootstrap, topic, pg, f"g-{uuid.uuid4().hex}", until_idle=2.5)
    assert totals.inserted == 30

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "provider_events_consumer_messages",
        "provider_events_consumer_rows_inserted",
        "provider_events_consumer_duplicates",
        "provider_events_consumer_dlq",
        "provider_events_consumer_batch_duration_seconds",
        "provider_events_consumer_lag_messages",
        "provider_selection",
        "provider_selection_duration_seconds",
        "provider_events_publish_failures",
        "provider_events_publish_spooled",
        "provider_events_outbox_pending_events",
        "provider_events_outbox_oldest_age_seconds",
    ):
        assert name in families, name
    selections = [
        s for s in families["provider_selection"].samples if s.labels.get("model") == model
    ]
    assert [(s.name, s.labels["provider"], s.value) for s in selections] == [
        ("provider_selection_total", "openai", 30.0)
    ]
    lag = {
        s.labels["partition"]: s.value
        for s in families["provider_events_consumer_lag_messages"].samples
        if s.labels["topic"] == topic
    }
    assert lag and set(lag.values()) == {0.0}, lag
    assert sample("provider_events_consumer_rows_inserted_total") - before == 30
    batches = families["provider_events_consumer_batch_duration_seconds"].samples
    assert any(s.name.endswith("_count") and s.value >= 1 for s in batches)


# -- the command line --------------------------------------------------------------------------
def test_sigterm_finishes_the_batch_commits_and_exits_0(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema, tmp_path: Path
) -> None:
    """SIGTERM mid-stream: exit 0, and everything written was committed (a restart re-reads nothing)."""
    settings = settings_for(kafka_bootstrap, topic)
    total = 20_000
    produce_events(kafka_bootstrap, topic, build(settings, total))
    group = f"g-{uuid.uuid4().hex}"
    cmd = [
        sys.executable,
        "-m",
        "provider_events.cli",
        "consume",
        "--group-id",
        group,
        "--batch-size",
        "100",
        "--metrics-port",
        "off",
        "--json",
    ]
    proc = subprocess.Popen(
        cmd,
        env=cli_env(pg.dsn, kafka_bootstrap, topic),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not table_count(pg):
            assert proc.poll() is None and time.monotonic() < deadline, (
                proc.stderr.read() if proc.stderr else ""
            )
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    stopped = json_lines(out)[-1]
    assert stopped["event"] == "stopped"
    assert 0 < stopped["messages"] < total, "the stop should land mid-stream"
    assert table_count(pg) == stopped["inserted"] == stopped["messages"]
    assert sum(committed(kafka_bootstrap, group, topic).values()) == stopped["messages"]

    rest = ingest(kafka_bootstrap, topic, pg, group, until_idle=2.0)
    assert (rest.messages, rest.duplicates) == (total - stopped["messages"], 0)
    assert table_count(pg) == total


def table_count(schema: ScratchSchema) -> int:
    with psycopg.connect(schema.dsn) as conn:
        row = conn.execute("SELECT count(*) FROM provider_selection_events").fetchone()
    return int(row[0]) if row else 0


def test_consume_cli_ingests_and_reports_json_lines(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema, tmp_path: Path
) -> None:
    """`provider-events consume --until-idle` stores everything and ends with a `stopped` line."""
    settings = settings_for(kafka_bootstrap, topic)
    produce_events(kafka_bootstrap, topic, build(settings, 500))
    env = cli_env(pg.dsn, kafka_bootstrap, topic)
    result = run_cli(
        "consume",
        "--group-id",
        f"g-{uuid.uuid4().hex}",
        "--until-idle",
        "1.5",
        "--metrics-port",
        "0",
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "metrics" and "started" in kinds and kinds[-1] == "stopped"
    assert events[-1]["inserted"] == 500 and events[-1]["dead_lettered"] == 0
    assert table_count(pg) == 500
    password = psycopg.conninfo.conninfo_to_dict(pg.dsn).get("password")
    assert not password or password not in result.stdout + result.stderr


def test_consume_without_the_table_says_run_migrate(
    kafka_bootstrap: str, topic: str, database_url: str, tmp_path: Path
) -> None:
    """An unmigrated database is a one-line error naming the fix, exit code 1."""
    with scratch_schema(database_url, "test_unmigrated") as bare:
        result = run_cli(
            "consume",
            "--until-idle",
            "1",
            "--metrics-port",
            "off",
            env=cli_env(bare.dsn, kafka_bootstrap, topic),
            cwd=tmp_path,
        )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "provider-events migrate" in result.stderr


def test_migrate_cli_is_idempotent_and_safe_concurrently(database_url: str, tmp_path: Path) -> None:
    """Three `migrate` processes at once apply each migration once; a rerun has nothing to do."""
    with scratch_schema(database_url, "test_migrate") as schema:
        env = dict(
            os.environ,
            DATABASE_URL=schema.dsn,
            PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "provider_events.cli", "migrate"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], outputs
        applied = [out for out, _ in outputs if "applied 0001_provider_selection_events" in out]
        assert len(applied) == 1, outputs
        again = run_cli("migrate", env=env, cwd=tmp_path)
        assert again.returncode == 0 and "up to date" in again.stdout
        status = run_cli("migrate", "--status", env=env, cwd=tmp_path)
        assert (
            "0001_provider_selection_events  applied" in status.stdout
            and "0 pending" in status.stdout
        )

        with psycopg.connect(schema.dsn) as conn:
            indexes = {
                r[0]
                for r in conn.execute(
                    "SELECT indexdef FROM pg_indexes WHERE tablename = 'provider_selection_events'"
                )
            }
            columns = dict(
                conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = 'provider_selection_events'"
                ).fetchall()
            )
            identity = conn.execute(
                "SELECT is_identity FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'provider_selection_events' AND column_name = 'id'"
            ).fetchone()
            conn.execute(
                "UPDATE provider_events_schema_migrations SET checksum = 'edited' WHERE version = 1"
            )
        assert identity == ("YES",)
        assert columns["id"] == "bigint" and columns["event_id"] == "uuid"
        assert columns["correlation_id"] == "text" and columns["selection_criteria"] == "jsonb"
        assert columns["selected_at"] == columns["event_timestamp"] == "timestamp with time zone"
        assert {
            "tenant_id",
            "namespace",
            "source",
            "causation_id",
            "kafka_partition",
            "kafka_offset",
        } <= set(columns)
        defs = " ".join(indexes)
        for fragment in (
            "(correlation_id)",
            "(provider_name)",
            "(selected_at DESC)",
            "(tenant_id, selected_at)",
            "UNIQUE INDEX provider_selection_events_event_id_key",
        ):
            assert fragment in defs, fragment
        drift = run_cli("migrate", env=env, cwd=tmp_path)
        assert drift.returncode == 1 and "changed after it was applied" in drift.stderr


# -- interop: the guide's aiokafka consumer, verbatim ------------------------------------------
def test_guide_consumer_example_prints_our_events(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    """examples/guide_consumer.py (the guide's code, unchanged) prints the fields of our events."""
    from aiokafka import codec

    settings = settings_for(kafka_bootstrap, topic)
    # The guide installs plain aiokafka, which reads only gzip (or uncompressed) record batches.
    compression = kafka_config(settings).get("compression.type", "none")
    readable = {
        "none": True,
        "gzip": codec.has_gzip(),
        "lz4": codec.has_lz4(),
        "snappy": codec.has_snappy(),
        "zstd": codec.has_zstd(),
    }
    assert readable.get(compression), (
        f"our producer compresses with {compression!r}, which the guide's aiokafka consumer "
        "cannot decode without extra codec packages: use compression.type gzip or none in "
        "provider_events.publish._producer.kafka_config"
    )
    env = dict(
        os.environ,
        GUIDE_TOPIC=topic,
        GUIDE_BOOTSTRAP_SERVERS=kafka_bootstrap,
        GUIDE_MAX_MESSAGES="1",
        GUIDE_TIMEOUT="60",
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "guide_consumer.py")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The example reads from the latest offset: publish until it has seen one of ours.
    reason = f"interop {uuid.uuid4().hex[:8]}"
    criteria = {"cost_per_token": 0.000001, "latency_ms": 50, "quality_score": 0.85}
    try:
        while proc.poll() is None:
            produce_events(
                kafka_bootstrap,
                topic,
                build(settings, 1, selection_reason=reason, selection_criteria=criteria),
            )
            time.sleep(0.5)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[:4] == [
        "Provider selected: gemini-flash",
        "Model: gemini-1.5-flash-002",
        f"Reason: {reason}",
        f"Criteria: {criteria}",
    ]
