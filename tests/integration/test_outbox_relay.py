"""Never lose an event: outbox, relay and background mode against the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from provider_events import DeliveryStatus, Publisher, load_settings
from provider_events.publish._outbox import Outbox

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "publish_provider_selection.py"
CLI = [sys.executable, "-m", "provider_events.cli"]


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def outbox_of(env: dict[str, str]) -> Outbox:
    return Outbox(load_settings(environ=env).resolved_outbox_path)


def test_cli_outage_spools_then_relay_delivers(kafka_env, topic, kcat, broker) -> None:
    """Broker stopped: the CLI exits 1 within the bound with the event spooled; after a
    restart the relay delivers it and kcat reads the same event_id."""
    env = dict(kafka_env, PROVIDER_EVENTS_RELAY_AUTOSTART="false")
    broker.stop()
    try:
        started = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "--provider",
                "claude",
                "--model",
                "claude-3-5-sonnet-20241022",
                "--reason",
                "outage",
                "--correlation-id",
                "outage-1",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        elapsed = time.monotonic() - started
    finally:
        broker.start()
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "spooled"
    assert elapsed < 5 + 2  # the bound plus interpreter start-up
    assert outbox_of(env).pending() == 1
    relay = subprocess.run([*CLI, "relay"], capture_output=True, text=True, env=env, timeout=120)
    assert relay.returncode == 0, relay.stderr
    assert "delivered 1" in relay.stdout
    (msg,) = kcat.consume(topic)
    assert msg.envelope["event_id"] == result["event_id"] == msg.headers["event_id"]
    assert outbox_of(env).pending() == 0


def test_background_mode_returns_at_once_and_relay_autostarts(kafka_env, topic, kcat) -> None:
    """--background commits to the outbox, returns at once, and the detached relay delivers."""
    ids = []
    for i in range(5):
        proc = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "--provider",
                "p",
                "--model",
                f"m{i}",
                "--reason",
                "bg",
                "--correlation-id",
                "bg-1",
                "--background",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=kafka_env,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["status"] == "queued"
        ids.append(doc["event_id"])
    assert wait_until(lambda: outbox_of(kafka_env).pending() == 0, 60)
    msgs = [m for m in kcat.consume(topic) if m.key == "bg-1"]
    assert sorted(m.envelope["event_id"] for m in msgs) == sorted(ids)
    # one key, one partition, publishing order kept
    assert [m.envelope["payload"]["model_name"] for m in sorted(msgs, key=lambda m: m.offset)] == [
        f"m{i}" for i in range(5)
    ]


def test_sigkill_relay_mid_drain_loses_nothing(kafka_env, topic, kcat) -> None:
    """A relay killed with SIGKILL mid-drain loses nothing: a restart delivers the rest."""
    env = dict(kafka_env, PROVIDER_EVENTS_RELAY_AUTOSTART="false")
    settings = load_settings(environ=env)
    publisher = Publisher(settings)
    events = [
        publisher.build(
            provider_name="p", model_name="m", correlation_id=f"k{i % 50}", selection_reason=str(i)
        )
        for i in range(20_000)
    ]
    box = Outbox(settings.resolved_outbox_path, max_events=1_000_000, max_bytes=1 << 30)
    box.add(events)
    kills = 0
    for _ in range(3):
        relay = subprocess.Popen(
            [*CLI, "relay", "--batch-size", "500"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        before = box.pending()
        wait_until(
            lambda b=before, r=relay: box.pending() < b - 1000 or r.poll() is not None, 60, 0.02
        )
        if relay.poll() is None:
            relay.send_signal(signal.SIGKILL)
            kills += 1
        relay.wait()
    assert kills >= 2
    final = subprocess.run([*CLI, "relay"], capture_output=True, text=True, env=env, timeout=300)
    assert final.returncode == 0, final.stderr
    assert box.pending() == 0
    on_topic = {m.envelope["event_id"] for m in kcat.consume(topic, timeout=120)}
    assert on_topic == {e.event_id for e in events}


def test_64_processes_during_outage_all_delivered(kafka_env, topic, kcat, broker) -> None:
    """64 concurrent CLI processes x 100 events while the broker is stopped and restarted:
    every event_id ends on the topic and the outbox is empty."""
    env = dict(kafka_env, PROVIDER_EVENTS_DELIVERY_TIMEOUT="3")
    batches = []
    for p in range(64):
        lines = [
            json.dumps(
                {"provider": "p", "model": "m", "reason": f"{p}-{i}", "correlation_id": f"proc-{p}"}
            )
            for i in range(100)
        ]
        batches.append("\n".join(lines) + "\n")

    def publish(p: int) -> dict:
        args = [sys.executable, str(SCRIPT), "--batch", "-", "--json"]
        if p % 2:
            args.append("--background")
        proc = subprocess.run(
            args, input=batches[p], capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode in (0, 1), proc.stderr
        return json.loads(proc.stdout)

    broker.stop()
    try:
        with ThreadPoolExecutor(max_workers=64) as pool:
            first = list(pool.map(publish, range(32)))
    finally:
        broker.start()
    with ThreadPoolExecutor(max_workers=64) as pool:
        second = list(pool.map(publish, range(32, 64)))
    published = {eid for doc in first + second for eid in doc["event_ids"]}
    assert len(published) == 6400
    box = outbox_of(env)
    # the automatic relays deliver everything: no manual `relay` run to hide a failure
    assert wait_until(lambda: box.pending() == 0, 180), box.status()
    msgs = kcat.consume(topic, timeout=120)
    assert {m.envelope["event_id"] for m in msgs} == published
    # per-key order: each process's events are in its publishing order on the topic
    for p in range(64):
        reasons = [
            m.envelope["payload"]["selection_reason"]
            for m in sorted((m for m in msgs if m.key == f"proc-{p}"), key=lambda m: m.offset)
        ]
        seen: list[str] = []
        for r in reasons:  # redelivery may repeat an event; first occurrences keep the order
            if r not in seen:
                seen.append(r)
        assert seen == [f"{p}-{i}" for i in range(100)], p


def test_corrupted_outbox_cli_reports_one_line(kafka_env, tmp_path) -> None:
    """A corrupted outbox: the caller gets exit 1 and one clear line, not a traceback."""
    path = tmp_path / "bad.sqlite3"
    path.write_bytes(b"garbage" * 1000)
    env = dict(kafka_env, PROVIDER_EVENTS_OUTBOX=str(path))
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--provider",
            "p",
            "--model",
            "m",
            "--reason",
            "r",
            "--background",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "corrupted" in proc.stderr
    status = subprocess.run(
        [*CLI, "outbox", "status"], capture_output=True, text=True, env=env, timeout=60
    )
    assert status.returncode == 1 and "corrupted" in status.stderr


def test_async_publisher_spools_and_reports(kafka_env, broker) -> None:
    """The async Publisher returns SPOOLED (not an exception) during an outage."""
    import asyncio

    env = dict(os.environ, PROVIDER_EVENTS_RELAY_AUTOSTART="false")
    settings = load_settings(environ=env)
    broker.stop()
    try:
        result = asyncio.run(
            Publisher(settings).publish(
                provider_name="p", model_name="m", correlation_id="a1", selection_reason="r"
            )
        )
    finally:
        broker.start()
    assert result.status is DeliveryStatus.SPOOLED and result.accepted and not result.delivered
