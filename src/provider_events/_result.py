"""The typed outcome of a publish call."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DeliveryStatus", "PublishResult"]


class DeliveryStatus(StrEnum):
    """Where an event is after a publish call returned."""

    DELIVERED = "delivered"  #: the broker acknowledged it (partition and offset are known)
    STORED = "stored"  #: local sink: committed to the embedded event store
    QUEUED = "queued"  #: background mode: committed to the outbox; the relay delivers it
    SPOOLED = "spooled"  #: not acknowledged within the bound; committed to the outbox
    REJECTED = "rejected"  #: invalid input; nothing was sent or stored
    FAILED = "failed"  #: neither delivered nor spooled (e.g. outbox full); see ``error``


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

    @property
    def delivered(self) -> bool:
        return self.status in (DeliveryStatus.DELIVERED, DeliveryStatus.STORED)

    @property
    def accepted(self) -> bool:
        """True when the event is safe: delivered, stored, or durably in the outbox."""
        return self.status not in (DeliveryStatus.REJECTED, DeliveryStatus.FAILED)

    def __bool__(self) -> bool:
        return self.delivered
