"""Broker faults: a SIGKILL while 8 processes publish (scenario 1), partitions added and the
broker restarted mid-stream (scenario 5)."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

from tests.chaos import kit
from tests.chaos.harness import (
    Broker,
    DriverRun,
    Sampler,
    Services,
    check_exact,
    drain_outbox,
    finish_drivers,
    start_drivers,
    wait_relay_exit,
)
from tests.support import migrated_schema


# -- 1. broker SIGKILL while 8 processes publish ------------------------------------------------------
def broker_kill_while_publishing(
    services: Services,
    broker: Broker,
    *,
    events: int,
    publishers: int = 8,
    kills: int = 1,
    duration: float = 30.0,
    chunk: int = 250,
    delivery_timeout: float = 3.0,
) -> dict[str, Any]:
    """``publishers`` processes send ``events`` over ``duration`` seconds while the broker is
    SIGKILLed ``kills`` times and restarted; a consumer child ingests all along. Every accepted
    ``event_id`` must end in PostgreSQL exactly once."""
    work = services.workdir
    topic = services.new_topic(6)
    env = services.publisher_env(
        topic,
        PROVIDER_EVENTS_DELIVERY_TIMEOUT=str(delivery_timeout),
        PROVIDER_EVENTS_OUTBOX_MAX_EVENTS=str(max(100_000, events * 2)),
    )
    outbox = services.outbox()
    with migrated_schema(services.database_url, "chaos_kill") as schema:
        consumer = services.consumer(schema.dsn, topic)
        consumer.start()
        try:
            with Sampler(outbox.path, schema.dsn) as sampler:
                began = time.monotonic()
                procs = start_drivers(
                    env,
                    work,
                    publishers,
                    events // publishers,
                    chunk=chunk,
                    duration=duration,
                    cids=500,
                )
                downtimes, restarted_at, kill_walls = [], 0.0, []
                for k in range(kills):
                    due = began + duration * (0.25 + 0.5 * k / max(1, kills))
                    time.sleep(max(0.0, due - time.monotonic()))
                    down = time.monotonic()
                    kill_walls.append(time.time())
                    broker.kill()
                    broker.start()
                    restarted_at = time.monotonic()
                    downtimes.append(restarted_at - down)
                    consumer.assert_alive()
                run = finish_drivers(procs, timeout=duration + 300)
                published_at = time.monotonic()
                manual_relay = drain_outbox(env, outbox, timeout=180)
                drained_at = time.monotonic()
                consumer.wait_rows(
                    len(set(run.accepted)), "the consumer to store every accepted event"
                )
                caught_up = time.monotonic()
            totals = consumer.stop()
            wait_relay_exit(env)
            exact = check_exact(schema.dsn, run.accepted)
        finally:
            consumer.close()
    on_topic = kit.read_topic(services.bootstrap, topic)
    assert {m.event_id for m in on_topic} == set(run.accepted), "topic differs from accepted set"
    slow = run.over(delivery_timeout + 0.5)
    # The bound caps the broker wait; spooling adds local work. Twice the bound catches a
    # regression like the outbox's full-table scan under the write lock (calls of 14.5 s).
    assert max(run.call_seconds) <= 2 * delivery_timeout, slow[:3]
    assert not run.errors and len(run.accepted) == events - events % publishers, (
        run.statuses,
        run.errors[:3],
    )
    return {
        "events": len(run.accepted),
        "publishers": publishers,
        "broker_kills": kills,
        "broker_down_s": round(max(downtimes), 2),
        "statuses": run.statuses,
        "max_call_s": round(max(run.call_seconds), 3),
        "p99_call_s": round(kit.percentile(run.call_seconds, 0.99), 3),
        "bound_s": delivery_timeout,
        "calls_over_bound": len(slow),
        "calls": len(run.calls),
        "slowest_calls": [
            {
                "s": s,
                "after_kill_s": round(at - max((k for k in kill_walls if k <= at), default=at), 2),
                "why": why,
                **kinds,
            }
            for s, at, kinds, why in slow[:5]
        ],
        "outbox_peak": sampler.peak_backlog,
        "relay_resumed_after_restart_s": _rounded(sampler.relay_resumed_after(restarted_at)),
        "manual_relay": manual_relay,
        "on_topic": len(on_topic),
        "redeliveries_on_topic": kit.redeliveries(on_topic),
        "consumer_duplicates_skipped": totals["duplicates"],
        **exact,
        "recover_s": round(caught_up - restarted_at, 2),
        "drain_after_publishers_s": round(drained_at - published_at, 2),
        "total_s": round(caught_up - began, 1),
    }


# -- 5. partitions added and the broker restarted mid-stream ------------------------------------------
#: ``seq`` of the first event each correlation id gets after the change.
LATE_SEQ = 1_000_000


@dataclass(frozen=True, slots=True)
class _Seen:
    partition: int
    offset: int
    seq: int
    t: float


def _per_key(messages: list[kit.TopicMessage]) -> dict[bytes, list[_Seen]]:
    """First copy of each event, grouped by key, in (partition, offset) order."""
    first: dict[str, kit.TopicMessage] = {}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        first.setdefault(m.event_id, m)
    out: dict[bytes, list[_Seen]] = {}
    for m in first.values():
        criteria = json.loads(m.value)["payload"]["selection_criteria"]
        out.setdefault(m.key or b"", []).append(
            _Seen(m.partition, m.offset, criteria["seq"], criteria["t"])
        )
    return out


def partitions_added_mid_stream(
    services: Services,
    broker: Broker,
    *,
    events: int,
    publishers: int = 4,
    before: int = 3,
    after: int = 8,
    duration: float = 30.0,
    settle: float = 2.0,
) -> dict[str, Any]:
    """Half the events go out while the topic grows from ``before`` to ``after`` partitions and
    the broker restarts; the other half (the same correlation ids) after that. Events published
    after the change: each id's events sit on one partition (the one the new count gives) in
    publishing order; nothing is lost."""
    work = services.workdir
    topic = services.new_topic(before)
    env = services.publisher_env(topic, PROVIDER_EVENTS_DELIVERY_TIMEOUT="3")
    outbox = services.outbox()
    half, per = duration / 2, events // 2 // publishers
    with migrated_schema(services.database_url, "chaos_partitions") as schema:
        consumer = services.consumer(schema.dsn, topic)
        consumer.start()
        try:
            began = time.monotonic()
            first = start_drivers(
                env, work, publishers, per, "-a", chunk=50, duration=half, cids=40
            )
            time.sleep(max(0.0, began + half * 0.5 - time.monotonic()))
            changed_wall = time.time()
            kit.add_partitions(services.bootstrap, topic, after)
            broker.stop()
            broker.start()
            restarted_at = time.monotonic()
            early = finish_drivers(first, timeout=half + 300)
            time.sleep(max(0.0, restarted_at + settle - time.monotonic()))
            consumer.assert_alive()
            second = start_drivers(
                env,
                work,
                publishers,
                per,
                "-b",
                chunk=50,
                duration=half,
                cids=40,
                seq_start=LATE_SEQ,
            )
            late = finish_drivers(second, timeout=half + 300)
            run = DriverRun(
                early.accepted + late.accepted,
                {
                    k: early.statuses.get(k, 0) + late.statuses.get(k, 0)
                    for k in {*early.statuses, *late.statuses}
                },
                early.call_seconds + late.call_seconds,
                early.errors + late.errors,
            )
            published_at = time.monotonic()
            manual_relay = drain_outbox(env, outbox, timeout=180)
            drained_at = time.monotonic()
            consumer.wait_rows(
                len(set(run.accepted)),
                "the consumer to store every accepted event (new partitions included)",
            )
            caught_up = time.monotonic()
            consumer.stop()
            wait_relay_exit(env)
            exact = check_exact(schema.dsn, run.accepted)
        finally:
            consumer.close()
    assert not run.errors, run.errors[:3]
    on_topic = kit.read_topic(services.bootstrap, topic)
    assert {m.event_id for m in on_topic} == set(run.accepted)
    assert kit.partition_count(services.bootstrap, topic) == after
    keys = _per_key(on_topic)
    violations_after, split_after, off_partition, moved = 0, 0, 0, 0
    after_events, before_events, violations_any = 0, 0, 0
    for key, seen in keys.items():
        for p in {s.partition for s in seen}:  # in each partition, publishing order
            seqs = [s.seq for s in seen if s.partition == p]
            violations_any += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
        later = sorted((s for s in seen if s.seq >= LATE_SEQ), key=lambda s: s.offset)
        before_events += sum(1 for s in seen if s.t < changed_wall)
        after_events += len(later)
        if not later:
            continue
        if len({s.partition for s in later}) > 1:
            split_after += 1
        seqs = [s.seq for s in later]
        violations_after += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
        want = kit.murmur2_partition(key, after)
        off_partition += sum(1 for s in later if s.partition != want)
        moved += want != kit.murmur2_partition(key, before)
    # Events whose call ended before the change (built more than the 3 s bound plus a margin
    # earlier) went to the old count's murmur2 partition: the test's model of the partitioner.
    early_cut = changed_wall - 5.0
    early_off = sum(
        1
        for key, seen in keys.items()
        for s in seen
        if s.t < early_cut and s.partition != kit.murmur2_partition(key, before)
    )
    assert after_events > 0 and moved > 0, (after_events, moved)
    assert early_off == 0, f"{early_off} early events not on their murmur2 partition"
    assert split_after == 0, f"{split_after} correlation ids split over partitions after the change"
    assert off_partition == 0, f"{off_partition} late events not on the new murmur2 partition"
    assert violations_after == 0, f"{violations_after} out-of-order events after the change"
    return {
        "events": len(run.accepted),
        "partitions": f"{before}->{after}",
        "correlation_ids": len(keys),
        "ids_moved_partition": moved,
        "events_before_change": before_events,
        "events_after_change": after_events,
        "order_violations_after_change": violations_after,
        "ids_split_after_change": split_after,
        "order_violations_within_partitions_overall": violations_any,
        "statuses": run.statuses,
        **exact,
        "redeliveries_on_topic": kit.redeliveries(on_topic),
        "manual_relay": manual_relay,
        "publishing_ended_after_restart_s": round(published_at - restarted_at, 2),
        "outbox_drained_after_restart_s": round(drained_at - restarted_at, 2),
        "late_statuses": late.statuses,
        "recover_s": round(caught_up - restarted_at, 2),
        "total_s": round(caught_up - began, 1),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
