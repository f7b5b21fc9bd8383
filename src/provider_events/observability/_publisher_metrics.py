"""Prometheus metrics for long-lived publisher processes, switched on with one call.

``enable_publisher_metrics(port=9465)`` registers an observer on every publish result
(:func:`provider_events.publish._publisher.add_observer`) and an outbox-backlog reader, and serves
``/metrics`` (the project's registry, :data:`provider_events.observability._metrics.REGISTRY`). Nothing is
recorded until it is called, so short-lived CLI and hook runs pay nothing: their selections
are counted at ingest by the consumer instead.

What a publish result records (metric objects live in :mod:`provider_events.observability._metrics`):

- ``provider_selection_total{provider,model}`` and ``provider_selection_duration_seconds{provider}``
  for every valid selection, whatever happened to its event (the duration is the publish call's,
  broker acknowledgement included);
- ``provider_events_publish_failures_total{reason}`` for every result not delivered at once
  (spooled, failed or rejected), ``reason`` the result's :class:`FailureReason` (a fixed set,
  :data:`FAILURE_REASONS`);
- ``provider_events_publish_spooled_total`` for every event committed to the outbox because the
  broker did not acknowledge it in time.

``provider_events_outbox_pending_events`` and ``provider_events_outbox_oldest_age_seconds`` are
read from :meth:`Outbox.status` when Prometheus scrapes, at most once per scrape.

Label values stay bounded: failure reasons come from a fixed set, and provider and model names
(already validated: short, no control characters) are capped at :data:`MAX_PROVIDERS` and
:data:`MAX_MODELS` distinct values per process, later ones reported as ``"other"``.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

from provider_events.observability._metrics import (
    MAX_MODELS,
    MAX_PROVIDERS,
    OTHER,
    selection_labels,
)
from provider_events.publish._result import DeliveryStatus, FailureReason, PublishResult

if TYPE_CHECKING:
    from provider_events.publish._outbox import Outbox, OutboxStatus
    from provider_events.settings import Settings

__all__ = [
    "FAILURE_REASONS",
    "MAX_MODELS",
    "MAX_PROVIDERS",
    "OTHER",
    "enable_publisher_metrics",
    "failure_reason",
]

#: Every value ``provider_events_publish_failures_total{reason}`` can take.
FAILURE_REASONS: tuple[str, ...] = tuple(r.value for r in FailureReason)

_NOT_FAILURES = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.STORED, DeliveryStatus.QUEUED})


def failure_reason(result: PublishResult) -> str | None:
    """The bounded failure reason of ``result``, or ``None`` when it is not a failure.

    It is ``result.reason``, set where the failure happened. A result made by hand without a
    reason (a caller's own ``PublishResult(status, error=...)``) is ``invalid`` when rejected,
    else classified once by :meth:`FailureReason.from_error`.
    """
    status = result.status
    if status in _NOT_FAILURES:
        return None
    if result.reason is not None:
        return result.reason.value
    if status is DeliveryStatus.REJECTED:
        return FailureReason.INVALID.value
    return FailureReason.from_error(result.error, failed=status is DeliveryStatus.FAILED).value


def _observe(result: PublishResult, provider: str, model: str, seconds: float) -> None:
    from provider_events.observability import _metrics as m

    if result.status is not DeliveryStatus.REJECTED and provider:
        provider_label, model_label = selection_labels(provider, model)
        m.PROVIDER_SELECTION.labels(provider=provider_label, model=model_label).inc()
        m.PROVIDER_SELECTION_DURATION.labels(provider=provider_label).observe(seconds)
    reason = failure_reason(result)
    if reason is not None:
        m.PUBLISH_FAILURES.labels(reason=reason).inc()
    if result.status is DeliveryStatus.SPOOLED:
        m.PUBLISH_SPOOLED.inc()


class _OutboxReader:
    """Reads the outbox's status for the gauges, once per scrape (cached for ``ttl`` seconds)."""

    def __init__(self, outbox: Outbox, ttl: float = 0.5) -> None:
        self.outbox = outbox
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = -math.inf
        self._status: OutboxStatus | None = None
        self._failed = False

    def _read(self) -> OutboxStatus | None:
        from provider_events.errors import OutboxError

        with self._lock:
            now = time.monotonic()
            if now - self._at >= self.ttl:
                self._at = now
                try:
                    # An outbox that was never written to has no file: nothing is waiting.
                    self._status = self.outbox.status() if self.outbox.exists() else None
                    self._failed = False
                except OutboxError:
                    self._status, self._failed = None, True
            return self._status

    def pending(self) -> float:
        status = self._read()
        if self._failed:
            return math.nan
        return float(status.pending) if status else 0.0

    def oldest_age_seconds(self) -> float:
        status = self._read()
        if self._failed:
            return math.nan
        return float(status.oldest_age_seconds or 0.0) if status else 0.0


_enable_lock = threading.Lock()
_reader: _OutboxReader | None = None


def enable_publisher_metrics(
    port: int | None = None,
    addr: str = "127.0.0.1",
    *,
    settings: Settings | None = None,
) -> int | None:
    """Record publisher metrics in this process and, with ``port``, serve them on ``/metrics``.

    Returns the bound port (``port=0`` picks a free one), or ``None`` without ``port``: the
    metrics are then only recorded in :data:`provider_events.observability._metrics.REGISTRY`, for an
    exporter the application already runs (serve :func:`provider_events.observability._metrics.render`).
    ``addr`` defaults to loopback; use ``"0.0.0.0"`` for a Prometheus on another host.
    Safe to call more than once: the observer is registered once, the outbox gauges follow the
    latest ``settings`` (default: :func:`load_settings`), and an address already served is kept.
    """
    from provider_events.observability import _metrics as m
    from provider_events.publish._outbox import Outbox
    from provider_events.publish._publisher import add_observer
    from provider_events.settings import load_settings

    global _reader
    s = settings or load_settings()
    with _enable_lock:
        add_observer(_observe)
        if _reader is not None:
            _reader.outbox.close()
        outbox = Outbox(s.resolved_outbox_path, s.outbox_max_events, s.outbox_max_bytes)
        _reader = _OutboxReader(outbox)
        m.OUTBOX_PENDING.set_function(_reader.pending)
        m.OUTBOX_OLDEST_AGE.set_function(_reader.oldest_age_seconds)
    return None if port is None else m.start_metrics_server(port, addr)
