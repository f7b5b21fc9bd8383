"""The fault suite's short form, inside the normal test run (about a minute and a half).

The same scenarios as ``make chaos`` (``tests/chaos/faults_*.py``) with smaller counts: a
broker SIGKILL under 8 publishing processes, a black-hole broker, consumer SIGKILLs with a
PostgreSQL crash, the outbox's disk full, partitions added with a broker restart. Brokers and
PostgreSQL are stopped through the ``dev/services.sh`` the ``broker`` fixture uses
(``PROVIDER_EVENTS_DEV_SERVICES``), and only after checking that it controls the services this
run talks to. Figures go to ``artifacts/faults-short/<test>.json``.
"""

from __future__ import annotations

import pytest

from tests.chaos import faults_broker, faults_client, faults_consumer, kit
from tests.chaos.harness import Broker, Services

pytestmark = pytest.mark.integration
SUITE = "faults-short"


@pytest.mark.timeout(240)
def test_broker_sigkill_while_8_processes_publish(
    services: Services, broker: Broker, pytestconfig: pytest.Config
) -> None:
    """8 publisher processes send 5,000 events through a broker SIGKILL and restart: every
    accepted event_id ends in PostgreSQL exactly once."""
    figures = faults_broker.broker_kill_while_publishing(
        services, broker, events=5_000, publishers=8, kills=1, duration=10.0, chunk=50
    )
    kit.record(pytestconfig, SUITE, "broker_sigkill", figures)


@pytest.mark.timeout(120)
def test_black_hole_broker_bounds_every_publish(
    services: Services, pytestconfig: pytest.Config
) -> None:
    """Against a listener that never answers, synchronous publishes return within the 0.5 s
    bound (spooled), background ones queue at once, and a relay delivers them all."""
    figures = faults_client.black_hole(
        services,
        bound=0.5,
        threads=4,
        calls_per_thread=5,
        async_calls=10,
        cli_calls=2,
        background_calls=50,
        cli_background_calls=2,
    )
    kit.record(pytestconfig, SUITE, "black_hole", figures)


@pytest.mark.timeout(180)
def test_consumer_sigkills_and_postgres_crash(
    services: Services, postgres: kit.PostgresControl, pytestconfig: pytest.Config
) -> None:
    """5,000 events ingest while the consumer is SIGKILLed twice and PostgreSQL crashes and
    restarts once: the table holds exactly the published set."""
    figures = faults_consumer.consumer_kills_and_pg_restarts(
        services,
        postgres,
        events=5_000,
        kills=2,
        pg_restarts=("pg-kill",),
        duration=8.0,
        batch_size=200,
    )
    kit.record(pytestconfig, SUITE, "consumer_kills_pg_restart", figures)


@pytest.mark.timeout(120)
def test_outbox_disk_full(services: Services, pytestconfig: pytest.Config) -> None:
    """The outbox on a full tmpfs: a clear disk-full error from the API and the CLI, no
    accepted event lost, and delivery of everything once space returns."""
    figures = faults_client.outbox_disk_full(
        services, fs_kib=8192, free_kib=384, after_full_attempts=5, after_recovery=20
    )
    kit.record(pytestconfig, SUITE, "outbox_disk_full", figures)


@pytest.mark.timeout(240)
def test_partitions_added_and_broker_restarted(
    services: Services, broker: Broker, pytestconfig: pytest.Config
) -> None:
    """The topic grows from 3 to 8 partitions and the broker restarts while 4 processes
    publish 2,000 events: order per correlation id holds after the change, nothing is lost."""
    figures = faults_broker.partitions_added_mid_stream(
        services, broker, events=2_000, publishers=4, before=3, after=8, duration=10.0
    )
    kit.record(pytestconfig, SUITE, "partitions_added", figures)


@pytest.mark.timeout(240)
def test_consumer_group_of_3_with_2_sigkills_and_a_late_join(
    services: Services, pytestconfig: pytest.Config
) -> None:
    """A group of 3 `consume` processes: two SIGKILLed (and restarted with their instance ids),
    one joining late, while 4,000 events flow: exactly the published set in PostgreSQL, and
    every partition owned by a live member with lag 0."""
    from tests.chaos import faults_cluster

    figures = faults_cluster.consumer_group_faults(
        services, events=4_000, publishers=2, duration=8.0, batch_size=200
    )
    kit.record(pytestconfig, SUITE, "consumer_group", figures)
