"""`provider-events doctor` performs the guide's troubleshooting steps on real services."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "provider_events.cli", "doctor"]


def test_all_checks_pass_against_running_services(kafka_env, database_url, topic) -> None:
    """With Kafka and PostgreSQL up, the metadata round trip and topic checks pass."""
    env = dict(kafka_env, DATABASE_URL=database_url)
    proc = subprocess.run([*CLI, "--json"], capture_output=True, text=True, env=env, timeout=60)
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert checks["kafka metadata"]["ok"], checks["kafka metadata"]
    assert checks[f"topic {topic}"]["ok"] and "6 partition(s)" in checks[f"topic {topic}"]["detail"]
    assert "environment (KAFKA_BOOTSTRAP_SERVERS)" in checks["bootstrap servers"]["detail"]
    assert checks["database"]["ok"] and "PostgreSQL" in checks["database"]["detail"]
    assert checks["outbox"]["ok"]


def test_failures_have_hints_and_no_secrets(state_dir, monkeypatch, tmp_path) -> None:
    """Unreachable services fail with a hint; passwords never appear in the output."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1\n")
    env = {
        **dict(__import__("os").environ),
        "DATABASE_URL": "postgresql://someone:Zebra-Pass-81@127.0.0.1:1/nothing",
        "KAFKA_SASL_PASSWORD": "Kafka-Secret-77",
        "PROVIDER_EVENTS_DELIVERY_TIMEOUT": "1",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    proc = subprocess.run(CLI, capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert "FAIL  kafka metadata" in out and "hint: is the broker running?" in out
    assert "(from .env" in out
    assert "FAIL  database" in out and "********" in out
    assert "Zebra-Pass-81" not in out and "Kafka-Secret-77" not in out


def test_consumer_settings_are_shown_with_their_source(state_dir, tmp_path) -> None:
    """doctor shows what `consume` would use, where each came from, and no secret."""
    (tmp_path / ".env").write_text("PROVIDER_EVENTS_CONSUMER_GROUP=group-from-dotenv\n")
    env = {
        **dict(__import__("os").environ),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "PROVIDER_EVENTS_DELIVERY_TIMEOUT": "1",
        "PROVIDER_EVENTS_TOPIC": "doctor.topic",
        "PROVIDER_EVENTS_BATCH_SIZE": "1234",
        "PROVIDER_EVENTS_METRICS_PORT": "off",
        "DATABASE_URL": "postgresql://someone:Zebra-Pass-81@127.0.0.1:1/nothing",
    }
    env.pop("PROVIDER_EVENTS_CONSUMER_GROUP", None)
    proc = subprocess.run(
        [*CLI, "--json"], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path
    )
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    detail = checks["consumer settings"]["detail"]
    assert checks["consumer settings"]["ok"]
    assert "group group-from-dotenv (from .env" in detail
    assert "batch size 1234 (from environment (PROVIDER_EVENTS_BATCH_SIZE))" in detail
    assert "batch timeout 1 s," in detail and "metrics port off (from environment" in detail
    assert "dead-letter topic doctor.topic.dlq," in detail and "metrics address 127.0.0.1" in detail
    assert "Zebra-Pass-81" not in proc.stdout + proc.stderr


def test_isr_below_min_insync_replicas_is_reported(
    kafka_bootstrap, state_dir, monkeypatch, tmp_path
) -> None:
    """A topic with one replica and min.insync.replicas=2 (acks=all is refused there) fails
    the replication check, naming the partitions; the healthy topics around it pass."""
    import uuid

    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"test.doctor.minisr.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    new = NewTopic(
        name, num_partitions=3, replication_factor=1, config={"min.insync.replicas": "2"}
    )
    admin.create_topics([new], operation_timeout=30)[name].result(timeout=60)
    try:
        env = {
            **dict(__import__("os").environ),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "PROVIDER_EVENTS_TOPIC": name,
        }
        proc = subprocess.run(
            [*CLI, "--json"], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path
        )
        checks = {c["name"]: c for c in json.loads(proc.stdout)}
        check = checks[f"replication {name}"]
        assert not check["ok"] and proc.returncode == 1
        assert (
            "3 of 3 partition(s) with ISR below min.insync.replicas=2 (smallest ISR 1)"
            in (check["detail"])
        )
        assert "NOT_ENOUGH_REPLICAS" in check["hint"]
    finally:
        admin.delete_topics([name], operation_timeout=30)[name].result(timeout=60)
