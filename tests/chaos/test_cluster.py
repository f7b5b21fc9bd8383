"""``make chaos`` on the 3-broker cluster (``KAFKA_BROKERS=3 make services``): replication 3,
``min.insync.replicas=2``. Figures go to ``artifacts/chaos/<test>.json`` (see RELIABILITY.md).

Sizes come from ``CHAOS_CLUSTER_EVENTS`` (events per publisher in the leader-kill scenario,
50,000 by default) so a loaded machine can run a smaller form; the figures record the size.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.chaos import faults_cluster, kit
from tests.chaos.harness import Services

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.cluster]
PER_PUBLISHER = int(os.environ.get("CHAOS_CLUSTER_EVENTS", "50000"))


@pytest.mark.timeout(1800)
def test_busiest_leader_sigkilled_while_8_processes_publish(
    cluster_services: Services, cluster: kit.ClusterControl, pytestconfig: pytest.Config
) -> None:
    """8 publisher processes send 50,000 events each while the broker leading the fullest
    partitions is SIGKILLed and restarted: 0 lost, 0 duplicate rows in PostgreSQL."""
    events = 8 * PER_PUBLISHER
    figures = faults_cluster.leader_kill_while_publishing(
        cluster_services,
        cluster,
        events=events,
        publishers=8,
        kills=1,
        duration=max(20.0, events / 4000),
        chunk=250,
    )
    kit.record(pytestconfig, "chaos", "cluster_leader_sigkill", figures)


@pytest.mark.timeout(900)
def test_two_brokers_stopped_isr_below_minimum(
    cluster_services: Services, cluster: kit.ClusterControl, pytestconfig: pytest.Config
) -> None:
    """Two of three brokers stop for 15 s: the ISR is 1 < min.insync.replicas=2, every
    synchronous publish returns within its bound (spooled), doctor says so, and the detached
    relay delivers everything once the brokers return."""
    figures = faults_cluster.isr_below_minimum(
        cluster_services, cluster, events=20_000, publishers=4, duration=40.0, outage=15.0
    )
    kit.record(pytestconfig, "chaos", "cluster_isr_below_min", figures)


@pytest.mark.timeout(900)
def test_consumer_group_of_3_with_2_sigkills_and_a_late_join(
    cluster_services: Services, pytestconfig: pytest.Config
) -> None:
    """A group of 3 `consume` processes: one SIGKILLed and restarted, one joining late, one
    SIGKILLed for good (its partitions move when its session expires): exactly the published
    set in PostgreSQL, and every partition owned by a live member with lag 0."""
    figures = faults_cluster.consumer_group_faults(
        cluster_services, events=40_000, publishers=2, duration=30.0, restart_second=False
    )
    kit.record(pytestconfig, "chaos", "cluster_consumer_group", figures)


@pytest.mark.timeout(300)
def test_doctor_reports_under_replication_with_one_broker_stopped(
    cluster_services: Services, cluster: kit.ClusterControl
) -> None:
    """With broker 3 stopped the topic's partitions are under-replicated (ISR 2 of 3, still
    >= min.insync.replicas); doctor fails that check and passes once the broker is back."""
    topic = cluster_services.new_topic(6)
    env = cluster_services.publisher_env(topic)

    def replication() -> dict[str, object]:
        proc = kit.cli(env, "doctor", "--json")
        check: dict[str, object] = {c["name"]: c for c in json.loads(proc.stdout)}[
            f"replication {topic}"
        ]
        return check

    assert replication()["ok"]
    cluster.stop(3)
    try:
        check = replication()
        assert not check["ok"]
        assert "6 of 6 partition(s) under-replicated" in str(check["detail"])
        assert "below" not in str(check["detail"])
        assert "publishes still succeed" in str(check["hint"])
    finally:
        cluster.start(3)
    cluster.wait_in_sync(topic)
    assert replication()["ok"]
