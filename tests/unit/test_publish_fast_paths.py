"""The publish hot path's shortcuts are the plain code's exact twins.

Pooled UUIDv4 event ids, the slot-setting ``delivered_result`` and the compact
``EventParts`` form of an event each replace a slower standard construction; these tests pin
them to it.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest

from provider_events.events import _ids
from provider_events.events._envelope import (
    build_provider_selection,
    event_from_parts,
    header_dict,
    header_list,
    provider_selection_parts,
)
from provider_events.events._ids import new_event_id
from provider_events.publish._fast import delivered_result
from provider_events.publish._result import DeliveryStatus, PublishResult
from provider_events.settings import load_settings

SETTINGS = load_settings(environ={"HOME": "/nonexistent"}, dotenv=Path("/nonexistent/.env"))


def test_event_ids_are_unique_rfc_uuid4_strings() -> None:
    ids = [new_event_id() for _ in range(3 * _ids._POOL_SIZE + 7)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case hex, 8-4-4-4-12
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every one of the 122 random bits varies (no bit stuck by the masks)
    ints = [uuid.UUID(t).int for t in ids]
    fixed = (0xF << 76) | (0x3 << 62)
    varying = 0
    for value in ints:
        varying |= value ^ ints[0]
    assert varying == ((1 << 128) - 1) & ~fixed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_never_reuses_the_parents_pooled_ids() -> None:
    new_event_id()  # the pool now holds ids the parent will hand out next
    assert _ids._pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.write(write, (",".join(new_event_id() for _ in range(5))).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split(","))
    parent = {new_event_id() for _ in range(_ids._POOL_SIZE)}
    assert len(child) == 5 and not child & parent


def test_delivered_result_is_the_dataclass_result() -> None:
    fast = delivered_result("e-1", "topic", 3, 12345)
    plain = PublishResult(DeliveryStatus.DELIVERED, "e-1", "topic", 3, 12345)
    assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
    assert dataclasses.asdict(fast) == dataclasses.asdict(plain)
    assert [f.name for f in dataclasses.fields(PublishResult)] == [
        "status",
        "event_id",
        "topic",
        "partition",
        "offset",
        "error",
        "retriable",
        "reason",
    ], "a new field must be set by delivered_result too"
    assert fast.delivered and fast.accepted and bool(fast)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.offset = 1  # type: ignore[misc]


def test_compact_event_is_the_built_event() -> None:
    fields = {
        "provider_name": "claude",
        "model_name": "claude-3-5-sonnet",
        "correlation_id": "req-1",
        "selection_reason": "why",
        "selection_criteria": {"latency_ms": 5},
        "tenant_id": "acme",
    }
    parts = provider_selection_parts(settings=SETTINGS, **fields)
    event = event_from_parts(parts)
    assert header_list(parts) == event.headers and header_list(parts) is not event.headers
    assert list(header_dict(parts).items()) == event.headers  # same names, values, order
    built = build_provider_selection(settings=SETTINGS, **fields)
    assert [name for name, _ in event.headers] == [name for name, _ in built.headers]
    assert (event.event_type, event.topic, event.key) == (built.event_type, built.topic, built.key)
    assert (event.provider_name, event.model_name) == ("claude", "claude-3-5-sonnet")
    same = [h for h in event.headers if h[0] not in ("event_id", "ce_id", "ce_time")]
    assert same == [h for h in built.headers if h[0] not in ("event_id", "ce_id", "ce_time")]
    assert dict(event.headers)["event_id"] == event.event_id.encode()
