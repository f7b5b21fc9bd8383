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
