"""Consumer pieces that need no services: decoding into rows, dead-letter headers, which
database errors are outages and which refusals, metrics, the command line's configuration
errors, and the guide example's verbatim copy."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

import msgspec
import psycopg
import pytest
from confluent_kafka import Message

from provider_events import load_settings
from provider_events.errors import DatabaseError
from provider_events.events._envelope import build_provider_selection
from provider_events.ingest._consumer import ConsumerOptions, IngestConsumer, _Batch, dlq_headers
from provider_events.store import COLUMNS
from provider_events.store._pg import (
    DatabaseLoginError,
    DatabaseUnavailableError,
    describe_dsn,
    translate_error,
)

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT.parent / "shared" / "seed" / "provider-selection-event-guide.md"
#: SHA-256 of the guide's "Consumer Example" code block (2025-11-13 edition).
GUIDE_CONSUMER_SHA256 = "13d0c800e5fb298068d36b4c40b9c57e73746f56dddfec52f2aa2167ee81ce97"
SETTINGS = load_settings(environ={}, dotenv=Path("/nonexistent/.env"))


def _message(
    value: bytes | None, offset: int, partition: int = 3, headers: list | None = None
) -> Message:
    return Message(
        topic="t",
        partition=partition,
        offset=offset,
        key=b"key",
        value=value,
        headers=headers,
        timestamp=(1, 1_700_000_000_000),
    )


def _consumer() -> IngestConsumer:
    options = ConsumerOptions(topic="t", dlq_topic="t.dlq")
    return IngestConsumer(SETTINGS, options, "postgresql://u:secret@127.0.0.1:1/db")


def test_rows_carry_every_envelope_field_and_poison_is_set_aside() -> None:
    """Decoding maps each envelope to a row in COLUMNS order; undecodable messages get a reason."""
    event = build_provider_selection(
        provider_name="openai",
        model_name="gpt-4",
        correlation_id="abc-123-def-456",
        causation_id="cause-1",
        tenant_id="acme",
        selection_reason="Testing",
        selection_criteria={"latency_ms": 50, "nested": {"a": [1, 2]}},
        settings=SETTINGS,
    )
    envelope = json.loads(event.value)
    other = dict(envelope, event_type="omninode.agent.other.v1")
    batch = _Batch(
        [
            _message(event.value, 10),
            _message(b"{not json", 11),
            _message(b'{"event_type": "\xff"}', 12),
            _message(json.dumps(other).encode(), 13),
            _message(None, 14),
            _message(json.dumps(dict(envelope, payload={})).encode(), 15),
        ]
    )
    rows = list(_consumer()._rows(batch))
    assert len(rows) == 1
    row = dict(zip(COLUMNS, rows[0], strict=True))
    payload = envelope["payload"]
    assert row["event_id"] == uuid.UUID(envelope["event_id"])
    assert row["correlation_id"] == "abc-123-def-456"
    assert (row["provider_name"], row["model_name"]) == ("openai", "gpt-4")
    assert row["selection_reason"] == "Testing"
    assert msgspec.json.decode(row["selection_criteria"]) == payload["selection_criteria"]
    assert row["selected_at"] == datetime.fromisoformat(
        payload["selected_at"].replace("Z", "+00:00")
    )
    assert row["event_timestamp"] == datetime.fromisoformat(
        envelope["timestamp"].replace("Z", "+00:00")
    )
    assert (row["tenant_id"], row["namespace"], row["source"]) == ("acme", "omninode", "omniclaude")
    assert row["causation_id"] == "cause-1"
    assert (row["kafka_partition"], row["kafka_offset"]) == (3, 10)
    reasons = [(m.offset(), reason) for m, reason, _ in batch.dead]
    assert reasons == [
        (11, "bad_json"),
        (12, "bad_utf8"),
        (13, "unknown_event_type"),
        (14, "bad_json"),
        (15, "schema"),
    ]
    assert batch.last == {3: 15}  # every message, stored or not, is committed past


def test_dlq_headers_keep_the_original_and_say_where_and_why() -> None:
    """Dead letters keep their headers and add reason, error, topic, partition, offset, group."""
    msg = _message(b"x", 42, partition=5, headers=[("trace", b"t-1")])
    headers = dlq_headers(msg, "schema", "e" * 5000, "my-group")
    as_dict = dict(headers)
    assert headers[0] == ("trace", b"t-1")
    assert as_dict["dlq_reason"] == b"schema"
    assert as_dict["dlq_error"] == b"e" * 1000
    assert as_dict["dlq_original_topic"] == b"t"
    assert (as_dict["dlq_original_partition"], as_dict["dlq_original_offset"]) == (b"5", b"42")
    assert as_dict["dlq_consumer_group"] == b"my-group"
    assert as_dict["dlq_original_timestamp_ms"] == b"1700000000000"


def test_batch_forgets_revoked_partitions() -> None:
    """After a revocation only the partitions still owned are written and committed."""
    batch = _Batch([_message(b"a", 1, partition=0), _message(b"b", 2, partition=1)])
    batch.rows = [(None,) * 12 + (0, 1), (None,) * 12 + (1, 2)]  # type: ignore[list-item]
    batch.dead = [(batch.messages[1], "schema", "x")]
    batch.last = {0: 1, 1: 2}
    batch.drop_partitions({1})
    assert [m.partition() for m in batch.messages] == [0]
    assert [r[12] for r in batch.rows] == [0]
    assert batch.dead == [] and batch.last == {0: 1}


def test_database_errors_never_show_the_password() -> None:
    """DSN descriptions and translated errors hide the password; outages are retriable."""
    assert describe_dsn("postgresql://alice:s3cret@db:6543/events") == "alice@db:6543/events"
    assert "s3cret" not in describe_dsn("host=db user=alice password=s3cret dbname=events")
    import psycopg

    error = translate_error(
        psycopg.OperationalError("failed: postgresql://alice:s3cret@db/x"), "connecting"
    )
    assert isinstance(error, DatabaseUnavailableError) and "s3cret" not in str(error)
    permanent = translate_error(psycopg.errors.UndefinedTable("relation does not exist"), "writing")
    assert type(permanent) is DatabaseError and "provider-events migrate" in str(permanent)


_AT = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: '


@pytest.mark.parametrize(
    ("message", "sqlstate"),
    [
        (_AT + 'FATAL:  password authentication failed for user "alice"', "28P01"),
        (_AT + 'FATAL:  database "nope" does not exist', "3D000"),
        (_AT + 'FATAL:  role "nobody" does not exist', "28000"),
        (_AT + 'FATAL:  role "alice" is not permitted to log in', "28000"),
        (
            _AT + 'FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "alice", database "x"',
            "28000",
        ),
        (
            _AT + 'FATAL:  pg_hba.conf rejects connection for host "10.0.0.1", no encryption',
            "28000",
        ),
        (_AT + 'FATAL:  Peer authentication failed for user "alice"', "28000"),
        (_AT + 'FATAL:  permission denied for database "x" DETAIL: no CONNECT privilege.', "42501"),
        (_AT + "fe_sendauth: no password supplied", None),
    ],
)
def test_a_refused_login_while_connecting_is_no_outage(message: str, sqlstate: str | None) -> None:
    """psycopg gives no SQLSTATE for a refused connection: the server's message decides."""
    error = translate_error(psycopg.OperationalError(message), "connecting", connecting=True)
    assert isinstance(error, DatabaseLoginError) and not isinstance(error, DatabaseUnavailableError)
    assert error.sqlstate == sqlstate and error.retriable is False
    assert "DATABASE_URL" in str(error) and "\n" not in str(error)
    if sqlstate:
        assert f"(SQLSTATE {sqlstate})" in str(error)
    # The same text outside a connection attempt is left to its SQLSTATE (here: none, retried).
    assert isinstance(
        translate_error(psycopg.OperationalError(message), "writing"), DatabaseUnavailableError
    )


def test_refusals_with_a_sqlstate_use_psycopg_classes_and_outages_stay_retriable() -> None:
    """28P01, 28000 and 3D000 are refusals; a shutdown, a restart, a full server are outages."""
    from psycopg import errors as pg_errors

    for cls in (
        pg_errors.InvalidPassword,
        pg_errors.InvalidAuthorizationSpecification,
        pg_errors.InvalidCatalogName,
    ):
        error = translate_error(cls("refused"), "checking the events table")
        assert isinstance(error, DatabaseLoginError) and error.sqlstate == cls.sqlstate
    for cls in (
        pg_errors.AdminShutdown,  # 57P01: the server is stopping (fast shutdown, restart)
        pg_errors.CannotConnectNow,  # 57P03: starting up / shutting down
        pg_errors.CrashShutdown,
        pg_errors.TooManyConnections,
    ):
        error = translate_error(cls("down"), "writing events", connecting=True)
        assert isinstance(error, DatabaseUnavailableError), cls
    refused_tcp = _AT + "Connection refused Is the server running on that host?"
    for text in (
        refused_tcp,
        _AT + "FATAL:  the database system is starting up",
        "timeout expired",
    ):
        error = translate_error(psycopg.OperationalError(text), "connecting", connecting=True)
        assert isinstance(error, DatabaseUnavailableError), text


# -- metrics -----------------------------------------------------------------------------------
def test_metrics_registry_names_and_exporter() -> None:
    """Every metric of the project is in one registry, served by start_metrics_server."""
    from provider_events.observability import _metrics

    port = _metrics.start_metrics_server(0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for name in (
        "provider_events_consumer_messages_total",
        "provider_events_consumer_rows_inserted_total",
        "provider_events_consumer_duplicates_total",
        "provider_events_consumer_batch_duration_seconds_bucket",
        "provider_events_publish_spooled_total",
        "provider_events_outbox_pending_events",
        "provider_events_outbox_oldest_age_seconds",
        "process_cpu_seconds_total",
    ):
        assert f"\n{name}" in text, name
    for name in (
        "provider_events_consumer_dlq_total",
        "provider_events_consumer_lag_messages",
        "provider_selection_total",
        "provider_selection_duration_seconds",
        "provider_events_publish_failures_total",
    ):  # labelled: declared (HELP/TYPE) even before the first sample
        assert f"# TYPE {name} " in text, name
    assert "_created" not in text  # no per-series creation timestamps: half the series
    assert _metrics.start_metrics_server(port) == port  # idempotent per address


def test_publish_path_never_imports_prometheus_client() -> None:
    """The hook / publish CLI path stays light: prometheus_client is imported only where needed."""
    code = (
        "import sys, provider_events, provider_events.publish._publisher, provider_events.cli._publish;"
        "from provider_events.cli import main;"
        "print('prometheus_client' in sys.modules)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    assert out.stdout.strip() == "False"


# -- the command line --------------------------------------------------------------------------
def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = dict(env, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "provider_events.cli", *args],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", ["consume", "migrate"])
def test_commands_without_database_url_exit_2_with_one_line(command: str, tmp_path: Path) -> None:
    """No DATABASE_URL: one line on stderr naming it, exit code 2."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = _cli(command, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "DATABASE_URL is not set" in result.stderr


def test_consume_rejects_bad_flags_and_a_busy_metrics_port(tmp_path: Path) -> None:
    """Bad numbers and an occupied metrics port are configuration errors (exit 2), before any I/O."""
    env = dict(os.environ, DATABASE_URL="postgresql://u:p@127.0.0.1:1/db")
    bad = _cli("consume", "--batch-size", "zero", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "--batch-size" in bad.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _cli("consume", "--metrics-port", str(port), env=env, cwd=tmp_path)
    assert result.returncode == 2 and f"127.0.0.1:{port}" in result.stderr


# -- the guide's consumer example --------------------------------------------------------------
def _verbatim_block() -> str:
    text = (ROOT / "examples" / "guide_consumer.py").read_text(encoding="utf-8")
    match = re.search(r"# ---- guide: begin \(verbatim\) -+\n(.*?)# ---- guide: end", text, re.S)
    assert match, "examples/guide_consumer.py lost its guide markers"
    return match.group(1)


def test_guide_consumer_example_is_verbatim() -> None:
    """The example's body is byte-for-byte the guide's Consumer Example block."""
    block = _verbatim_block()
    assert hashlib.sha256(block.encode()).hexdigest() == GUIDE_CONSUMER_SHA256
    if GUIDE.is_file():  # next to a checkout of the shared workspace: compare with the source too
        guide = GUIDE.read_text(encoding="utf-8")
        match = re.search(r"### Consumer Example\n\n```python\n(.*?)```", guide, re.S)
        assert match and match.group(1) == block
