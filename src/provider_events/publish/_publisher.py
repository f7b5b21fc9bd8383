"""Publishing: the async :class:`Publisher`, its sync twin methods and the guide's functions.

Both twins share every step but the wait: building and validating the event and mapping a
delivery report to a :class:`PublishResult` (pure), and spooling what was not acknowledged,
which does I/O (an fsync'd SQLite commit to the outbox and, with ``relay_autostart``, spawning
a relay process). They differ only in how they wait for the broker.
Nothing here raises for transport problems; every wait is bounded by ``delivery_timeout``.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from provider_events.errors import InvalidEventError, OutboxError, OutboxFullError
from provider_events.events._envelope import (
    EventParts,
    OutgoingEvent,
    build_provider_selection,
    provider_selection_parts,
)
from provider_events.publish._outbox import Outbox
from provider_events.publish._result import DeliveryStatus, FailureReason, PublishResult
from provider_events.settings import Settings, load_settings

if TYPE_CHECKING:
    from provider_events.publish._producer import DeliveryGroup, SharedProducer

__all__ = [
    "Delivery",
    "Publisher",
    "add_observer",
    "publish_provider_selection",
    "publish_provider_selection_sync",
]

Delivery = Literal["sync", "background"]
#: Observers see every result: (result, provider_name, model_name, seconds spent).
Observer = Callable[[PublishResult, str, str, float], None]
_observers: list[Observer] = []
_INVALID = FailureReason.INVALID
#: A message the broker did not acknowledge: (its index in the batch, error, reason).
Unacknowledged = tuple[int, str, FailureReason]
#: Starts producing a group, given the callback to run once every report is in.
Start = Callable[[Callable[[], None]], "tuple[DeliveryGroup, SharedProducer, float]"]


def add_observer(observer: Observer) -> None:
    """Register a callable told about every publish result (metrics use this)."""
    if observer not in _observers:
        _observers.append(observer)


class Publisher:
    """Publishes catalogued events to Kafka (or the local sink) without losing any.

    ``delivery="sync"`` waits for the broker's acknowledgement up to ``delivery_timeout``;
    an event not acknowledged by then is committed to the outbox (``status == "spooled"``).
    ``delivery="background"`` commits to the outbox and returns at once; the relay delivers.
    """

    def __init__(self, settings: Settings | None = None, *, outbox: bool = True) -> None:
        self.settings = settings or load_settings()
        self._use_outbox = outbox
        self._outbox: Outbox | None = None

    # -- shared steps (building is pure; spooling commits to the outbox, may start a relay) --
    def build(
        self,
        *,
        provider_name: str,
        model_name: str,
        selection_reason: str,
        correlation_id: str | uuid.UUID | None = None,
        selection_criteria: dict[str, Any] | None = None,
        causation_id: str | uuid.UUID | None = None,
        tenant_id: str | None = None,
        namespace: str | None = None,
        source: str | None = None,
        selected_at: datetime | None = None,
    ) -> OutgoingEvent:
        """Build and validate one provider-selection event (raises ``InvalidEventError``).

        ``correlation_id`` is the partition key (``None``: a new UUIDv7); ``tenant_id``,
        ``namespace`` and ``source`` default to the settings'; ``selected_at`` to now (an
        aware datetime).
        """
        return build_provider_selection(
            settings=self.settings,
            provider_name=provider_name,
            model_name=model_name,
            selection_reason=selection_reason,
            correlation_id=correlation_id,
            selection_criteria=selection_criteria,
            causation_id=causation_id,
            tenant_id=tenant_id,
            namespace=namespace,
            source=source,
            selected_at=selected_at,
        )

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            from provider_events.publish._relay import destination_of

            s = self.settings
            self._outbox = Outbox(
                s.resolved_outbox_path,
                s.outbox_max_events,
                s.outbox_max_bytes,
                destination=destination_of(s),
            )
        return self._outbox

    def _notify(
        self, result: PublishResult, event: OutgoingEvent | None, started: float
    ) -> PublishResult:
        if _observers:
            provider = event.provider_name if event else ""
            model = event.model_name if event else ""
            for observer in _observers:
                observer(result, provider, model, time.perf_counter() - started)
        return result

    def _notify_all(
        self, results: list[PublishResult], events: Sequence[OutgoingEvent], started: float
    ) -> list[PublishResult]:
        notify_all(results, ((e.provider_name, e.model_name) for e in events), started)
        return results

    def _spool(
        self,
        events: Sequence[OutgoingEvent],
        reason: str,
        status: DeliveryStatus,
        why: FailureReason | None = None,
    ) -> list[PublishResult]:
        """Commit ``events`` to the outbox as ``status``; ``why`` is the :class:`FailureReason`
        of a spool (``None`` for background delivery, which is no failure)."""
        if not self._use_outbox:
            return [
                PublishResult(
                    DeliveryStatus.FAILED,
                    e.event_id,
                    e.topic,
                    error=reason,
                    retriable=True,
                    reason=why or FailureReason.OTHER,
                )
                for e in events
            ]
        try:
            self.outbox.add(events, error=reason if status is DeliveryStatus.SPOOLED else None)
        except OutboxError as exc:
            text = (
                f"{reason}; and not spooled: {exc}"
                if status is DeliveryStatus.SPOOLED
                else str(exc)
            )
            lost = (
                FailureReason.OUTBOX_FULL
                if isinstance(exc, OutboxFullError)
                else FailureReason.OUTBOX_ERROR
            )
            return [
                PublishResult(DeliveryStatus.FAILED, e.event_id, e.topic, error=text, reason=lost)
                for e in events
            ]
        if self.settings.relay_autostart:
            from provider_events.publish._relay import ensure_relay

            ensure_relay(self.settings)
        return [
            PublishResult(status, e.event_id, e.topic, error=reason, retriable=True, reason=why)
            for e in events
        ]

    def _store_locally(self, events: Sequence[OutgoingEvent]) -> list[PublishResult]:
        from provider_events.store._local import LocalEventStore

        try:
            LocalEventStore.for_settings(self.settings).add(events)
        except OutboxError as exc:
            return [
                PublishResult(
                    DeliveryStatus.FAILED,
                    e.event_id,
                    e.topic,
                    error=str(exc),
                    reason=FailureReason.OUTBOX_ERROR,
                )
                for e in events
            ]
        return [PublishResult(DeliveryStatus.STORED, e.event_id, e.topic) for e in events]

    def _straight_to_kafka(self) -> bool:
        """Whether synchronous events go straight to Kafka: the Kafka sink, and no spooled
        events that some of them might have to queue behind (see :meth:`_behind_backlog`)."""
        if self.settings.sink == "local":
            return False
        if not self._use_outbox or not self.outbox.exists():
            return True
        try:
            return not self.outbox.pending()
        except OutboxError:
            return True  # as _behind_backlog: an unreadable outbox holds no backlog to honour

    def _behind_backlog(self, events: Sequence[OutgoingEvent]) -> set[int]:
        """Indexes of events whose key still has spooled events: they queue behind them."""
        if not self._use_outbox or not self.outbox.exists():
            return set()
        try:
            if not self.outbox.pending():
                return set()
            return {i for i, e in enumerate(events) if self.outbox.has_key(e.key)}
        except OutboxError:
            return set()

    def _route(
        self, events: Sequence[OutgoingEvent], delivery: Delivery
    ) -> tuple[list[PublishResult | None], list[int]]:
        """Decide per event: finished now (local, background, behind a backlog) or to send."""
        results: list[PublishResult | None] = [None] * len(events)
        if self.settings.sink == "local":
            return list(self._store_locally(events)), []
        if delivery == "background":
            return list(
                self._spool(events, "queued for background delivery", DeliveryStatus.QUEUED)
            ), []
        if delivery != "sync":
            raise InvalidEventError(f"delivery must be 'sync' or 'background', got {delivery!r}")
        behind = self._behind_backlog(events)
        if behind:
            queued = self._spool(
                [events[i] for i in sorted(behind)],
                "queued behind earlier spooled events with the same key",
                DeliveryStatus.SPOOLED,
                FailureReason.BACKLOG,
            )
            for i, result in zip(sorted(behind), queued, strict=True):
                results[i] = result
        return results, [i for i in range(len(events)) if i not in behind]

    def _produce(
        self,
        events: Sequence[OutgoingEvent],
        indexes: Sequence[int],
        on_done: Callable[[], None] | None = None,
    ) -> tuple[DeliveryGroup, SharedProducer, float]:
        """Hand the events at ``indexes`` to the producer; returns its group and deadline."""
        from provider_events.publish._producer import get_producer

        deadline = time.monotonic() + self.settings.delivery_timeout
        producer = get_producer(self.settings)
        chosen = events if len(indexes) == len(events) else [events[i] for i in indexes]
        # a generator: each message's tuple lives only while it is handed over
        messages = ((e.topic, e.key, e.value, e.headers) for e in chosen)
        group = producer.produce_group(messages, deadline, on_done, size=len(chosen))
        return group, producer, deadline

    def _settle(
        self,
        events: Sequence[OutgoingEvent],
        indexes: Sequence[int],
        group: DeliveryGroup,
        producer: SharedProducer,
        results: list[PublishResult | None],
    ) -> list[PublishResult]:
        """Map the group's reports to results; spool everything not acknowledged."""
        producer.release(group, f"not acknowledged within {self.settings.delivery_timeout:g}s")
        unacknowledged: list[Unacknowledged] = []
        for report, i in zip(group.reports, indexes, strict=True):
            assert report is not None  # release() reported every pending message
            error, partition, offset, _, why = report
            e = events[i]
            if error is None:
                results[i] = PublishResult(
                    DeliveryStatus.DELIVERED, e.event_id, e.topic, partition, offset
                )
            else:
                unacknowledged.append((i, error, why or FailureReason.KAFKA_ERROR))
        if unacknowledged:
            self._spool_unacknowledged(
                [events[i] for i, _, _ in unacknowledged], unacknowledged, results
            )
        return _settled(results)

    def _spool_unacknowledged(
        self,
        events: Sequence[OutgoingEvent],
        unacknowledged: Sequence[Unacknowledged],
        results: list[PublishResult | None],
    ) -> None:
        """Commit the events the broker did not acknowledge to the outbox, each result keeping
        its own delivery error and reason."""
        first_error, first_why = unacknowledged[0][1], unacknowledged[0][2]
        spooled = self._spool(events, first_error, DeliveryStatus.SPOOLED, first_why)
        for (i, error, why), result in zip(unacknowledged, spooled, strict=True):
            results[i] = (
                result
                if result.status is not DeliveryStatus.SPOOLED
                else PublishResult(
                    result.status,
                    result.event_id,
                    result.topic,
                    error=error,
                    retriable=True,
                    reason=why,
                )
            )

    # -- sync twin --------------------------------------------------------------------------
    def send_many_sync(
        self, events: Sequence[OutgoingEvent], delivery: Delivery = "sync"
    ) -> list[PublishResult]:
        started = time.perf_counter()
        pending, indexes = self._route(events, delivery)
        if indexes:
            group, producer, deadline = self._produce(events, indexes)
            group.done.wait(max(0.0, deadline - time.monotonic()))
            results = self._settle(events, indexes, group, producer, pending)
        else:
            results = _settled(pending)
        return self._notify_all(results, events, started)

    def publish_sync(
        self,
        *,
        provider_name: str,
        model_name: str,
        selection_reason: str,
        correlation_id: str | uuid.UUID | None = None,
        selection_criteria: dict[str, Any] | None = None,
        causation_id: str | uuid.UUID | None = None,
        tenant_id: str | None = None,
        namespace: str | None = None,
        source: str | None = None,
        selected_at: datetime | None = None,
        delivery: Delivery = "sync",
    ) -> PublishResult:
        """Build, validate and publish one event (the fields are :meth:`build`'s); returns a
        :class:`PublishResult`, never raises for invalid input or transport problems."""
        started = time.perf_counter()
        try:
            event = self.build(
                provider_name=provider_name,
                model_name=model_name,
                selection_reason=selection_reason,
                correlation_id=correlation_id,
                selection_criteria=selection_criteria,
                causation_id=causation_id,
                tenant_id=tenant_id,
                namespace=namespace,
                source=source,
                selected_at=selected_at,
            )
        except InvalidEventError as exc:
            return self._notify(
                PublishResult(DeliveryStatus.REJECTED, error=str(exc), reason=_INVALID),
                None,
                started,
            )
        return self.send_many_sync([event], delivery)[0]

    # -- async twin -------------------------------------------------------------------------
    async def send_many(
        self, events: Sequence[OutgoingEvent], delivery: Delivery = "sync"
    ) -> list[PublishResult]:
        started = time.perf_counter()
        pending, indexes = self._route(events, delivery)
        if indexes:
            group, producer = await delivered(
                lambda wake: self._produce(events, indexes, on_done=wake)
            )
            results = self._settle(events, indexes, group, producer, pending)
        else:
            results = _settled(pending)
        return self._notify_all(results, events, started)

    async def publish(
        self,
        *,
        provider_name: str,
        model_name: str,
        selection_reason: str,
        correlation_id: str | uuid.UUID | None = None,
        selection_criteria: dict[str, Any] | None = None,
        causation_id: str | uuid.UUID | None = None,
        tenant_id: str | None = None,
        namespace: str | None = None,
        source: str | None = None,
        selected_at: datetime | None = None,
        delivery: Delivery = "sync",
    ) -> PublishResult:
        """Async twin of :meth:`publish_sync`."""
        started = time.perf_counter()
        try:
            event = self.build(
                provider_name=provider_name,
                model_name=model_name,
                selection_reason=selection_reason,
                correlation_id=correlation_id,
                selection_criteria=selection_criteria,
                causation_id=causation_id,
                tenant_id=tenant_id,
                namespace=namespace,
                source=source,
                selected_at=selected_at,
            )
        except InvalidEventError as exc:
            return self._notify(
                PublishResult(DeliveryStatus.REJECTED, error=str(exc), reason=_INVALID),
                None,
                started,
            )
        return (await self.send_many([event], delivery))[0]

    async def publish_many(
        self, selections: Iterable[Mapping[str, Any]], delivery: Delivery = "sync"
    ) -> list[PublishResult]:
        """Publish many selections (dicts of :meth:`publish` keywords) with one wait.

        Invalid ones come back ``rejected`` in their place; the rest are sent together.
        """
        if type(self).build is not Publisher.build:  # a subclass builds its own way
            return await self._publish_built(selections, delivery)
        # Compact events (plain tuples, see EventParts): no OutgoingEvent nor header list per
        # event stays alive while the batch is in flight.
        events: list[EventParts] = []
        #: (position, result) of each rejected selection, in order
        rejected: list[tuple[int, PublishResult]] = []
        settings = self.settings
        for position, fields in enumerate(selections):
            try:
                events.append(provider_selection_parts(settings=settings, **fields))
            except InvalidEventError as exc:
                rejected.append(
                    (
                        position,
                        PublishResult(DeliveryStatus.REJECTED, error=str(exc), reason=_INVALID),
                    )
                )
        from provider_events.publish._fast import publish_parts

        results = await publish_parts(self, events, delivery) if events else []
        return _merge(results, rejected)

    async def _publish_built(
        self, selections: Iterable[Mapping[str, Any]], delivery: Delivery
    ) -> list[PublishResult]:
        events: list[OutgoingEvent] = []
        rejected: list[tuple[int, PublishResult]] = []
        for position, fields in enumerate(selections):
            try:
                events.append(self.build(**fields))
            except InvalidEventError as exc:
                rejected.append(
                    (
                        position,
                        PublishResult(DeliveryStatus.REJECTED, error=str(exc), reason=_INVALID),
                    )
                )
        results = await self.send_many(events, delivery) if events else []
        return _merge(results, rejected)

    def close(self) -> None:
        if self._outbox is not None:
            self._outbox.close()


def notify_all(
    results: Sequence[PublishResult], names: Iterable[tuple[str, str]], started: float
) -> None:
    """Tell every observer about every result; ``names``: each one's (provider, model)."""
    if not _observers:  # nobody to tell: skip a call per event
        return
    for result, (provider, model) in zip(results, names, strict=True):
        for observer in _observers:
            observer(result, provider, model, time.perf_counter() - started)


async def delivered(start: Start) -> tuple[DeliveryGroup, SharedProducer]:
    """Run ``start`` and wait, without blocking the event loop, until every report of its
    group is in or its deadline passed (the producer's poll thread wakes this loop)."""
    import asyncio

    loop = asyncio.get_running_loop()
    all_done = loop.create_future()

    def finish() -> None:
        if not all_done.done():
            all_done.set_result(None)

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # loop closed: the caller is gone
            loop.call_soon_threadsafe(finish)

    group, producer, deadline = start(wake)
    if not group.done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(all_done), max(0.0, deadline - time.monotonic()))
    return group, producer


def _settled(results: list[PublishResult | None]) -> list[PublishResult]:
    """``results`` once every place is filled (routed, or settled from a delivery report)."""
    return cast("list[PublishResult]", results)


def _merge(
    results: list[PublishResult], rejected: list[tuple[int, PublishResult]]
) -> list[PublishResult]:
    """``results`` with each ``(position, rejection)`` put back in its caller's place."""
    if not rejected:
        return results
    merged: list[PublishResult] = []
    sent = iter(results)
    for position, result in rejected:
        merged.extend(itertools.islice(sent, position - len(merged)))
        merged.append(result)
    merged.extend(sent)
    return merged


# -- the guide's functions -------------------------------------------------------------------
_default: Publisher | None = None
_default_lock = threading.Lock()


def _default_publisher() -> Publisher:
    """The guide functions' publisher; settings are read at each call, so a changed
    environment (or ``.env``) takes effect, while the Kafka producer stays shared."""
    global _default
    settings = load_settings()
    with _default_lock:
        if _default is None or _default.settings != settings:
            # The old one is not closed here: another thread may be mid-call on it (closing its
            # outbox connection would fail that call's spool); it closes when collected.
            _default = Publisher(settings)
        return _default


def _criteria(selection_criteria: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The guide's ``selection_criteria`` as the builder takes it (any mapping becomes a dict;
    anything else is passed on for the builder to refuse)."""
    if isinstance(selection_criteria, Mapping):
        return dict(selection_criteria)
    return selection_criteria


async def publish_provider_selection(
    provider_name: str,
    model_name: str,
    correlation_id: str | uuid.UUID | None = None,
    selection_reason: str = "",
    selection_criteria: Mapping[str, Any] | None = None,
    causation_id: str | uuid.UUID | None = None,
    *,
    tenant_id: str | None = None,
    delivery: Delivery = "sync",
) -> bool:
    """Publish one provider selection; ``True`` only once the broker acknowledged it.

    The positional order is the reference implementation's (``causation_id`` is the sixth).

    ``False`` means not (yet) delivered: the event was spooled to the outbox when Kafka did
    not answer within the delivery timeout (it will be delivered later), or it was invalid.
    Transport errors are never raised. ``delivery="background"`` returns ``False`` at once
    with the event committed to the outbox. Details: ``Publisher().publish(...)``.
    """
    result = await _default_publisher().publish(
        provider_name=provider_name,
        model_name=model_name,
        correlation_id=correlation_id,
        selection_reason=selection_reason,
        selection_criteria=_criteria(selection_criteria),
        causation_id=causation_id,
        tenant_id=tenant_id,
        delivery=delivery,
    )
    return result.delivered


def publish_provider_selection_sync(
    provider_name: str,
    model_name: str,
    correlation_id: str | uuid.UUID | None = None,
    selection_reason: str = "",
    selection_criteria: Mapping[str, Any] | None = None,
    causation_id: str | uuid.UUID | None = None,
    *,
    tenant_id: str | None = None,
    delivery: Delivery = "sync",
) -> bool:
    """Synchronous twin of :func:`publish_provider_selection`; safe inside a running loop."""
    result = _default_publisher().publish_sync(
        provider_name=provider_name,
        model_name=model_name,
        correlation_id=correlation_id,
        selection_reason=selection_reason,
        selection_criteria=_criteria(selection_criteria),
        causation_id=causation_id,
        tenant_id=tenant_id,
        delivery=delivery,
    )
    return result.delivered
