"""``provider-events demo``: zero servers on a bare environment, and through Kafka and PostgreSQL.

The demo runs as a child process like ``make demo`` runs it, from an empty folder (no .env)
with an environment that names no service, then with both services and ``--via-kafka``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SERVICE_VARS = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "PROVIDER_EVENTS_TOPIC", "PGOPTIONS")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    env.update(
        {
            "PYTHONPATH": str(ROOT / "src"),
            "HOME": str(tmp_path / "home"),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "COLUMNS": "120",
        }
    )
    env.pop("PROVIDER_EVENTS_STATE_DIR", None)
    env.update(extra)
    return env


def _demo(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "provider_events.cli", "demo", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_demo_runs_on_the_embedded_default_with_nothing_configured(tmp_path: Path) -> None:
    """No services, no .env: a week goes to the local store, answers print, the report exists."""
    proc = _demo(tmp_path, _env(tmp_path), "--events", "3000")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    store = tmp_path / "state" / "provider-events" / "demo" / "events.sqlite3"
    report = store.parent / "report.html"
    assert "embedded default" in out and str(store) in out
    assert "Stored" in out and "Selections by provider" in out
    assert "Cheaper models" in out and "too little data" in out
    assert str(report) in out and report.stat().st_size > 20_000
    html = report.read_text(encoding="utf-8")
    assert html.count('<svg class="chart"') == 9  # the eight, and the measured cost
    assert 'data-chart="measured-cost"' in html and "Measured cost by provider" in html
    assert "Measured usage by provider" in out and "Imported" in out
    with sqlite3.connect(store) as conn:
        outcomes, priced = conn.execute(
            "SELECT count(*), count(cost_usd) FROM provider_outcomes"
        ).fetchone()
    assert outcomes > 300 and 0 < priced < outcomes  # some models have no price: unpriced


def test_demo_goes_through_kafka_and_the_consumer_into_postgres(
    tmp_path: Path, kafka_bootstrap: str, database_url: str
) -> None:
    """--via-kafka publishes, consumes into a demo schema, reads back and answers from it."""
    schema = f"provider_events_demo_{uuid.uuid4().hex[:8]}"
    env = _env(tmp_path, DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
    try:
        proc = _demo(tmp_path, env, "--via-kafka", "--events", "2000", "--schema", schema)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        out = proc.stdout
        assert "Read back from Kafka" in out and "from PostgreSQL" in out
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                f'SELECT count(*), count(DISTINCT event_id), count(kafka_offset) FROM "{schema}".'
                "provider_selection_events"
            ).fetchone()
            rolled = conn.execute(
                f'SELECT sum(selections) FROM "{schema}".provider_selection_rollup_hourly'
            ).fetchone()
        assert rows is not None and rows[0] > 1500 and rows[0] == rows[1] == rows[2]
        assert rolled is not None and rolled[0] == rows[0]
        assert f"{rows[0]:,} rows" in out
        assert "Measured usage by provider" in out
        with psycopg.connect(database_url) as conn:
            measured = conn.execute(
                f'SELECT sum(outcomes) FROM "{schema}".provider_outcomes_hourly'
            ).fetchone()
        assert measured is not None and measured[0] > 300
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
