"""The outbox per destination: isolation, quarantine, requeue, retarget, drop, migration, and
the relay's error classification and locks (no broker needed)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from provider_events import Publisher, load_settings
from provider_events.errors import InvalidEventError
from provider_events.events._envelope import check_topic
from provider_events.publish import _spool
from provider_events.publish._outbox import Destination, Outbox
from provider_events.publish._relay import destination_of, is_permanent, relay_running

NO_DOTENV = Path("/nonexistent/.env")
A = Destination("a:9092", "PLAINTEXT", "", "t.a")
B = Destination("b:9092", "SASL_SSL", "alice", "t.b")


def events(n: int, cid: str = "k"):
    settings = load_settings(environ={"HOME": "/h"}, dotenv=NO_DOTENV)
    publisher = Publisher(settings, outbox=False)
    return [
        publisher.build(
            provider_name="p", model_name="m", correlation_id=cid, selection_reason=str(i)
        )
        for i in range(n)
    ]


def test_destination_key_is_stable_and_secret_free() -> None:
    """The key depends on servers, protocol and principal only; the password never enters."""
    assert A.key == Destination("a:9092", "plaintext", "", "other").key
    assert A.key != B.key and len(A.key) == 16
    env = {
        "HOME": "/h",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "alice",
        "KAFKA_SASL_PASSWORD": "s3cret-pw",
        "KAFKA_BOOTSTRAP_SERVERS": "b:9092",
    }
    one = destination_of(load_settings(environ=env, dotenv=NO_DOTENV))
    two = destination_of(
        load_settings(environ={**env, "KAFKA_SASL_PASSWORD": "other"}, dotenv=NO_DOTENV)
    )
    assert one.key == two.key == B.key
    assert "s3cret" not in repr(one) + one.describe()


def test_destinations_are_isolated(tmp_path: Path) -> None:
    """Each instance sees only its destination's rows: pending, batch, has_key."""
    path = tmp_path / "o.sqlite3"
    a, b = Outbox(path, destination=A), Outbox(path, destination=B)
    a.add(events(3, "ka"))
    b.add(events(2, "kb"))
    assert (a.pending(), b.pending(), Outbox(path).pending()) == (3, 2, 5)
    assert {r.key for r in a.batch(100)} == {b"ka"}
    assert a.has_key(b"ka") and not b.has_key(b"ka")
    st = Outbox(path).status()
    assert {(d.key, d.pending, d.servers, d.principal) for d in st.destinations} == {
        (A.key, 3, "a:9092", ""),
        (B.key, 2, "b:9092", "alice"),
    }


def test_quarantine_requeue_retarget_drop_are_logged(tmp_path: Path) -> None:
    """Quarantine moves an event out of the queue with its reason; requeue brings it back;
    retarget moves a destination's events; drop deletes them; each is in the log."""
    path = tmp_path / "o.sqlite3"
    a, b = Outbox(path, destination=A), Outbox(path, destination=B)
    a.add(events(3))
    first = a.batch(1)[0]
    a.quarantine([(first.seq, "MSG_SIZE_TOO_LARGE: Broker: Message size too large")])
    assert a.pending() == 2
    (q,) = a.quarantined()
    assert q.event_id == first.event_id and q.reason.startswith("MSG_SIZE_TOO_LARGE")
    assert a.status().quarantined == 1
    assert a.requeue([first.event_id]) == 1 and a.pending() == 3 and not a.quarantined()
    assert b.retarget(A.key, "t.b") == 3
    assert a.pending() == 0 and b.pending() == 3
    assert {r.topic for r in b.batch(10)} == {"t.b"}
    assert a.drop(B.key) == 3 and Outbox(path).pending() == 0
    actions = [action for _, action, _ in a.log_entries()]
    assert actions == ["drop", "retarget", "requeue", "quarantine"]


def test_old_outbox_rows_go_to_the_first_destination(tmp_path: Path) -> None:
    """A 0.1 outbox: the destination column is added; its rows are assigned to the first
    configuration that opens it, and the assignment is logged."""
    path = tmp_path / "o.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL"
        " UNIQUE, topic TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, headers BLOB NOT"
        " NULL, enqueued_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO outbox (event_id, topic, key, value, headers, enqueued_at)"
        " VALUES ('e1', 't', x'6b', x'7b7d', x'', 1.0);"
    )
    conn.close()
    assert Outbox(path).pending() == 1  # opened without a destination: nothing assigned
    b = Outbox(path, destination=B)
    assert b.pending() == 1 and Outbox(path, destination=A).pending() == 0
    assert "1 event(s) without a destination assigned to " + B.key in b.log_entries()[0][2]


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        ("MSG_SIZE_TOO_LARGE: Broker: Message size too large", True),
        ("TOPIC_AUTHORIZATION_FAILED: Broker: Topic authorization failed", True),
        ("KafkaException: KafkaError{code=_INVALID_ARG,val=-186,str=...}", True),
        ("_MSG_TIMED_OUT: Local: Message timed out", False),
        ("_TRANSPORT: Local: Broker transport failure", False),
        ("all brokers are down (recently reported by the client)", False),
        ("not acknowledged within 5s", False),
        ("NOT_ENOUGH_REPLICAS: Broker: Not enough in-sync replicas", False),
        ("TypeError: bad header", True),
    ],
)
def test_error_classification(error: str, permanent: bool) -> None:
    """librdkafka error names: the ones no retry can fix are permanent."""
    assert is_permanent(error) is permanent


@pytest.mark.parametrize("topic", ["", ".", "..", "a b", "t/x", "é", "t" * 250, "topic\n", "a,b"])
def test_illegal_topics_refused(topic: str) -> None:
    with pytest.raises(InvalidEventError):
        check_topic(topic)


def test_legal_topics_accepted() -> None:
    for topic in ("a", "t" * 249, "a.b_c-D9", "..."):
        assert check_topic(topic) == topic


def test_relay_lock_is_per_destination(tmp_path: Path) -> None:
    """Holding one destination's lock leaves another destination's relay free."""
    env = {"HOME": "/h", "PROVIDER_EVENTS_STATE_DIR": str(tmp_path)}
    one = load_settings(environ={**env, "KAFKA_BOOTSTRAP_SERVERS": "a:1"}, dotenv=NO_DOTENV)
    two = load_settings(environ={**env, "KAFKA_BOOTSTRAP_SERVERS": "b:1"}, dotenv=NO_DOTENV)
    fd = _spool.try_lock(_spool.lock_path(one.resolved_outbox_path, destination_of(one).key))
    assert fd is not None
    try:
        assert relay_running(one) and not relay_running(two)
    finally:
        _spool.unlock(fd)
    assert not relay_running(one)


def test_spawn_hands_the_lock_to_the_child(tmp_path: Path) -> None:
    """spawn_relay takes the lock before the child starts: a second call in a burst sees it
    held and starts nothing."""
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\nexec sleep 1\n")
    script.chmod(0o755)
    outbox = tmp_path / "o.sqlite3"
    env = dict(os.environ)
    assert _spool.spawn_relay(outbox, A.key, env, str(script), str(tmp_path))
    assert not _spool.spawn_relay(outbox, A.key, env, str(script), str(tmp_path))
    assert _spool.relay_alive(outbox, A.key) and not _spool.relay_alive(outbox, B.key)
