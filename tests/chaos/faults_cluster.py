"""Faults on a 3-broker cluster (``KAFKA_BROKERS=3 make services``) and in a consumer group:
the leader of the busiest partitions SIGKILLed under 8 publishers, the ISR pushed below
``min.insync.replicas``, and a group of 3 ``consume`` processes with SIGKILLs and a late join."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.chaos import faults_broker, kit
from tests.chaos.harness import Services, check_exact, finish_drivers, start_drivers
from tests.support import committed, migrated_schema


# -- a. the busiest leader SIGKILLed while 8 processes publish ------------------------------------
@dataclass
class LeaderKiller:
    """The ``Broker`` that :func:`faults_broker.broker_kill_while_publishing` kills: each
    ``kill`` SIGKILLs the broker leading the fullest partitions of the scenario's topic (the
    newest one ``services`` made), ``start`` restarts that broker."""

    cluster: kit.ClusterControl
    services: Services
    victims: list[int] = field(default_factory=list)
    leaders_before: list[dict[int, int]] = field(default_factory=list)

    def kill(self) -> None:
        topic = self.services.topics[-1]
        self.leaders_before.append({p: v[0] for p, v in self.cluster.partitions(topic).items()})
        self.victims.append(self.cluster.busiest_leader(topic))
        self.cluster.kill(self.victims[-1])

    def stop(self) -> None:
        topic = self.services.topics[-1]
        self.victims.append(self.cluster.busiest_leader(topic))
        self.cluster.stop(self.victims[-1])

    def start(self) -> None:
        self.cluster.start(self.victims[-1])


def leader_kill_while_publishing(
    services: Services,
    cluster: kit.ClusterControl,
    *,
    events: int,
    publishers: int = 8,
    kills: int = 1,
    duration: float = 30.0,
    chunk: int = 250,
) -> dict[str, Any]:
    """The single-broker scenario (``broker_kill_while_publishing``) on the cluster: topics
    with 3 replicas and ``min.insync.replicas=2``; each fault SIGKILLs the broker that leads
    the busiest partitions, and restarts it. 0 lost, 0 duplicate rows."""
    killer = LeaderKiller(cluster, services)
    figures = faults_broker.broker_kill_while_publishing(
        services,
        killer,
        events=events,
        publishers=publishers,
        kills=kills,
        duration=duration,
        chunk=chunk,
    )
    topic = services.topics[-1]
    led = [
        sum(1 for leader in before.values() if leader == v)
        for before, v in zip(killer.leaders_before, killer.victims, strict=True)
    ]
    in_sync_s = cluster.wait_in_sync(topic)
    return {
        "killed_brokers": killer.victims,
        "partitions_led_by_killed": led,
        "replication": "3 replicas, min.insync.replicas=2",
        **figures,
        "replicas_in_sync_after_s": round(in_sync_s, 2),
    }


# -- b. two brokers stopped: the ISR below min.insync.replicas ---------------------------------------
def isr_below_minimum(
    services: Services,
    cluster: kit.ClusterControl,
    *,
    events: int,
    publishers: int = 4,
    duration: float = 30.0,
    outage: float = 10.0,
    chunk: int = 50,
    delivery_timeout: float = 2.0,
    drain_timeout: float = 240.0,
) -> dict[str, Any]:
    """Publishers send ``events`` synchronously over ``duration`` seconds; a third of the way in
    two of the three brokers stop for ``outage`` seconds, so every partition's ISR is 1 < 2:
    each call returns within the bound (the events spool), doctor reports the ISR below the
    minimum, and once the brokers are back the detached relay alone delivers everything."""
    work = services.workdir
    topic = services.new_topic(6)
    env = services.publisher_env(
        topic,
        PROVIDER_EVENTS_DELIVERY_TIMEOUT=str(delivery_timeout),
        PROVIDER_EVENTS_OUTBOX_MAX_EVENTS=str(max(100_000, events * 2)),
    )
    outbox = services.outbox()
    stopped = [b for b in cluster.brokers() if b != 1][:2]
    with migrated_schema(services.database_url, "chaos_isr") as schema:
        consumer = services.consumer(schema.dsn, topic)
        consumer.start()
        try:
            began = time.monotonic()
            procs = start_drivers(
                env,
                work,
                publishers,
                events // publishers,
                chunk=chunk,
                duration=duration,
                cids=200,
            )
            time.sleep(max(0.0, began + duration / 3 - time.monotonic()))
            down_at = time.monotonic()
            stop_s = [round(cluster.stop(b), 2) for b in stopped]
            down_wall = time.time()  # from here the ISR is 1
            min_isr_at = time.monotonic()
            min_isr_seen = cluster.min_isr(topic)
            doctor = kit.cli(dict(env, PROVIDER_EVENTS_DELIVERY_TIMEOUT="5"), "doctor", "--json")
            doctor_s = time.monotonic() - min_isr_at
            checks = {c["name"]: c for c in json.loads(doctor.stdout)}
            time.sleep(max(0.0, down_at + outage - time.monotonic()))
            up_wall = time.time()
            isr_low_s = time.monotonic() - min_isr_at
            start_s = [round(cluster.start(b), 2) for b in stopped]
            up_at = time.monotonic()
            run = finish_drivers(procs, timeout=duration + 300)
            published_at = time.monotonic()
            # No manual relay: the detached relay the spooling publishes started delivers.
            drained_s = kit.wait_until(
                lambda: outbox.pending() == 0, drain_timeout, "the detached relay to drain", 0.2
            )
            drained_at = time.monotonic()
            consumer.wait_rows(len(set(run.accepted)), "the consumer to store every event")
            caught_up = time.monotonic()
            consumer.stop()
            exact = check_exact(schema.dsn, run.accepted)
        finally:
            consumer.close()
            for proc, _ in procs:
                if proc.poll() is None:
                    proc.kill()
    assert not run.errors and len(run.accepted) == events - events % publishers, (
        run.statuses,
        run.errors[:3],
    )
    replication = checks[f"replication {topic}"]
    assert min_isr_seen == 1, f"ISR did not shrink to 1 with brokers {stopped} stopped"
    assert not replication["ok"] and "ISR below min.insync.replicas=2" in replication["detail"]
    during = [c for c in run.calls if down_wall <= c[1] <= up_wall]
    spooled_during = sum(c[2].get("spooled", 0) + c[2].get("queued", 0) for c in during)
    delivered_during = sum(c[2].get("delivered", 0) for c in during)
    assert spooled_during > 0 and delivered_during == 0, (spooled_during, delivered_during)
    slowest = max(run.call_seconds)
    assert slowest <= 2 * delivery_timeout + 1, run.over(delivery_timeout + 0.5)[:3]
    return {
        "events": len(run.accepted),
        "publishers": publishers,
        "brokers_stopped": stopped,
        "broker_stop_s": stop_s,
        "isr_1_for_s": round(isr_low_s, 2),
        "doctor_s": round(doctor_s, 2),
        "broker_start_s": start_s,
        "outage_s": round(up_at - down_at, 2),
        "min_isr_during_outage": min_isr_seen,
        "doctor_during_outage": replication["detail"][:120],
        "statuses": run.statuses,
        "calls_during_outage": len(during),
        "spooled_during_outage": spooled_during,
        "bound_s": delivery_timeout,
        "max_call_s": round(slowest, 3),
        "p99_call_s": round(kit.percentile(run.call_seconds, 0.99), 3),
        "manual_relay": False,
        "relay_drained_after_publishers_s": round(drained_s, 2),
        "drained_after_brokers_back_s": round(drained_at - up_at, 2),
        "publishing_ended_after_brokers_back_s": round(published_at - up_at, 2),
        **exact,
        "total_s": round(caught_up - began, 1),
    }


# -- c. a consumer group of 3: 2 SIGKILLs and a late join -----------------------------------------------
def consumer_group_faults(
    services: Services,
    *,
    events: int,
    publishers: int = 2,
    duration: float = 20.0,
    restart_second: bool = True,
    batch_size: int = 500,
    settle_timeout: float = 120.0,
) -> dict[str, Any]:
    """Members A and B of one group start; while events flow A is SIGKILLed and restarted
    (same ``group.instance.id``), C joins late, and B is SIGKILLed (restarted too unless
    ``restart_second`` is false: then its partitions must move once its session expires).
    The table ends with exactly the published set, and every partition is owned by a live
    member with nothing left to read."""
    work = services.workdir
    topic = services.new_topic(6)
    env = services.publisher_env(topic)
    group = f"chaos-group-{uuid.uuid4().hex[:10]}"
    with migrated_schema(services.database_url, "chaos_group") as schema:
        members = {
            name: kit.ConsumerProcess(
                schema.dsn,
                services.bootstrap,
                topic,
                group,
                work,
                label=name,
                extra=("--instance-id", f"{group}-{name}", "--batch-size", str(batch_size)),
            )
            for name in ("a", "b", "c")
        }
        began = time.monotonic()
        procs = start_drivers(
            env, work, publishers, events // publishers, chunk=100, duration=duration, cids=300
        )
        steps: list[tuple[str, float]] = []
        try:
            members["a"].start()
            members["b"].start()

            def at(fraction: float, what: str) -> None:
                target = events * fraction

                def reached() -> bool:
                    for m in members.values():
                        if m.runs and m.proc is not None and m.proc.returncode is None:
                            m.assert_alive()
                    return kit.table_count(schema.dsn) >= target

                kit.wait_until(reached, 240, f"{target:.0f} rows", 0.05)
                steps.append((what, round(time.monotonic() - began, 2)))

            at(0.2, "kill a")
            members["a"].kill()
            members["a"].start()
            at(0.4, "c joins")
            members["c"].start()
            at(0.6, "kill b")
            members["b"].kill()
            if restart_second:
                members["b"].start()
            run = finish_drivers(procs, timeout=duration + 300)
            live = [m for m in members.values() if m.running]
            kit.wait_until(
                lambda: kit.table_count(schema.dsn) >= len(set(run.accepted)),
                300,
                "the group to store every published event",
                0.2,
            )
            caught_up = time.monotonic()
            ends = kit.end_offsets(services.bootstrap, topic)
            owners: dict[str, list[int]] = {}

            def settled() -> bool:
                nonlocal owners
                for m in live:
                    m.assert_alive()
                owners = kit.group_owners(services.bootstrap, group, topic)
                owned = sorted(p for parts in owners.values() for p in parts)
                return (
                    owned == sorted(ends)
                    and set(owners) == {f"{group}-{n}" for n, m in members.items() if m.running}
                    and committed(services.bootstrap, group, topic) == ends
                )

            settled_s = kit.wait_until(settled, settle_timeout, "every partition owned, lag 0", 0.5)
            totals = {name: m.stop() for name, m in members.items() if m in live}
            exact = check_exact(schema.dsn, run.accepted)
        finally:
            for m in members.values():
                m.close()
            for proc, _ in procs:
                if proc.poll() is None:
                    proc.kill()
    assert not run.errors, run.errors[:3]
    return {
        "events": len(run.accepted),
        "partitions": len(ends),
        "members_at_end": len(owners),
        "owners_at_end": {k.rsplit("-", 1)[1]: v for k, v in owners.items()},
        "steps_s": steps,
        "second_kill_restarted": restart_second,
        **exact,
        "reread_duplicates_skipped": sum(t.get("duplicates", 0) for t in totals.values()),
        "settled_after_catch_up_s": round(settled_s, 2),
        "total_s": round(caught_up - began, 1),
    }
