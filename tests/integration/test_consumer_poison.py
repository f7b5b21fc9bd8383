"""Poison on the real broker and PostgreSQL: no message can stop the consumer (issue #15).

Each test reproduces one finding: an oversized message the DLQ refuses whole (a), the DLQ topic
equal to the input topic (b), a conflicting duplicate (c), forged ``dlq_*`` headers (d),
timestamps and numbers outside the bounds and a stored year-9999 event (f), an unreachable or
malformed DATABASE_URL (g); and one run over a topic holding every kind of poison.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from provider_events.events._envelope import build_provider_selection
from provider_events.ingest._consumer import ConsumerOptions, IngestConsumer, Totals
from provider_events.observability._metrics import REGISTRY
from provider_events.publish._producer import kafka_config
from provider_events.store._scratch import ScratchSchema
from tests.support import (
    cli_env,
    committed,
    migrated_schema,
    produce_waiting,
    read_topic,
    run_cli,
    settings_for,
)

pytestmark = pytest.mark.integration

OVERSIZED = 1_000_100  # over the producer's default message.max.bytes, under the broker's 1 MiB


@pytest.fixture
def pg(database_url: str) -> Iterator[ScratchSchema]:
    with migrated_schema(database_url, "test_poison") as schema:
        yield schema


def produce_raw(
    bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None, list[Any]]]
) -> None:
    """(key, value, headers) each, acknowledged; large values allowed up to the broker's max."""
    conf = kafka_config(settings_for(bootstrap, topic))
    conf.update({"message.max.bytes": 1_048_576, "linger.ms": 0})
    producer = Producer(conf)
    failed: list[str] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(str(err))

    for key, value, headers in messages:
        produce_waiting(producer, topic, value, key, headers=headers, on_delivery=report)
        producer.flush(60)  # in order, one at a time (a big one must not fail a batch)
    assert producer.flush(60) == 0
    assert not failed, failed


def event(bootstrap: str, topic: str, **fields: Any) -> tuple[bytes, bytes]:
    e = build_provider_selection(
        provider_name=fields.pop("provider_name", "claude"),
        model_name="model-x",
        selection_reason="poison test",
        selection_criteria=fields.pop("selection_criteria", {"latency_ms": 12345.5}),
        settings=settings_for(bootstrap, topic),
        **fields,
    )
    return e.key, e.value


def edited(value: bytes, edit: Any) -> bytes:
    doc = json.loads(value)
    edit(doc)
    return json.dumps(doc).encode()


def ingest(bootstrap: str, topic: str, schema: ScratchSchema, group: str, **opts: Any) -> Totals:
    options = ConsumerOptions(
        topic=topic, dlq_topic=f"{topic}.dlq", group_id=group, batch_timeout=0.3, **opts
    )
    return IngestConsumer(settings_for(bootstrap, topic), options, schema.dsn).run()


def rows(schema: ScratchSchema) -> int:
    with psycopg.connect(schema.dsn) as conn:
        got = conn.execute("SELECT count(*) FROM provider_selection_events").fetchone()
    return int(got[0]) if got else 0


def table_letters(schema: ScratchSchema) -> list[tuple[Any, ...]]:
    with psycopg.connect(schema.dsn) as conn:
        return conn.execute(
            "SELECT source_offset, reason, size_bytes, sha256, length(value_prefix) "
            "FROM provider_events_dead_letters ORDER BY source_offset"
        ).fetchall()


def headers_of(msg: Message) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in msg.headers() or [] if v is not None]  # type: ignore[misc]


def reason_of(msg: Message) -> str:
    return dict(headers_of(msg))["dlq_reason"].decode()


def create_small_dlq(bootstrap: str, name: str, max_bytes: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(
        name, num_partitions=1, replication_factor=1, config={"max.message.bytes": str(max_bytes)}
    )
    admin.create_topics([topic], operation_timeout=30)[name].result(60)


# -- a: one message can no longer stop ingest ---------------------------------------------
def test_oversized_message_becomes_a_bounded_dlq_record_and_ingest_moves_on(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema
) -> None:
    big = b'{"event_type":"omninode.agent.provider.selected.v1","pad":"' + b"x" * OVERSIZED
    big = big[:OVERSIZED]
    key, good = event(kafka_bootstrap, topic)
    produce_raw(kafka_bootstrap, topic, [(key, big, [("trace", b"t1")]), (key, good, [])])
    group = f"g-{uuid.uuid4().hex[:8]}"
    totals = ingest(kafka_bootstrap, topic, pg, group, max_messages=2)
    assert (totals.inserted, totals.dead_lettered, totals.dead_letter_table) == (1, 1, 0)
    assert rows(pg) == 1
    [dead] = read_topic(kafka_bootstrap, f"{topic}.dlq")
    record = json.loads(dead.value() or b"")
    assert record["size"] == OVERSIZED
    assert record["sha256"] == hashlib.sha256(big).hexdigest()
    assert record["reason"] == "too_large" == reason_of(dead)
    assert record["original_topic"] == topic and record["prefix_bytes"] == 4096
    assert dict(headers_of(dead))["dlq_bounded"] == b"1"
    assert len(dead.value() or b"") < 16_000
    assert sum(committed(kafka_bootstrap, group, topic).values()) == 2  # offsets moved on


def test_what_the_dlq_refuses_even_bounded_goes_to_the_dead_letter_table(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema
) -> None:
    create_small_dlq(kafka_bootstrap, f"{topic}.dlq", 1024)  # refuses the 4 KiB prefix too
    poison = b"not json at all " * 200
    key, good = event(kafka_bootstrap, topic)
    produce_raw(kafka_bootstrap, topic, [(b"k", poison, []), (key, good, [])])
    group = f"g-{uuid.uuid4().hex[:8]}"
    totals = ingest(kafka_bootstrap, topic, pg, group, max_messages=2)
    assert (totals.inserted, totals.dead_lettered, totals.dead_letter_table) == (1, 1, 1)
    [(_, reason, size, sha, prefix)] = table_letters(pg)
    assert (reason, size, sha, prefix) == (
        "bad_json",
        len(poison),
        hashlib.sha256(poison).hexdigest(),
        len(poison),
    )
    assert sum(committed(kafka_bootstrap, group, topic).values()) == 2
    # A redelivery (another group reading the same offsets) does not add a second row per group.
    ingest(kafka_bootstrap, topic, pg, group + "-again", max_messages=2)
    assert len(table_letters(pg)) == 2


# -- b: the DLQ topic must not be the input topic -------------------------------------------
def test_dlq_topic_equal_to_the_topic_is_refused_with_exit_2(
    database_url: str, kafka_bootstrap: str, tmp_path: Any
) -> None:
    env = cli_env(database_url, kafka_bootstrap, "same.topic")
    env["HOME"] = str(tmp_path)
    proc = run_cli("consume", "--dlq-topic", "same.topic", "--until-idle", "1", env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "--dlq-topic" in proc.stderr
    env["PROVIDER_EVENTS_DLQ_TOPIC"] = "same.topic"
    proc = run_cli("consume", "--until-idle", "1", env=env)
    assert proc.returncode == 2 and "PROVIDER_EVENTS_DLQ_TOPIC" in proc.stderr, proc.stderr
    with pytest.raises(Exception, match="dead-letter topic must differ"):
        ConsumerOptions(topic="t", dlq_topic="t")


# -- c + d: conflicting duplicates, forged reason headers -------------------------------------
def test_conflicting_duplicate_is_dead_lettered_and_counted_exact_one_is_silent(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema
) -> None:
    key, original = event(kafka_bootstrap, topic)
    conflicting = edited(original, lambda d: d["payload"].update(provider_name="openai"))
    other_tenant = edited(original, lambda d: d.update(tenant_id="globex"))
    before = REGISTRY.get_sample_value("provider_events_consumer_conflicting_duplicates_total")
    produce_raw(kafka_bootstrap, topic, [(key, original, [])])
    group = f"g-{uuid.uuid4().hex[:8]}"
    assert ingest(kafka_bootstrap, topic, pg, group, max_messages=1).inserted == 1
    produce_raw(
        kafka_bootstrap,
        topic,
        [(key, original, []), (key, conflicting, []), (key, other_tenant, [])],
    )
    totals = ingest(kafka_bootstrap, topic, pg, group, max_messages=3)
    assert (totals.inserted, totals.duplicates, totals.dead_lettered) == (0, 1, 2)
    dead = read_topic(kafka_bootstrap, f"{topic}.dlq")
    assert sorted(reason_of(m) for m in dead) == ["conflicting_duplicate"] * 2
    assert sorted(m.value() for m in dead) == sorted([conflicting, other_tenant])
    after = REGISTRY.get_sample_value("provider_events_consumer_conflicting_duplicates_total")
    assert (after or 0) - (before or 0) == 2
    assert rows(pg) == 1


def test_forged_dlq_headers_are_renamed_and_ours_are_the_only_reason(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema
) -> None:
    forged = [("dlq_reason", b"forged"), ("dlq_original_topic", b"elsewhere"), ("x", b"1")]
    produce_raw(kafka_bootstrap, topic, [(b"k", b"{not json", forged)])
    ingest(kafka_bootstrap, topic, pg, f"g-{uuid.uuid4().hex[:8]}", max_messages=1)
    [dead] = read_topic(kafka_bootstrap, f"{topic}.dlq")
    headers = headers_of(dead)
    assert [v for k, v in headers if k == "dlq_reason"] == [b"bad_json"]
    assert [v for k, v in headers if k == "dlq_original_topic"] == [topic.encode()]
    assert ("original_dlq_reason", b"forged") in headers
    assert ("original_dlq_original_topic", b"elsewhere") in headers and ("x", b"1") in headers


# -- f: bounds at ingest; analytics survive what is already stored ----------------------------
def test_out_of_bounds_timestamps_and_numbers_are_dead_lettered_with_their_reason(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema
) -> None:
    key, good = event(kafka_bootstrap, topic)

    def ts(field: str, when: str) -> Any:
        def edit(d: dict[str, Any]) -> None:
            (d["payload"] if field == "selected_at" else d)[field] = when

        return edit

    def fresh(d: dict[str, Any]) -> None:
        d["event_id"] = str(uuid.uuid4())

    def both(*edits: Any) -> Any:
        return lambda d: [e(d) for e in edits]

    poison = {
        "far-future selected_at": edited(
            good, both(fresh, ts("selected_at", "9999-12-31T23:30:00Z"))
        ),
        "envelope timestamp in 2999": edited(
            good, both(fresh, ts("timestamp", "2999-01-01T00:00:00Z"))
        ),
        "before 2000": edited(good, both(fresh, ts("selected_at", "1999-12-31T23:59:59Z"))),
        "underflow": edited(good, fresh).replace(b"12345.5", b"1e-400"),
        "subnormal": edited(good, fresh).replace(b"12345.5", b"1e-310"),
        "subnormal elsewhere": edited(
            good, both(fresh, lambda d: d["payload"]["selection_criteria"].update(x=1e-310))
        ),
    }
    produce_raw(kafka_bootstrap, topic, [(key, v, []) for v in poison.values()])
    totals = ingest(kafka_bootstrap, topic, pg, f"g-{uuid.uuid4().hex[:8]}", max_messages=6)
    assert (totals.inserted, totals.dead_lettered) == (0, 6)
    reasons = sorted(reason_of(m) for m in read_topic(kafka_bootstrap, f"{topic}.dlq"))
    assert reasons == ["non_normal_number"] * 3 + ["timestamp_out_of_range"] * 3


def test_a_stored_year_9999_event_does_not_crash_stats_or_report(
    kafka_bootstrap: str, pg: ScratchSchema, tmp_path: Any
) -> None:
    """Stored before the bounds existed (inserted directly): answers over an empty window."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO provider_selection_events (event_id, correlation_id, provider_name, "
            "model_name, selection_reason, selection_criteria, selected_at, namespace, source, "
            "event_timestamp) VALUES (gen_random_uuid(), 'c', 'claude', 'm', 'r', "
            """'{"latency_ms": 5}', '9999-12-31T23:30:00Z', 'n', 's', now())"""
        )
    env = cli_env(pg.dsn, kafka_bootstrap, "unused")
    env["HOME"] = str(tmp_path)
    for args in (
        ["stats", "--since", "2h", "--store", "postgresql"],
        ["stats", "--since", "2h", "--store", "postgresql", "--json"],
        ["report", "--since", "2h", "--store", "postgresql", "--html", str(tmp_path / "r.html")],
    ):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr


# -- g: an unreachable or malformed DATABASE_URL ---------------------------------------------
def test_until_idle_gives_up_when_postgresql_stays_unreachable(
    kafka_bootstrap: str, topic: str, tmp_path: Any
) -> None:
    dsn = "postgresql://someone:s3cr3t-pw@127.0.0.1:1/nodb"  # nothing listens on port 1
    env = cli_env(dsn, kafka_bootstrap, topic)
    env["HOME"] = str(tmp_path)
    started = time.monotonic()
    proc = run_cli("consume", "--until-idle", "2", "--metrics-port", "off", env=env, timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "unreachable" in proc.stderr
    assert "s3cr3t-pw" not in proc.stderr + proc.stdout
    assert 30 <= elapsed < 100


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://someone:s3cr3t-pw@127.0.0.1:47432x/db",
        "postgresql://someone:s3cr3t-pw@127.0.0.1:5432/db?sslmode=bogus",
        "host=127.0.0.1 port=99999 password=s3cr3t-pw",
    ],
)
def test_malformed_database_url_exits_2_naming_it_for_every_command(
    dsn: str, kafka_bootstrap: str, tmp_path: Any
) -> None:
    env = cli_env(dsn, kafka_bootstrap, "unused")
    env["HOME"] = str(tmp_path)
    for args in (
        ["migrate"],
        ["stats", "--store", "postgresql"],
        ["report", "--store", "postgresql", "--html", str(tmp_path / "r.html")],
        ["consume", "--until-idle", "1", "--metrics-port", "off"],
        ["doctor"],
    ):
        proc = run_cli(*args, env=env, timeout=60)
        assert proc.returncode == 2, (args, proc.returncode, proc.stdout, proc.stderr)
        assert "DATABASE_URL" in proc.stderr + proc.stdout, args
        assert "s3cr3t-pw" not in proc.stderr + proc.stdout, args
        assert "Traceback" not in proc.stderr, args


# -- every kind of poison in one run ---------------------------------------------------------
def test_one_run_over_every_kind_of_poison_accounts_for_every_message(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema
) -> None:
    key, first = event(kafka_bootstrap, topic)
    messages: list[tuple[bytes | None, bytes | None, list[Any]]] = [(key, first, [])]
    messages += [(*event(kafka_bootstrap, topic, provider_name=f"p{i}"), []) for i in range(20)]
    messages += [
        (b"k", b"x" * OVERSIZED, []),  # oversized: a bounded record
        (key, edited(first, lambda d: d["payload"].update(model_name="other")), []),  # conflict
        (
            key,
            edited(
                first,
                lambda d: (
                    d.update(event_id=str(uuid.uuid4()))
                    or d["payload"].update(selected_at="9999-12-31T23:30:00Z")
                ),
            ),
            [],
        ),  # far future
        (b"k", b'{"event_type": ', []),  # malformed
        (b"k", b'{"event_type":"\xff\xfe"}', []),  # bad UTF-8
        (b"k", None, []),  # tombstone
        (b"k", first.replace(b"12345.5", b"1e-400"), []),  # underflows to 0.0
    ]
    produce_raw(kafka_bootstrap, topic, messages)
    group = f"g-{uuid.uuid4().hex[:8]}"
    totals = ingest(kafka_bootstrap, topic, pg, group, until_idle=3)
    dlq = read_topic(kafka_bootstrap, f"{topic}.dlq")
    stored = rows(pg)
    table = len(table_letters(pg))
    assert stored == 21
    assert stored + len(dlq) + table == len(messages) == totals.messages
    assert sum(committed(kafka_bootstrap, group, topic).values()) == len(messages)


def test_consume_cli_survives_poison_then_exits_0(
    kafka_bootstrap: str, topic: str, pg: ScratchSchema, tmp_path: Any
) -> None:
    produce_raw(kafka_bootstrap, topic, [(b"k", b"y" * OVERSIZED, [])])
    env = cli_env(pg.dsn, kafka_bootstrap, topic)
    env["HOME"] = str(tmp_path)
    proc = run_cli(
        "consume", "--until-idle", "3", "--metrics-port", "off", "--json", env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    stopped = [json.loads(x) for x in proc.stdout.splitlines() if '"stopped"' in x][-1]
    assert stopped["dead_lettered"] == 1 and stopped["messages"] == 1


# -- e: bounded histograms, existing rows migrated --------------------------------------------
def test_migration_0004_rebins_existing_histograms_like_a_rebuild(database_url: str) -> None:
    """Rows stored under 0003 with extreme values: after 0004 every histogram has bins within
    [-1400, 1400] (plus the zero bin) and equals a rebuild from the raw rows."""
    from provider_events.store import ROLLUP_TABLES, discover, migrate
    from provider_events.store._scratch import scratch_schema

    with scratch_schema(database_url, "rebin") as schema:
        migrate(schema.dsn, migrations=discover()[:3])
        values = [0.0, 1e-100, 3e-50, 1e-13, 1e-6, 2.5, 1e12, 5e40, 1e100]
        with psycopg.connect(schema.dsn, autocommit=True) as conn:
            for i, v in enumerate(values):
                conn.execute(
                    "INSERT INTO provider_selection_events (event_id, correlation_id, "
                    "provider_name, model_name, selection_reason, selection_criteria, "
                    "selected_at, namespace, source, event_timestamp) VALUES (gen_random_uuid(), "
                    "'c', 'p', 'm', 'r', jsonb_build_object('latency_ms', %s::float8, "
                    "'cost_per_token', %s::float8), now() - interval '1 hour', 'n', 's', now())",
                    [v, values[-1 - i]],
                )
        migrate(schema.dsn)
        hist = [t for t in ROLLUP_TABLES if "_hist_" in t]
        with psycopg.connect(schema.dsn, autocommit=True) as conn:

            def snapshot() -> dict[str, list[Any]]:
                return {
                    t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3, 4").fetchall()
                    for t in hist
                }

            migrated = snapshot()
            conn.execute("SELECT provider_events_rebuild_rollups()")
            assert snapshot() == migrated
            [(lo, hi)] = conn.execute(
                "SELECT min(b), max(b) FROM provider_selection_hist_hourly, unnest(bins) b "
                "WHERE b <> -1000000"
            ).fetchall()
            assert (lo, hi) == (-1400, 1400)
