"""``doctor``'s replication check: offline, below-min-ISR and under-replicated partitions."""

from __future__ import annotations

from provider_events.observability._doctor import PartitionState, replication_check


def _states(*isrs: tuple[int, ...], leader: int = 1) -> list[PartitionState]:
    return [PartitionState(i, leader, (1, 2, 3), isr) for i, isr in enumerate(isrs)]


def test_complete_isr_passes_and_says_the_replication_factor() -> None:
    check = replication_check("t", _states((1, 2, 3), (2, 3, 1)), 2)
    assert check.ok
    assert check.name == "replication t"
    assert check.detail == "replication factor 3, every ISR complete, min.insync.replicas 2"


def test_a_single_broker_topic_passes() -> None:
    check = replication_check("t", [PartitionState(0, 1, (1,), (1,))], 1)
    assert check.ok and "replication factor 1" in check.detail


def test_under_replicated_fails_but_says_publishes_still_succeed() -> None:
    check = replication_check("t", _states((1, 2, 3), (1, 2), (2, 3)), 2)
    assert not check.ok
    assert "2 of 3 partition(s) under-replicated [1, 2]" in check.detail
    assert "below" not in check.detail
    assert "publishes still succeed" in check.hint


def test_isr_below_min_insync_replicas_is_named_with_the_smallest_isr() -> None:
    check = replication_check("t", _states((1,), (1, 2), (3,)), 2)
    assert not check.ok
    assert "2 of 3 partition(s) with ISR below min.insync.replicas=2 (smallest ISR 1) [0, 2]" in (
        check.detail
    )
    assert "3 of 3 partition(s) under-replicated" in check.detail
    assert "NOT_ENOUGH_REPLICAS" in check.hint and "outbox" in check.hint


def test_a_topic_whose_replication_factor_is_below_the_minimum_is_reported() -> None:
    states = [PartitionState(p, 1, (1,), (1,)) for p in range(3)]
    check = replication_check("t", states, 2)
    assert (
        not check.ok and "3 of 3 partition(s) with ISR below min.insync.replicas=2" in check.detail
    )
    assert "under-replicated" not in check.detail


def test_offline_partitions_and_unknown_minimum() -> None:
    states = [PartitionState(0, -1, (1, 2, 3), ()), PartitionState(1, 2, (1, 2, 3), (1, 2, 3))]
    check = replication_check("t", states, None)
    assert not check.ok
    assert "1 of 2 partition(s) without a leader [0]" in check.detail
    assert "min.insync.replicas unknown" in check.detail


def test_many_partitions_are_abbreviated() -> None:
    states = [PartitionState(p, 1, (1, 2, 3), (1, 2)) for p in range(20)]
    check = replication_check("t", states, 2)
    assert "20 of 20 partition(s) under-replicated [0, 1, 2, 3, 4, 5, 6, 7, ...]" in check.detail
