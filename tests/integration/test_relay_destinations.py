"""The hook path on its own, on the real broker: one relay per destination, bounded relay
lifecycle, an honest batch report, quarantined poison, streamed batch input."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider_events import load_settings
from provider_events.publish._outbox import Outbox
from provider_events.publish._relay import destination_of
from tests.support import create_topic, relay_processes

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "provider_events.cli"]
DEAD = "127.0.0.1:1"


def cli(env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120):
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout
    )


def publish_bg(env: dict[str, str], reason: str, cid: str = "k") -> str:
    proc = cli(
        env,
        "publish",
        "--background",
        "--json",
        "--provider",
        "p",
        "--model",
        "m",
        "--reason",
        reason,
        "--correlation-id",
        cid,
    )
    assert proc.returncode == 0, proc.stderr
    return str(json.loads(proc.stdout)["event_id"])


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def outbox(env: dict[str, str]) -> Outbox:
    return Outbox(load_settings(environ=env).resolved_outbox_path)


def key_of(env: dict[str, str]) -> str:
    return destination_of(load_settings(environ=env)).key


def test_dead_address_relay_does_not_hold_live_events(kafka_env, topic, kcat, tmp_path) -> None:
    """A relay stuck on a mistyped address: events published afterwards with the right address
    reach the broker within 5 s; `relay` answers per destination; the stuck relay gives up by
    itself; `outbox retarget` moves the stranded event to the live broker."""
    dead = dict(kafka_env, KAFKA_BOOTSTRAP_SERVERS=DEAD, PROVIDER_EVENTS_RELAY_GIVE_UP="6")
    stranded = publish_bg(dead, "mistyped address")
    assert wait_until(lambda: relay_processes(tmp_path), 10), "no relay for the dead address"
    started = time.monotonic()
    live = [publish_bg(kafka_env, f"live {i}") for i in range(5)]
    box = outbox(kafka_env)
    assert wait_until(lambda: box.pending() == 1, 30)
    on_topic = {m.envelope["event_id"] for m in kcat.consume(topic)}
    elapsed = time.monotonic() - started
    assert on_topic == set(live)
    assert elapsed < 5 + 5 * 1.5, elapsed  # 5 s, plus the five publishing processes' start-up
    # `relay` for the live destination: nothing pending there -> exit 0
    ok = cli(kafka_env, "relay")
    assert ok.returncode == 0, ok.stderr
    # for the dead one: it waits (bounded) for the running relay, then says how many are left
    stuck = cli(dead, "relay", "--wait", "1")
    assert stuck.returncode == 1
    assert "1 pending" in stuck.stderr and len(stuck.stderr.strip().splitlines()) == 1
    # the detached relay for the dead address gives up and exits on its own
    assert wait_until(lambda: not relay_processes(tmp_path), 6 + 5 + 20), "relay never gave up"
    # ... and the next publish for that destination starts a new one
    publish_bg(dead, "after the give-up")
    assert wait_until(lambda: relay_processes(tmp_path), 10), "no new relay after the give-up"
    stranded_ids = {stranded, *(r.event_id for r in box.batch(10))}
    status = json.loads(cli(kafka_env, "outbox", "status", "--json").stdout)
    (row,) = [d for d in status["destinations"] if d["pending"]]
    assert row["pending"] == 2
    assert row["key"] == key_of(dead) and row["servers"] == DEAD and row["last_error"]
    moved = cli(kafka_env, "outbox", "retarget", "--from", key_of(dead))
    assert moved.returncode == 0 and "moved 2 event" in moved.stdout, moved.stderr
    assert wait_until(lambda: box.pending() == 0, 30)
    assert {m.envelope["event_id"] for m in kcat.consume(topic)} == {*live, *stranded_ids}
    log = cli(kafka_env, "outbox", "log").stdout
    assert "retarget: 2 event(s) moved" in log


def test_burst_of_30_starts_one_relay(kafka_env, topic, kcat, tmp_path) -> None:
    """30 --background publishes in a row start at most 2 relay processes (counted from
    /proc while they run), and every event arrives exactly once."""
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(relay_processes(tmp_path))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        ids = [publish_bg(kafka_env, f"burst {i}", cid=f"b{i % 3}") for i in range(30)]
        box = outbox(kafka_env)
        assert wait_until(lambda: box.pending() == 0, 60)
    finally:
        done.set()
        watcher.join()
    print(f"relay processes for a burst of 30: {len(seen)}")
    assert 1 <= len(seen) <= 2, seen
    msgs = kcat.consume(topic)
    assert sorted(m.envelope["event_id"] for m in msgs) == sorted(ids)
    # it lingers, then exits by itself
    assert wait_until(lambda: not relay_processes(tmp_path), 30)


def _batch(n: int) -> str:
    return "".join(
        json.dumps({"provider": "p", "model": "m", "reason": f"r{i}", "correlation_id": f"c{i}"})
        + "\n"
        for i in range(n)
    )


def test_batch_with_full_outbox_says_not_stored(kafka_env) -> None:
    """Broker unreachable and the outbox bounded to 5: none of 10 events can be stored; the
    batch says so (exit 1, lines named) and never claims they are safe."""
    env = dict(
        kafka_env,
        KAFKA_BOOTSTRAP_SERVERS=DEAD,
        PROVIDER_EVENTS_OUTBOX_MAX_EVENTS="5",
        PROVIDER_EVENTS_DELIVERY_TIMEOUT="1",
        PROVIDER_EVENTS_RELAY_AUTOSTART="false",
    )
    proc = cli(env, "publish", "--batch", "-", stdin=_batch(10))
    assert proc.returncode == 1
    assert "10 failed and NOT stored (lines 1-10" in proc.stderr
    assert "safe" not in proc.stderr
    assert outbox(env).pending() == 0
    as_json = cli(env, "publish", "--batch", "-", "--json", stdin=_batch(3))
    doc = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and doc["counts"] == {"spooled": 3}
    assert doc["lines"] == {"spooled": [[1, 3]]}


def test_batch_with_broker_down_is_in_the_outbox(kafka_env) -> None:
    """Broker unreachable: the batch reports its events spooled, and they are in the outbox
    under the destination they were meant for."""
    env = dict(
        kafka_env,
        KAFKA_BOOTSTRAP_SERVERS=DEAD,
        PROVIDER_EVENTS_DELIVERY_TIMEOUT="1",
        PROVIDER_EVENTS_RELAY_AUTOSTART="false",
    )
    proc = cli(env, "publish", "--batch", "-", "--json", stdin=_batch(10))
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["counts"] == {"spooled": 10} and "safe in the outbox" in proc.stderr
    box = Outbox(load_settings(environ=env).resolved_outbox_path)
    rows = box.batch(100)
    assert sorted(r.event_id for r in rows) == sorted(doc["event_ids"])
    status = box.status()
    assert [(d.key, d.pending) for d in status.destinations] == [(key_of(env), 10)]


def test_poisoned_batch_quarantined_rest_delivered_once(kafka_env, kafka_bootstrap, kcat) -> None:
    """One event the broker refuses (over the topic's max.message.bytes) among events of the
    same key: it is quarantined, every other event is on the topic exactly once, `relay`
    returns 0, and `outbox status/quarantine/export/requeue` show and handle it."""
    topic = create_topic(
        kafka_bootstrap, f"test.small.{uuid.uuid4().hex[:10]}", 1, {"max.message.bytes": "2000"}
    )
    env = dict(kafka_env, PROVIDER_EVENTS_TOPIC=topic, PROVIDER_EVENTS_RELAY_AUTOSTART="false")
    reasons = ["before", "x" * 3000, "after 1", "after 2", "after 3"]
    ids = [publish_bg(env, r, cid="same-key") for r in reasons]
    started = time.monotonic()
    relay = cli(env, "relay", timeout=120)
    assert relay.returncode == 0, relay.stderr
    assert time.monotonic() - started < 60
    assert "1 quarantined" in relay.stdout
    msgs = kcat.consume(topic)
    delivered = [m.envelope["event_id"] for m in sorted(msgs, key=lambda m: m.offset)]
    assert delivered == [ids[0], *ids[2:]]  # each exactly once, in order
    status = json.loads(cli(env, "outbox", "status", "--json").stdout)
    assert status["quarantined"] == 1 and status["pending"] == 0
    listed = cli(env, "outbox", "quarantine")
    assert ids[1] in listed.stdout and "MSG_SIZE_TOO_LARGE" in listed.stdout
    exported = [json.loads(line) for line in cli(env, "outbox", "export").stdout.splitlines()]
    assert [e["event_id"] for e in exported] == [ids[1]]
    assert json.loads(exported[0]["value"])["payload"]["selection_reason"] == "x" * 3000
    requeued = cli(env, "outbox", "--event-id", ids[1], "requeue")  # options in any order
    assert requeued.returncode == 0 and "requeued 1" in requeued.stdout
    again = cli(env, "relay")
    assert again.returncode == 0 and "1 quarantined" in again.stdout
    assert len(kcat.consume(topic)) == 4


def test_publish_time_validation_spools_nothing(kafka_env) -> None:
    """An invalid topic name or an event over KAFKA_MESSAGE_MAX_BYTES: exit 2, one line,
    nothing spooled (background and sync alike)."""
    for extra, args in (
        ({"PROVIDER_EVENTS_TOPIC": "bad topic!"}, []),
        ({"PROVIDER_EVENTS_TOPIC": "t" * 250}, []),
        ({"KAFKA_MESSAGE_MAX_BYTES": "2000"}, ["--reason", "y" * 3000]),
    ):
        env = dict(kafka_env, **extra)
        for mode in (["--background"], []):
            proc = cli(
                env, "publish", "--provider", "p", "--model", "m", "--reason", "r", *args, *mode
            )
            assert proc.returncode == 2, (extra, proc.stderr)
            assert len(proc.stderr.strip().splitlines()) == 1
            assert "Traceback" not in proc.stderr
    assert outbox(kafka_env).pending() == 0


def _padded_lines(total: int, width: int) -> Iterator[bytes]:
    line = json.dumps({"provider": "p", "model": "m", "reason": "big input"}).encode()
    padded = line + b" " * (width - len(line) - 1) + b"\n"
    for _ in range(total // width):
        yield padded


def test_one_gigabyte_batch_in_bounded_memory(kafka_env, topic, kcat) -> None:
    """1 GiB of batch input on stdin (lines padded to 64 KiB, generated, never on disk) under
    an address-space limit: every event is delivered and memory stays bounded."""
    width, total = 64 * 1024, 1 << 30
    env = dict(kafka_env, MALLOC_ARENA_MAX="2")
    limit = 1536 << 20

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.Popen(
        [*CLI, "publish", "--batch", "-", "--quiet"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=cap,  # the limit applies to the child alone
    )
    assert proc.stdin is not None
    # The child's own high-water mark (VmHWM, reset by exec), read while it runs: its
    # ru_maxrss would also count the forked copy of this pytest process before exec.
    peaks: list[int] = []

    def watch() -> None:
        status_file = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status_file.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        for chunk in _padded_lines(total, width):
            proc.stdin.write(chunk)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    proc.wait()
    watcher.join(5)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, err
    peak_mib = max(peaks) / 1024
    print(f"1 GiB batch: peak RSS {peak_mib:.0f} MiB")
    assert peak_mib < 400, peak_mib
    assert len(kcat.consume(topic, timeout=120)) == total // width


def test_oversized_line_rejected_at_once(kafka_env) -> None:
    """/dev/zero and /dev/full as --batch: the first line is over the size limit, rejected
    with its number after reading only that much (exit 2, nothing published)."""
    for device in ("/dev/zero", "/dev/full"):
        proc = cli(kafka_env, "publish", "--batch", device, timeout=60)
        assert proc.returncode == 2
        assert "--batch line 1: longer than" in proc.stderr
    assert outbox(kafka_env).pending() == 0


@pytest.fixture
def old_outbox(state_dir: Path) -> Path:
    """An outbox written by 0.1 (no destination column) holding one event."""
    import sqlite3

    from provider_events import Publisher

    settings = load_settings()
    event = Publisher(settings).build(
        provider_name="p", model_name="m", correlation_id="legacy", selection_reason="old"
    )
    path = settings.resolved_outbox_path
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    conn.executescript(
        """CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL
        UNIQUE, topic TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, headers BLOB NOT
        NULL, enqueued_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE outbox_meta (name TEXT PRIMARY KEY, value TEXT);"""
    )
    from provider_events.publish._outbox import _encode_headers

    conn.execute(
        "INSERT INTO outbox (event_id, topic, key, value, headers, enqueued_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (event.event_id, event.topic, event.key, event.value, _encode_headers(event.headers), 1.0),
    )
    conn.commit()
    conn.close()
    return path


def test_old_outbox_migrated_to_current_destination(kafka_env, topic, kcat, old_outbox) -> None:
    """A 0.1 outbox: its events get the current configuration's destination (logged) and the
    relay delivers them."""
    relay = cli(kafka_env, "relay")
    assert relay.returncode == 0 and "delivered 1" in relay.stdout, relay.stderr
    (msg,) = kcat.consume(topic)
    assert msg.key == "legacy"
    log = cli(kafka_env, "outbox", "log").stdout
    assert f"assigned to {key_of(kafka_env)}" in log
