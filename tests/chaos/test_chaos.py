"""``make chaos``: the fault suite at full size. Each test records its figures in
``artifacts/chaos/<test>.json`` and prints a summary line (see RELIABILITY.md)."""

from __future__ import annotations

import pytest

from tests.chaos import faults_broker, faults_client, faults_consumer, kit
from tests.chaos.harness import Broker, Services

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.mark.timeout(900)
def test_broker_sigkill_while_8_processes_publish_100k(
    services: Services, broker: Broker, pytestconfig: pytest.Config
) -> None:
    """8 publisher processes send 100,000 events through two broker SIGKILLs and restarts:
    every accepted event_id ends in PostgreSQL exactly once."""
    figures = faults_broker.broker_kill_while_publishing(
        services, broker, events=100_000, publishers=8, kills=2, duration=45.0, chunk=250
    )
    kit.record(pytestconfig, "chaos", "broker_sigkill_100k", figures)


@pytest.mark.timeout(600)
def test_black_hole_broker_bounds_every_publish(
    services: Services, pytestconfig: pytest.Config
) -> None:
    """Against a listener that never answers, every synchronous publish returns within the
    1 s bound (spooled), background publishes queue at once, and a relay delivers them all."""
    figures = faults_client.black_hole(
        services,
        bound=1.0,
        threads=8,
        calls_per_thread=50,
        async_calls=100,
        cli_calls=10,
        background_calls=1000,
        cli_background_calls=10,
    )
    kit.record(pytestconfig, "chaos", "black_hole", figures)


@pytest.mark.timeout(900)
def test_consumer_sigkilled_10_times_and_postgres_restarted_twice(
    services: Services, postgres: kit.PostgresControl, pytestconfig: pytest.Config
) -> None:
    """100,000 events ingest while the consumer is SIGKILLed 10 times and PostgreSQL restarts
    twice (clean stop, then crash): the table holds exactly the published set."""
    figures = faults_consumer.consumer_kills_and_pg_restarts(
        services,
        postgres,
        events=100_000,
        kills=10,
        pg_restarts=("pg-stop", "pg-kill"),
        duration=40.0,
    )
    kit.record(pytestconfig, "chaos", "consumer_kills_pg_restarts", figures)


@pytest.mark.timeout(600)
def test_outbox_disk_full(services: Services, pytestconfig: pytest.Config) -> None:
    """The outbox on a full 8 MiB tmpfs: a clear disk-full error from the API and the CLI,
    no accepted event lost, and delivery of everything once space returns."""
    figures = faults_client.outbox_disk_full(services, fs_kib=8192, free_kib=2048)
    kit.record(pytestconfig, "chaos", "outbox_disk_full", figures)


@pytest.mark.timeout(900)
def test_partitions_added_and_broker_restarted_mid_stream(
    services: Services, broker: Broker, pytestconfig: pytest.Config
) -> None:
    """The topic grows from 3 to 8 partitions and the broker restarts while 4 processes
    publish 40,000 events: order per correlation id holds after the change, nothing is lost."""
    figures = faults_broker.partitions_added_mid_stream(
        services, broker, events=40_000, publishers=4, before=3, after=8, duration=40.0
    )
    kit.record(pytestconfig, "chaos", "partitions_added", figures)
