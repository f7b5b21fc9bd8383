"""The typed outcome of a publish call."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DeliveryStatus", "FailureReason", "PublishResult"]


class DeliveryStatus(StrEnum):
    """Where an event is after a publish call returned."""

    DELIVERED = "delivered"  #: the broker acknowledged it (partition and offset are known)
    STORED = "stored"  #: local sink: committed to the embedded event store
    QUEUED = "queued"  #: background mode: committed to the outbox; the relay delivers it
    SPOOLED = "spooled"  #: not acknowledged within the bound; committed to the outbox
    REJECTED = "rejected"  #: invalid input; nothing was sent or stored
    FAILED = "failed"  #: neither delivered nor spooled (e.g. outbox full); see ``error``


class FailureReason(StrEnum):
    """Why an event was not delivered at once: set where the failure is known (the producer's
    delivery report, the outbox, validation), and the ``reason`` label of
    ``provider_events_publish_failures_total``."""

    TIMEOUT = "timeout"  #: not acknowledged within the delivery timeout
    BROKER_UNAVAILABLE = "broker_unavailable"  #: every broker down / connection refused
    QUEUE_FULL = "queue_full"  #: librdkafka's local queue stayed full until the deadline
    KAFKA_ERROR = "kafka_error"  #: any other error reported by the Kafka client
    BACKLOG = "backlog"  #: queued behind earlier spooled events with the same key (order)
    OUTBOX_FULL = "outbox_full"  #: not delivered and refused by the full outbox: not kept
    OUTBOX_ERROR = "outbox_error"  #: not delivered and the outbox (or local store) failed
    INVALID = "invalid"  #: rejected before sending: the input failed validation
    OTHER = "other"

    @classmethod
    def from_error(cls, error: str | None, *, failed: bool = False) -> FailureReason:
        """The reason an error text describes, for a result made without one (by a caller,
        or by code older than this field). Results this package makes carry theirs."""
        text = (error or "").lower()
        if failed:
            if re.search(r"outbox .* is full \(", text):  # OutboxFullError's message
                return cls.OUTBOX_FULL
            if "not spooled" in text or text.startswith(("outbox", "cannot open outbox")):
                return cls.OUTBOX_ERROR
        if "queued behind" in text:
            return cls.BACKLOG
        if any(s in text for s in ("not acknowledged within", "timed out", "timeout")):
            return cls.TIMEOUT
        if any(
            s in text for s in ("brokers are down", "all_brokers_down", "_transport", "refused")
        ):
            return cls.BROKER_UNAVAILABLE
        if "queue is full" in text or "queue_full" in text:
            return cls.QUEUE_FULL
        return cls.KAFKA_ERROR if text else cls.OTHER


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What happened to one event. ``bool(result)`` is true only when it reached its sink."""

    status: DeliveryStatus
    event_id: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    error: str | None = None
    retriable: bool = False
    #: Why it was not delivered at once (``None`` when delivered, stored or queued).
    reason: FailureReason | None = None

    @property
    def delivered(self) -> bool:
        return self.status in (DeliveryStatus.DELIVERED, DeliveryStatus.STORED)

    @property
    def accepted(self) -> bool:
        """True when the event is safe: delivered, stored, or durably in the outbox."""
        return self.status not in (DeliveryStatus.REJECTED, DeliveryStatus.FAILED)

    def __bool__(self) -> bool:
        return self.delivered
