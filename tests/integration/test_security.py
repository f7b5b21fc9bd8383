"""Kafka with SASL_SSL and SCRAM-SHA-512 on a real broker: publish, relay, consume, wrong password.

The broker is private to these tests (``_secure_kafka.py``): its own certificates, KRaft storage
formatted with the SCRAM users, its own ports. The shared PLAINTEXT broker is not touched.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _secure_kafka import SecureKafka, child_env, cli, shared_secure_kafka

from provider_events import DeliveryStatus, Publisher, load_settings
from provider_events.publish._outbox import Outbox
from provider_events.store._scratch import scratch_schema

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def sasl() -> SecureKafka:
    """The session's private SASL_SSL broker."""
    return shared_secure_kafka()


@pytest.fixture
def sasl_topic(sasl: SecureKafka) -> str:
    """A fresh topic on the SASL_SSL broker."""
    return sasl.create_topic(f"sec.provider.selected.{uuid.uuid4().hex[:10]}")


@pytest.fixture
def env(sasl: SecureKafka, sasl_topic: str, tmp_path: Path) -> dict[str, str]:
    """A child environment aimed at the SASL_SSL broker, with its own state directory."""
    return child_env(
        **sasl.env(),  # KAFKA_BOOTSTRAP_SERVERS included: never the shared broker's
        PROVIDER_EVENTS_STATE_DIR=str(tmp_path / "state"),
        PROVIDER_EVENTS_TOPIC=sasl_topic,
        PROVIDER_EVENTS_DELIVERY_TIMEOUT="10",
        PROVIDER_EVENTS_RELAY_AUTOSTART="false",
    )


def publish_args(reason: str, *extra: str) -> list[str]:
    return [
        "publish",
        "--provider",
        "gemini-flash",
        "--model",
        "gemini-1.5-flash-002",
        "--reason",
        reason,
        "--criteria",
        '{"cost_per_token": 0.000001}',
        *extra,
    ]


def read_topic(sasl: SecureKafka, topic: str, expected: int, timeout: float = 30) -> list[dict]:
    """Every envelope on ``topic`` (read over SASL_SSL) once ``expected`` have arrived."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            **sasl.client_config(),
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    envelopes: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while len(envelopes) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                envelopes.append(json.loads(msg.value()))
    finally:
        consumer.close()
    return envelopes


@pytest.fixture
def database(database_url: str) -> Iterator[str]:
    """A DSN of a fresh, empty schema on the shared PostgreSQL server (dropped afterwards)."""
    with scratch_schema(database_url, prefix="sec") as scratch:
        yield scratch.dsn


def test_publisher_delivers_over_sasl_ssl(
    sasl: SecureKafka, sasl_topic: str, env: dict[str, str]
) -> None:
    """The in-process Publisher, configured only by the SASL/TLS settings, gets an ack."""
    settings = load_settings(environ=env, dotenv=Path("/nonexistent/.env"))
    assert settings.kafka_security_protocol == "SASL_SSL"
    publisher = Publisher(settings)
    try:
        result = publisher.publish_sync(
            provider_name="claude",
            model_name="claude-sonnet-4-5",
            selection_reason="sasl in-process",
            correlation_id="sasl-corr-1",
        )
    finally:
        publisher.close()
    assert result.status is DeliveryStatus.DELIVERED, result.error
    (envelope,) = read_topic(sasl, sasl_topic, 1)
    assert envelope["event_id"] == result.event_id


def test_cli_publish_relay_and_consume_over_sasl_ssl(
    sasl: SecureKafka, sasl_topic: str, env: dict[str, str], database: str
) -> None:
    """CLI publish (sync), a spooled event relayed by `provider-events relay`, and
    `provider-events consume` into PostgreSQL all work over SASL_SSL."""
    env = dict(env, DATABASE_URL=database)
    assert cli(env, "migrate").returncode == 0
    sync = cli(env, *publish_args("sasl sync", "--json"))
    assert sync.returncode == 0, sync.stderr
    delivered = json.loads(sync.stdout)
    assert delivered["status"] == "delivered"

    queued = cli(env, *publish_args("sasl spooled", "--background", "--json"))
    assert queued.returncode == 0, queued.stderr
    spooled = json.loads(queued.stdout)
    assert spooled["status"] == "queued"
    outbox = Outbox(Path(env["PROVIDER_EVENTS_STATE_DIR"]) / "outbox.sqlite3")
    assert outbox.pending() == 1
    relay = cli(env, "relay")
    assert relay.returncode == 0, relay.stderr
    assert "delivered 1 event(s); 0 pending" in relay.stdout
    assert outbox.pending() == 0

    consume = cli(
        env,
        "consume",
        "--group-id",
        f"sec-{uuid.uuid4().hex[:8]}",
        "--max-messages",
        "2",
        "--until-idle",
        "20",
        "--metrics-port",
        "off",
        "--json",
    )
    assert consume.returncode == 0, consume.stderr
    stopped = [json.loads(line) for line in consume.stdout.splitlines()][-1]
    assert stopped["event"] == "stopped" and stopped["inserted"] == 2, consume.stdout

    import psycopg

    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT event_id::text, selection_reason FROM provider_selection_events"
        ).fetchall()
    assert sorted(rows) == sorted(
        [(delivered["event_id"], "sasl sync"), (spooled["event_id"], "sasl spooled")]
    )


def test_wrong_password_fails_fast_with_a_clear_message(
    sasl: SecureKafka, env: dict[str, str], database: str
) -> None:
    """A wrong SCRAM password: publish, relay, doctor and consume each fail within about a
    second (the delivery bound is 10 s) with one line naming the authentication failure, never
    the password; the event is kept in the outbox."""
    wrong = f"WrongPw-{uuid.uuid4().hex}"
    bad = dict(env, **sasl.env(password=wrong), DATABASE_URL=database)
    assert cli(bad, "migrate").returncode == 0

    started = time.monotonic()
    proc = cli(bad, *publish_args("wrong password"))
    publish_seconds = time.monotonic() - started
    assert proc.returncode == 1
    assert publish_seconds < 4, f"publish took {publish_seconds:.1f}s"
    (line,) = proc.stderr.splitlines()
    assert "Kafka authentication failed" in line and "SCRAM-SHA-512" in line, line
    assert "KAFKA_SASL_PASSWORD" in line and "safe in the outbox" in line

    started = time.monotonic()
    relay = cli(bad, "relay")
    relay_seconds = time.monotonic() - started
    assert relay.returncode == 1 and relay_seconds < 4, (relay_seconds, relay.stderr)
    assert "Kafka authentication failed" in relay.stderr
    assert Outbox(Path(env["PROVIDER_EVENTS_STATE_DIR"]) / "outbox.sqlite3").pending() == 1

    doctor = cli(bad, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert doctor.returncode == 1
    assert not checks["kafka metadata"]["ok"]
    assert checks["kafka metadata"]["detail"].startswith("authentication failed")
    assert "KAFKA_SASL_PASSWORD" in checks["kafka metadata"]["hint"]

    started = time.monotonic()
    consume = cli(bad, "consume", "--until-idle", "30", "--metrics-port", "off", "--json")
    consume_seconds = time.monotonic() - started
    assert consume.returncode == 1 and consume_seconds < 8, (consume_seconds, consume.stderr)
    (line,) = consume.stderr.splitlines()
    assert line.startswith("error: fatal Kafka error: _AUTHENTICATION"), line

    for text in (proc.stdout, proc.stderr, relay.stdout, relay.stderr, doctor.stdout):
        assert wrong not in text and sasl.password not in text
    assert wrong not in consume.stdout + consume.stderr

    # The same credentials, corrected, deliver what was kept.
    fixed = cli(dict(bad, **sasl.env()), "relay")
    assert fixed.returncode == 0 and "delivered 1 event(s)" in fixed.stdout, fixed.stderr


def test_in_process_publisher_reports_refused_credentials_at_once(
    sasl: SecureKafka, env: dict[str, str]
) -> None:
    """Publisher.publish_sync with a wrong password returns SPOOLED in about a second with an
    error naming `_AUTHENTICATION`, not after the 10 s delivery timeout."""
    settings = load_settings(
        environ=dict(env, **sasl.env(password=f"nope-{uuid.uuid4().hex}")),
        dotenv=Path("/nonexistent/.env"),
    )
    publisher = Publisher(settings)
    try:
        started = time.monotonic()
        first = publisher.publish_sync(
            provider_name="zai", model_name="glm-4.6", selection_reason="refused"
        )
        second = publisher.publish_sync(
            provider_name="zai", model_name="glm-4.6", selection_reason="refused again"
        )
        elapsed = time.monotonic() - started
    finally:
        publisher.close()
    assert first.status is DeliveryStatus.SPOOLED and second.status is DeliveryStatus.SPOOLED
    assert elapsed < 4, f"{elapsed:.1f}s"
    for result in (first, second):
        assert "Kafka authentication failed" in (result.error or ""), result.error


def test_tls_is_verified_against_the_configured_ca(
    sasl: SecureKafka, env: dict[str, str], tmp_path: Path
) -> None:
    """With another CA in KAFKA_SSL_CA_LOCATION the broker's certificate is refused: nothing is
    delivered (the event is spooled), so the TLS setting is used and verification is on."""
    from _secure_kafka import make_certificates

    other_ca, _ = make_certificates(tmp_path / "other-ca", "unused-pass")
    proc = cli(dict(env, KAFKA_SSL_CA_LOCATION=str(other_ca)), *publish_args("wrong ca", "--json"))
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["status"] == "spooled"
