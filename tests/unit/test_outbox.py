"""The local outbox: durability settings, bounds, corruption and concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from provider_events import (
    DeliveryStatus,
    OutboxCorruptError,
    OutboxFullError,
    Publisher,
    load_settings,
)
from provider_events.events._envelope import build_provider_selection
from provider_events.publish._outbox import Outbox, _decode_headers, _encode_headers


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(
        environ={
            "HOME": str(tmp_path),
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "PROVIDER_EVENTS_STATE_DIR": str(tmp_path / "state"),
            "PROVIDER_EVENTS_RELAY_AUTOSTART": "false",
        },
        dotenv=tmp_path / "none",
    )


def event(settings, cid: str = "c", n: int = 0):
    return build_provider_selection(
        settings=settings,
        provider_name="p",
        model_name=f"m{n}",
        correlation_id=cid,
        selection_reason="r",
        selection_criteria={},
    )


def test_wal_and_full_sync(settings) -> None:
    """The outbox commits durably: WAL journal with synchronous=FULL."""
    box = Outbox(settings.resolved_outbox_path)
    box.add([event(settings)])
    conn = box._connect()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_headers_round_trip_binary_safe() -> None:
    """Header values with NUL and arbitrary bytes survive storage."""
    headers = [("a", b"\x00\x01\xff"), ("content-type", b"application/json"), ("empty", b"")]
    assert _decode_headers(_encode_headers(headers)) == headers


def test_order_and_idempotent_add(settings) -> None:
    """Events come back in insertion order; re-adding an event_id is a no-op."""
    box = Outbox(settings.resolved_outbox_path)
    events = [event(settings, n=i) for i in range(5)]
    box.add(events)
    box.add(events[:2])
    rows = box.batch(10)
    assert [r.event_id for r in rows] == [e.event_id for e in events]
    assert rows[0].value == events[0].value and rows[0].headers == events[0].headers
    box.remove([rows[0].seq, rows[1].seq])
    assert box.pending() == 3 and box.status().delivered_total == 2


def test_full_outbox_refuses_and_counts(settings) -> None:
    """At the bound a new event is refused with a clear error; accepted ones stay."""
    box = Outbox(settings.resolved_outbox_path, max_events=3)
    box.add([event(settings, n=i) for i in range(3)])
    with pytest.raises(OutboxFullError, match="full"):
        box.add([event(settings, n=9)])
    assert box.pending() == 3
    assert box.status().refused_full == 1


def test_publisher_reports_full_outbox_as_failed(settings) -> None:
    """A publish that can neither deliver nor spool says so (FAILED, with the reason)."""
    s = settings.with_overrides(outbox_max_events=1, delivery_timeout=0.5)
    publisher = Publisher(s)
    first = publisher.publish_sync(
        provider_name="p",
        model_name="m",
        correlation_id="a",
        selection_reason="r",
        delivery="background",
    )
    second = publisher.publish_sync(
        provider_name="p",
        model_name="m",
        correlation_id="b",
        selection_reason="r",
        delivery="background",
    )
    assert first.status is DeliveryStatus.QUEUED and first.accepted
    assert second.status is DeliveryStatus.FAILED and "full" in (second.error or "")
    assert Outbox(s.resolved_outbox_path).pending() == 1


def test_corrupted_file_is_reported_not_crashed(settings) -> None:
    """A garbage outbox file gives OutboxCorruptError and a FAILED result; the file is untouched."""
    path = settings.resolved_outbox_path
    path.parent.mkdir(parents=True)
    garbage = b"this is not sqlite" * 500
    path.write_bytes(garbage)
    with pytest.raises(OutboxCorruptError, match="corrupted"):
        Outbox(path).add([event(settings)])
    result = Publisher(settings).publish_sync(
        provider_name="p",
        model_name="m",
        correlation_id="c",
        selection_reason="r",
        delivery="background",
    )
    assert result.status is DeliveryStatus.FAILED and "corrupted" in (result.error or "")
    assert path.read_bytes() == garbage


def test_many_threads_append_safely(settings) -> None:
    """16 threads x 50 events each all land, none lost, none duplicated."""
    path = settings.resolved_outbox_path
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        box = Outbox(path)
        try:
            for i in range(50):
                box.add([event(settings, cid=f"t{t}", n=i)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(DISTINCT event_id) FROM outbox").fetchone()[0] == 800
    # order per key is insertion order
    for t in range(16):
        models = [
            bytes(v)
            for (v,) in conn.execute(
                "SELECT value FROM outbox WHERE key = ? ORDER BY seq", (f"t{t}".encode(),)
            )
        ]
        assert [m.split(b'"model_name":"')[1].split(b'"')[0] for m in models] == [
            f"m{i}".encode() for i in range(50)
        ]
