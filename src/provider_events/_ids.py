"""Identifiers and timestamps: UUIDv4 event ids, UUIDv7 correlation ids, RFC 3339 UTC times."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

__all__ = ["format_timestamp", "new_correlation_id", "new_event_id", "utc_now", "uuid7"]


def uuid7(unix_ms: int | None = None) -> uuid.UUID:
    """A time-ordered UUID version 7 (RFC 9562 section 5.7)."""
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def new_event_id() -> uuid.UUID:
    """A random UUID version 4: the event's identity and the idempotency key end to end."""
    return uuid.uuid4()


def new_correlation_id() -> str:
    """A UUIDv7 string, used when the caller gives no correlation id."""
    return str(uuid7())


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix and microseconds, e.g. ``2025-11-13T14:30:00.000001Z``."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
