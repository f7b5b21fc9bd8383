"""The zero-config sink (``integrations._sink``): with nothing configured and nothing listening
at the default address, the hook's events go to the embedded store and ``stats`` shows them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from provider_events.integrations._sink import listening, zero_config_sink
from provider_events.settings import DEFAULT_BOOTSTRAP_SERVERS, load_settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "claude_code_2.1.197"


@pytest.fixture
def server() -> Iterator[str]:
    """A listening TCP socket on 127.0.0.1 (accepts, says nothing)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"  # closed once the block ends


def _unconfigured(tmp_path: Path, servers: str) -> object:
    """Settings as if nothing were configured, with the default address moved to ``servers``."""
    settings = load_settings({"HOME": str(tmp_path)}, dotenv=tmp_path / "no.env")
    assert settings.sources["sink"] == settings.sources["kafka_bootstrap_servers"] == "default"
    return replace(settings, kafka_bootstrap_servers=servers, state_dir=tmp_path / "state")


def test_nothing_configured_and_nothing_listening_is_the_embedded_store(tmp_path: Path) -> None:
    """The sink becomes ``local`` and ``sources`` says why."""
    chosen = zero_config_sink(_unconfigured(tmp_path, _closed_port()))
    assert chosen.sink == "local"
    assert chosen.sources["sink"].startswith("zero-config: nothing configured")


def test_a_listening_default_address_keeps_kafka(tmp_path: Path, server: str) -> None:
    """Something listening at the default address: Kafka, as configured by default."""
    assert zero_config_sink(_unconfigured(tmp_path, server)).sink == "kafka"


@pytest.mark.parametrize(
    "environ",
    [{"PROVIDER_EVENTS_SINK": "kafka"}, {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}],
)
def test_any_explicit_setting_is_obeyed_without_a_probe(
    environ: dict[str, str], tmp_path: Path
) -> None:
    """A configured sink or broker is used as it is (a broker that is down gets the outbox)."""
    env = {"HOME": str(tmp_path), "PROVIDER_EVENTS_STATE_DIR": str(tmp_path / "s"), **environ}
    settings = load_settings(env, dotenv=tmp_path / "no.env")
    assert zero_config_sink(settings) is settings
    assert not (tmp_path / "s" / "kafka-probe.json").exists()


def test_the_probe_is_cached(tmp_path: Path, server: str) -> None:
    """Within its lifetime the cached answer is reused; ``ttl=0`` probes again."""
    closed = _closed_port()
    assert listening(closed, tmp_path) is False
    doc = json.loads((tmp_path / "kafka-probe.json").read_text())
    assert (doc["servers"], doc["listening"]) == (closed, False)
    (tmp_path / "kafka-probe.json").write_text(json.dumps({**doc, "servers": server}))
    assert listening(server, tmp_path) is False  # the (doctored) cache answers
    assert listening(server, tmp_path, ttl=0) is True


def test_a_zero_config_hook_turn_shows_in_stats(tmp_path: Path) -> None:
    """The hook with no Kafka settings at all: its turn is in ``stats`` on the embedded store
    when nothing listens at the guide's default address, else in the outbox for that broker."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "PROVIDER_EVENTS_", "ANTHROPIC_", "CLAUDE_", "DATABASE_"))
    }
    env.update(
        HOME=str(home),
        PROVIDER_EVENTS_STATE_DIR=str(tmp_path / "state"),
        PROVIDER_EVENTS_RELAY_AUTOSTART="false",
        PYTHONPATH=str(ROOT / "src"),
    )
    transcript = tmp_path / "t.jsonl"
    transcript.write_bytes((FIXTURES / "transcript.jsonl").read_bytes())
    stop = json.loads((FIXTURES / "hook_payloads.jsonl").read_text().splitlines()[-2])
    assert stop["hook_event_name"] == "Stop"
    stop["transcript_path"] = str(transcript)
    cli = [sys.executable, "-m", "provider_events.cli"]
    done = subprocess.run(
        [*cli, "hook", "claude"], input=json.dumps(stop).encode(), env=env, cwd=home, timeout=60
    )
    assert done.returncode == 0
    expect_local = not listening(DEFAULT_BOOTSTRAP_SERVERS, tmp_path / "probe")
    stats = subprocess.run(
        [*cli, "stats", "--json"], env=env, cwd=home, capture_output=True, text=True, timeout=60
    )
    assert stats.returncode == 0, stats.stderr
    doc = json.loads(stats.stdout)
    assert doc["backend"] == "local"
    if expect_local:
        assert doc["total_selections"] == 1
        assert doc["groups"][0]["provider_name"] == "claude"
        assert not (tmp_path / "state" / "outbox.sqlite3").exists()
    else:  # a broker listens at localhost:29092 on this machine: the event waits for it
        assert doc["total_selections"] == 0
        assert (tmp_path / "state" / "outbox.sqlite3").exists()
