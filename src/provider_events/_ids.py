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


def new_event_id() -> str:
    """A random UUID version 4 string: the event's identity and idempotency key end to end.

    Formatted directly from 16 random bytes (twice as fast as ``str(uuid.uuid4())``).
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_correlation_id() -> str:
    """A UUIDv7 string, used when the caller gives no correlation id."""
    return str(uuid7())


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix and microseconds, e.g. ``2025-11-13T14:30:00.000001Z``."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
