"""Measured outcomes end to end: transcripts -> Kafka -> consumer -> PostgreSQL, and the same
``usage`` answer from PostgreSQL and from the embedded store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from provider_events.ingest._consumer import ConsumerOptions, IngestConsumer
from provider_events.settings import load_settings
from provider_events.usage._answers import BY, open_usage_store, usage_answer
from provider_events.usage._budgets import set_budget
from provider_events.usage._transcripts import import_transcripts
from tests.support import (
    cli_env,
    create_topic,
    migrated_schema,
    read_topic,
    run_cli,
    settings_for,
)
from tests.transcripts import standard_folder

pytestmark = pytest.mark.integration

SINCE = datetime(2025, 9, 1, tzinfo=UTC)
UNTIL = datetime(2025, 11, 1, tzinfo=UTC)


def test_outcomes_travel_through_kafka_into_postgresql_with_usage_parity(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    """Import publishes to the real broker (keyed by session), the consumer stores each
    outcome once (a second consumer pass and a re-import add nothing), invalid completion
    events are dead-lettered with their reason, and ``usage`` answers the same from
    PostgreSQL as from the local store fed from the same transcripts."""
    import uuid

    topic = create_topic(kafka_bootstrap, f"test.provider.usage.{uuid.uuid4().hex[:12]}")
    projects = tmp_path / "projects"
    expected = standard_folder(projects)
    state = tmp_path / "state-kafka"
    kafka = settings_for(kafka_bootstrap, topic).with_overrides(state_dir=state)
    summary = import_transcripts(kafka, [projects])
    assert summary.published == 5 and summary.statuses == {"delivered": 5}
    assert import_transcripts(kafka, [projects]).published == 0

    messages = read_topic(kafka_bootstrap, topic)
    assert len(messages) == 5
    assert {m.key() for m in messages} == {b"s1", b"s2"}
    # A hostile completion event on the same topic: dead-lettered as a schema violation.
    good = json.loads(messages[0].value())
    good["payload"]["input_tokens"] = -5
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, json.dumps(good).encode(), b"s1")
    producer.flush(30)

    with migrated_schema(database_url, "usage") as schema:
        opts = ConsumerOptions.from_settings(
            kafka, group_id=f"g-{uuid.uuid4().hex[:8]}", until_idle=3.0, max_messages=6
        )
        totals = IngestConsumer(kafka, opts, schema.dsn).run()
        assert (totals.messages, totals.inserted, totals.dead_lettered) == (6, 5, 1)
        dead = read_topic(kafka_bootstrap, opts.dlq_topic)
        assert [dict(m.headers())["dlq_reason"] for m in dead] == [b"schema"]

        # The same transcripts through a fresh state (re-read everything): still 5 rows.
        again = kafka.with_overrides(state_dir=tmp_path / "state-again")
        import_transcripts(again, [projects])
        opts2 = ConsumerOptions.from_settings(
            kafka, group_id=f"g-{uuid.uuid4().hex[:8]}", until_idle=3.0, max_messages=11
        )
        totals = IngestConsumer(kafka, opts2, schema.dsn).run()
        assert totals.inserted == 0
        with psycopg.connect(schema.dsn) as conn:
            n, parts = conn.execute(
                "SELECT count(*), count(kafka_partition) FROM provider_outcomes"
            ).fetchone()
            assert (n, parts) == (5, 5)

        pg_settings = load_settings(
            environ={"DATABASE_URL": schema.dsn}, dotenv=Path("/nonexistent/.env")
        )
        local_settings = load_settings(
            environ={
                "PROVIDER_EVENTS_SINK": "local",
                "PROVIDER_EVENTS_STATE_DIR": str(tmp_path / "local"),
            },
            dotenv=Path("/nonexistent/.env"),
        )
        import_transcripts(local_settings, [projects])
        now = datetime(2025, 10, 1, 12, tzinfo=UTC)
        for settings in (pg_settings, local_settings):
            store = open_usage_store(settings)
            try:
                set_budget(store, 0.01, None, None)
            finally:
                store.close()
        answers = {}
        for name, settings in (("pg", pg_settings), ("local", local_settings)):
            store = open_usage_store(settings)
            try:
                answers[name] = {
                    by: {
                        k: v
                        for k, v in usage_answer(store, SINCE, UNTIL, by, now=now).items()
                        if k != "store"
                    }
                    for by in BY
                }
            finally:
                store.close()
        assert answers["pg"] == answers["local"]
        totals_pg = answers["pg"]["day"]["totals"]
        assert totals_pg["outcomes"] == expected.outcomes
        assert totals_pg["input_tokens"] == expected.input_tokens
        assert totals_pg["cost_usd"] == pytest.approx(expected.cost_usd, abs=1e-12)
        budget = answers["pg"]["day"]["budgets"][0]
        assert budget["over"] and budget["today_usd"] == pytest.approx(0.02538, abs=1e-12)

        # The spend gauges /metrics serves: one pair per budget (today is the real today,
        # with no outcomes in it here).
        from provider_events.observability._spend import SpendCollector

        families = {f.name: f.samples for f in SpendCollector(schema.dsn).collect()}
        [daily] = families["provider_events_budget_daily_usd"]
        [spent] = families["provider_events_budget_spend_today_usd"]
        assert daily.labels == {"tenant": "*", "provider": "*"} and daily.value == 0.01
        assert spent.value == 0.0
        assert list(SpendCollector("postgresql://nobody@127.0.0.1:1/x").collect()) == []

        # The CLI on PostgreSQL gives the same JSON.
        env = cli_env(schema.dsn, kafka_bootstrap, topic)
        env["PROVIDER_EVENTS_STATE_DIR"] = str(tmp_path / "cli")
        out = run_cli(
            "usage",
            "--since",
            "2025-09-01",
            "--until",
            "2025-11-01",
            "--by",
            "model",
            "--json",
            env=env,
        )
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["totals"] == {k: v for k, v in answers["pg"]["model"]["totals"].items()}
        assert doc["rows"] == answers["pg"]["model"]["rows"]
