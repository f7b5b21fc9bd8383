"""The guide's CLI without a broker: flags, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "publish_provider_selection.py"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        PROVIDER_EVENTS_STATE_DIR=str(tmp_path / "state"),
        PROVIDER_EVENTS_DELIVERY_TIMEOUT="1",
        PROVIDER_EVENTS_RELAY_AUTOSTART="false",
        HOME=str(tmp_path),
    )
    return e


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=env["HOME"],
    )


BASE = ["--provider", "p", "--model", "m", "--reason", "r"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--provider", "p", "--model", "m"], "--reason"),
        ([*BASE, "--criteria", "{oops"], "not valid JSON"),
        ([*BASE, "--criteria", "[1, 2]"], "must be a JSON object"),
        ([*BASE, "--criteria", '"text"'], "must be a JSON object"),
        ([*BASE, "--criteria", '{"quality_score": 7}'], "quality_score"),
        ([*BASE, "--criteria", '{"latency_ms": NaN}'], "not valid JSON"),
        ([*BASE, "--correlation-id", ""], "correlation_id"),
        ([*BASE, "--quiet", "--verbose"], "not allowed"),
    ],
)
def test_bad_input_exits_2_with_one_line(env, args, needle) -> None:
    """Bad input: exit 2 and one line on stderr naming the problem."""
    proc = run(env, *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert proc.stdout == ""


def test_unreachable_broker_exits_1_and_spools(env) -> None:
    """Broker unreachable: exit 1, one line saying the event is safe in the outbox."""
    proc = run(env, *BASE, "--correlation-id", "abc-123-def-456")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "outbox" in lines[0]
    status = subprocess.run(
        [sys.executable, "-m", "provider_events.cli", "outbox", "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(status.stdout)["pending"] == 1


def test_background_exits_0_quietly(env) -> None:
    """--background --quiet: exit 0, nothing printed, the event is in the outbox."""
    proc = run(env, *BASE, "--background", "--quiet")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_bad_configuration_exits_2(env) -> None:
    """A malformed setting is a one-line error naming it, exit 2."""
    env["KAFKA_BOOTSTRAP_SERVERS"] = "no-port"
    proc = run(env, *BASE)
    assert proc.returncode == 2 and "KAFKA_BOOTSTRAP_SERVERS" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_lists_the_guide_flags(env) -> None:
    """--help documents every flag the guide uses."""
    out = run(env, "--help").stdout
    for flag in (
        "--provider",
        "--model",
        "--reason",
        "--criteria",
        "--correlation-id",
        "--quiet",
        "--verbose",
        "--causation-id",
        "--background",
    ):
        assert flag in out


def test_a_malformed_consumer_setting_stops_consume_not_publish(env) -> None:
    """PROVIDER_EVENTS_BATCH_SIZE is the consumer's: consume exits 2 naming it, publish works."""
    env = {**env, "PROVIDER_EVENTS_BATCH_SIZE": "many", "PROVIDER_EVENTS_SINK": "local"}
    published = run(env, *BASE, "--json")
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["event_id"]
    consume = subprocess.run(
        [sys.executable, "-m", "provider_events.cli", "consume"],
        capture_output=True,
        text=True,
        env={**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        timeout=60,
    )
    assert consume.returncode == 2
    lines = consume.stderr.strip().splitlines()
    assert len(lines) == 1 and "PROVIDER_EVENTS_BATCH_SIZE" in lines[0], consume.stderr
    flagged = subprocess.run(  # a flag replaces the bad value: on to the next check
        [
            sys.executable,
            "-m",
            "provider_events.cli",
            "consume",
            "--batch-size",
            "10",
            "--max-messages",
            "0",
        ],
        capture_output=True,
        text=True,
        env={**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        timeout=60,
    )
    assert flagged.returncode == 2 and "PROVIDER_EVENTS_BATCH_SIZE" not in flagged.stderr
    assert "--max-messages" in flagged.stderr
