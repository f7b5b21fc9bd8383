"""PostgreSQL refusing the consumer's login is no outage: `consume` stops at once.

A wrong password, an unknown role or database (at start), or a CONNECT privilege revoked while
it runs (mid-stream): the real CLI, against the real broker and PostgreSQL, exits 1 within
seconds with one line on stderr that holds no password, commits no offset for what it could
not write, and a later consumer with the right DATABASE_URL ingests every event exactly once.
`migrate` and `stats` say the same in one line. (The outage path, PostgreSQL stopped and
started mid-stream, is tests/integration/test_consumer_faults.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import KafkaError, Message, Producer
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from provider_events import load_settings
from provider_events.events._envelope import OutgoingEvent, build_provider_selection
from provider_events.publish._producer import kafka_config
from provider_events.settings import Settings
from provider_events.store import migrate
from provider_events.store._scratch import ScratchSchema, scratch_schema
from tests.support import cli_env, committed

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "provider_events.cli"]
#: A wrong password that is easy to find in any output.
WRONG_PASSWORD = f"Wrong-Pg-Pass-{uuid.uuid4().hex[:10]}"
#: From start to exit, Python start-up included; the old behaviour never exited.
FAST = 10.0


# -- helpers ---------------------------------------------------------------------------------
@pytest.fixture
def pg(database_url: str) -> Iterator[ScratchSchema]:
    """A throwaway, migrated schema; its DSN puts it first on search_path."""
    with scratch_schema(database_url, "test_login") as schema:
        migrate(schema.dsn)
        yield schema


@pytest.fixture
def own_database(database_url: str) -> Iterator[str]:
    """A throwaway, migrated database (its CONNECT privilege can be revoked); yields its DSN."""
    name = f"pe_login_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    dsn = make_conninfo(database_url, dbname=name)
    try:
        migrate(dsn)
        yield dsn
    finally:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'GRANT CONNECT ON DATABASE "{name}" TO CURRENT_USER')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_for(bootstrap: str, topic: str) -> Settings:
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PROVIDER_EVENTS_TOPIC": topic}
    return load_settings(environ=env, dotenv=Path("/nonexistent/.env"))


def build(bootstrap: str, topic: str, n: int) -> list[OutgoingEvent]:
    settings = settings_for(bootstrap, topic)
    return [
        build_provider_selection(
            provider_name=("claude", "gemini-flash", "openai")[i % 3],
            model_name="model-x",
            correlation_id=f"req-{uuid.uuid4().hex[:12]}",  # spread over every partition
            selection_reason="login test",
            selection_criteria={"cost_per_token": 0.000001},
            settings=settings,
        )
        for i in range(n)
    ]


def produce(bootstrap: str, topic: str, events: list[OutgoingEvent]) -> None:
    producer = Producer(kafka_config(settings_for(bootstrap, topic)))
    failed: list[str] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(str(err))

    for event in events:
        while True:
            try:
                producer.produce(topic, event.value, event.key, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    assert not failed, failed[:3]


def stored_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return [str(r[0]) for r in conn.execute("SELECT event_id FROM provider_selection_events")]


def consume_args(group: str, *extra: str) -> list[str]:
    return [*CLI, "consume", "--group-id", group, "--metrics-port", "off", "--json", *extra]


def kinds(stdout: str) -> list[str]:
    return [json.loads(line)["event"] for line in stdout.splitlines() if line.startswith("{")]


def assert_one_secret_free_line(proc: Any, *expected: str, secrets: list[str]) -> str:
    """stderr is exactly one ``error: ...`` line holding ``expected``; no secret anywhere."""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    shown = proc.stdout + proc.stderr
    assert not [s for s in secrets if s and s in shown], shown
    return lines[0]


def ingest_everything(dsn: str, bootstrap: str, topic: str, group: str) -> None:
    """The same group with the right DATABASE_URL: runs until idle, exits 0."""
    proc = subprocess.run(
        consume_args(group, "--until-idle", "3", "--batch-size", "200"),
        env=cli_env(dsn, bootstrap, topic),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr


# -- refused at start ------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["wrong password", "unknown role", "unknown database"])
def test_refused_login_at_start_exits_at_once_and_commits_nothing(
    case: str, kafka_bootstrap: str, topic: str, pg: ScratchSchema
) -> None:
    """Wrong password, unknown role or database: exit 1 within seconds, one line, no password,
    no offset committed; the right DATABASE_URL then ingests every event."""
    password = str(conninfo_to_dict(pg.dsn).get("password") or "")
    bad, expected = {
        "wrong password": (
            make_conninfo(pg.dsn, password=WRONG_PASSWORD),
            ["password authentication failed", "(SQLSTATE 28P01)"],
        ),
        # With password authentication the server does not say whether the role exists.
        "unknown role": (
            make_conninfo(pg.dsn, user=f"no_role_{uuid.uuid4().hex[:8]}", password=WRONG_PASSWORD),
            ["authentication failed for user", "SQLSTATE 28"],
        ),
        "unknown database": (
            make_conninfo(pg.dsn, dbname=f"no_db_{uuid.uuid4().hex[:8]}"),
            ["does not exist", "(SQLSTATE 3D000)"],
        ),
    }[case]
    events = build(kafka_bootstrap, topic, 300)
    produce(kafka_bootstrap, topic, events)
    group = f"login-{uuid.uuid4().hex[:10]}"

    started = time.monotonic()
    proc = subprocess.run(
        consume_args(group),
        env=cli_env(bad, kafka_bootstrap, topic),
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert took < FAST, f"took {took:.1f} s"
    assert_one_secret_free_line(proc, *expected, "DATABASE_URL", secrets=[password, WRONG_PASSWORD])
    assert "db_unavailable" not in kinds(proc.stdout), proc.stdout  # not retried as an outage
    assert committed(kafka_bootstrap, group, topic) == {}

    ingest_everything(pg.dsn, kafka_bootstrap, topic, group)
    ids = stored_ids(pg.dsn)
    assert len(ids) == len(set(ids)) and set(ids) == {e.event_id for e in events}


# -- refused mid-stream ----------------------------------------------------------------------
def test_login_refused_mid_stream_stops_without_committing_the_batch(
    kafka_bootstrap: str, topic: str, own_database: str, database_url: str
) -> None:
    """CONNECT revoked and the consumer's session ended while it runs: its reconnect is refused,
    it exits 1 at once; the offsets stay at what is in the table, and nothing is lost."""
    name = conninfo_to_dict(own_database)["dbname"]
    password = str(conninfo_to_dict(own_database).get("password") or "")
    events = build(kafka_bootstrap, topic, 3000)
    first, later = events[:1000], events[1000:]
    produce(kafka_bootstrap, topic, first)
    group = f"login-{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen(
        consume_args(group, "--batch-size", "200"),
        env=cli_env(own_database, kafka_bootstrap, topic),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while sum(committed(kafka_bootstrap, group, topic).values()) < len(first):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the first events were not ingested"
            time.sleep(0.2)
        with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'REVOKE CONNECT ON DATABASE "{name}" FROM PUBLIC')
            admin.execute(f'REVOKE CONNECT ON DATABASE "{name}" FROM CURRENT_USER')
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = 'provider-events-consumer'",
                [name],
            ).fetchone()
        assert ended and ended[0] == 1, ended
        started = time.monotonic()
        produce(kafka_bootstrap, topic, later)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert proc.returncode == 1, (proc.returncode, err)
    assert took < FAST, f"took {took:.1f} s"
    assert_one_secret_free_line(
        done,
        f'permission denied for database "{name}"',
        "(SQLSTATE 42501)",
        "DATABASE_URL",
        secrets=[password],
    )
    # The ended session looks like an outage (one retry); the refused reconnect ends it.
    assert kinds(out).count("db_unavailable") <= 1, out
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'GRANT CONNECT ON DATABASE "{name}" TO CURRENT_USER')
    # Committed = stored: the batch it could not write was not committed.
    offsets = committed(kafka_bootstrap, group, topic)
    assert sum(offsets.values()) == len(stored_ids(own_database)) == len(first), offsets

    ingest_everything(own_database, kafka_bootstrap, topic, group)
    ids = stored_ids(own_database)
    assert len(ids) == len(set(ids)) and set(ids) == {e.event_id for e in events}


# -- the other commands ----------------------------------------------------------------------
@pytest.mark.parametrize("args", [["migrate"], ["migrate", "--status"], ["stats"]])
def test_other_commands_refused_login_is_one_line(args: list[str], pg: ScratchSchema) -> None:
    """`migrate` and `stats` with a wrong password: exit 1, one line, no password."""
    password = str(conninfo_to_dict(pg.dsn).get("password") or "")
    env = dict(os.environ, DATABASE_URL=make_conninfo(pg.dsn, password=WRONG_PASSWORD))
    started = time.monotonic()
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert time.monotonic() - started < FAST
    assert_one_secret_free_line(
        proc,
        "password authentication failed",
        "(SQLSTATE 28P01)",
        secrets=[password, WRONG_PASSWORD],
    )
    assert proc.stdout == ""
