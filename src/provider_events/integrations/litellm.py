"""A LiteLLM callback: every routed request becomes a provider selection (and its outcome).

Enable it in the SDK::

    import litellm
    from provider_events.integrations.litellm import ProviderEventsLogger

    litellm.callbacks = [ProviderEventsLogger()]

or in the LiteLLM proxy's ``config.yaml`` (``litellm_settings: callbacks:
provider_events.integrations.litellm.handler``). Install with
``pip install 'provider-events[litellm]'``. Importing :mod:`provider_events` never imports
litellm; this module imports it only for the ``CustomLogger`` base class.

Per call (sync, async, streaming; success and failure) the callback publishes one
``omninode.agent.provider.selected.v1`` event whose ``selection_criteria`` say what LiteLLM
decided: the requested model or model group, the deployment and model that served it, the
routing strategy, the fallbacks tried before it, tokens, LiteLLM's own cost estimate and the
measured latency and time to first token. Where the catalog has the completion event
(``omninode.agent.provider.completed.v1``) it publishes that too, with the same correlation id.

Correlation: the caller's ``metadata={"provider_events_correlation_id": ...}`` when given
(the key is configurable), else LiteLLM's trace id (shared by a request's fallbacks and
retries), else its call id.

The caller never waits for Kafka: the callback copies a few fields into a bounded in-memory
queue (microseconds) and a daemon thread publishes them with the ordinary
:class:`~provider_events.Publisher` (acknowledged, or committed to the durable outbox). It never
raises into LiteLLM. At interpreter exit the queue is drained into the outbox, bounded in time;
if the queue is full the callback commits the event to the outbox itself rather than drop it.

May import: ``publish``, ``events``, ``errors``, ``settings``; litellm.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import queue
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from litellm.integrations.custom_logger import CustomLogger

from provider_events.errors import ProviderEventsError

if TYPE_CHECKING:
    from provider_events.events._envelope import OutgoingEvent
    from provider_events.events._models import ProviderCompletedPayloadV1
    from provider_events.publish._publisher import Delivery, Publisher

__all__ = [
    "CallRecord",
    "ProviderEventsLogger",
    "completion_payload",
    "handler",
    "record_from_litellm",
    "selection_fields",
]

log = logging.getLogger("provider_events.litellm")

#: metadata key a caller may set to correlate LiteLLM calls with its own request id
CORRELATION_KEY = "provider_events_correlation_id"
_MAX_TEXT = 200


@dataclass(slots=True)
class CallRecord:
    """What one LiteLLM call tells us, copied out of its logging payload (plain values only)."""

    provider: str
    served_model: str
    requested_model: str
    correlation_id: str
    status: str  # "success" | "error"
    call_id: str = ""
    model_group: str = ""
    deployment_id: str = ""
    routing_strategy: str = ""
    api_base: str = ""
    attempted_fallbacks: int = 0
    attempted_retries: int = 0
    fallback_from: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error_class: str = ""
    stream: bool = False


def _text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    text = str(value).replace("\x00", "")
    text = "".join(c for c in text if c >= " " and c != "\x7f")
    return text[:_MAX_TEXT] if text.strip() else default


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(0, min(value, 2**53))
    number = _number(value)
    return int(min(number, 2**53)) if number is not None else 0


def _seconds(value: Any) -> float | None:
    """LiteLLM passes datetimes to callbacks and floats in its standard payload."""
    if isinstance(value, datetime):
        return value.timestamp()
    return _number(value)


def record_from_litellm(
    kwargs: Mapping[str, Any],
    response_obj: Any,
    start_time: Any,
    end_time: Any,
    *,
    failed: bool,
    correlation_key: str = CORRELATION_KEY,
) -> CallRecord:
    """Copy what a selection and its outcome need out of LiteLLM's callback arguments."""
    slo: Mapping[str, Any] = kwargs.get("standard_logging_object") or {}
    params: Mapping[str, Any] = kwargs.get("litellm_params") or {}
    raw_metadata: Any = params.get("metadata") or {}
    metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, Mapping) else {}
    slo_meta = slo.get("metadata") or {}
    requester = (
        slo_meta.get("requester_metadata") if isinstance(slo_meta, Mapping) else None
    ) or {}

    caller_id = metadata.get(correlation_key) or (
        requester.get(correlation_key) if isinstance(requester, Mapping) else None
    )
    call_id = _text(slo.get("litellm_call_id") or kwargs.get("litellm_call_id"))
    trace_id = _text(slo.get("trace_id") or kwargs.get("litellm_trace_id"))
    correlation = _text(caller_id) or trace_id or call_id or _text(slo.get("id"))

    model_group = _text(metadata.get("model_group") or slo.get("model_group"))
    original_group = _text(metadata.get("original_model_group"))
    requested = original_group or model_group or _text(kwargs.get("model") or slo.get("model"))
    served = _text(slo.get("model") or kwargs.get("model"), "unknown")
    hidden: Mapping[str, Any] = slo.get("hidden_params") or {}
    if response_obj is not None and not failed:
        # The model the provider says answered (e.g. a dated snapshot of an alias).
        served = _text(getattr(response_obj, "model", None), served)
    previous = metadata.get("previous_models") or ()
    fallback_from: list[str] = []
    if isinstance(previous, Sequence) and not isinstance(previous, str):
        for item in list(previous)[:16]:
            if isinstance(item, Mapping):
                name = _text(item.get("model_group") or item.get("model"))
                if name:
                    fallback_from.append(name)
    usage = slo.get("metadata", {}).get("usage_object") if isinstance(slo_meta, Mapping) else None
    usage = usage or hidden.get("usage_object") or {}
    cache_read = 0
    cache_write = 0
    if isinstance(usage, Mapping):
        cache_read = _count(usage.get("cache_read_input_tokens")) or _count(
            (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
            if isinstance(usage.get("prompt_tokens_details"), Mapping)
            else 0
        )
        cache_write = _count(usage.get("cache_creation_input_tokens"))
    started = _seconds(slo.get("startTime")) or _seconds(start_time)
    ended = _seconds(slo.get("endTime")) or _seconds(end_time)
    first = _seconds(slo.get("completionStartTime"))
    latency = (ended - started) * 1000.0 if started is not None and ended is not None else None
    stream = bool(slo.get("stream") or kwargs.get("stream"))
    ttft = (first - started) * 1000.0 if stream and first and started is not None else None
    error = slo.get("error_information") or {}
    error_class = ""
    if failed:
        exc = kwargs.get("exception")
        error_class = _text(
            (error.get("error_class") if isinstance(error, Mapping) else None)
            or (type(exc).__name__ if exc is not None else None),
            "error",
        )
    provider = (
        _text(slo.get("custom_llm_provider") or params.get("custom_llm_provider"))
        or _host(slo.get("api_base"))
        or "litellm"
    )
    return CallRecord(
        api_base=_text(slo.get("api_base") or hidden.get("api_base")),
        attempted_fallbacks=_count(metadata.get("attempted_fallbacks")),
        attempted_retries=_count(metadata.get("attempted_retries")),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        call_id=call_id,
        correlation_id=correlation,
        cost_usd=_reported_cost(slo, failed),
        deployment_id=_text(metadata.get("model_info", {}).get("id"))
        if isinstance(metadata.get("model_info"), Mapping)
        else _text(slo.get("model_id")),
        ended_at=ended,
        error_class=error_class,
        fallback_from=fallback_from,
        input_tokens=_count(slo.get("prompt_tokens")),
        latency_ms=latency if latency is not None and latency >= 0 else None,
        model_group=model_group,
        output_tokens=_count(slo.get("completion_tokens")),
        provider=provider,
        requested_model=requested or served,
        routing_strategy=_text(metadata.get("routing_strategy")),
        served_model=_strip_provider(served, provider),
        started_at=started,
        status="error" if failed else "success",
        stream=stream,
        ttft_ms=ttft if ttft is not None and ttft >= 0 else None,
    )


def _reported_cost(slo: Mapping[str, Any], failed: bool) -> float | None:
    """LiteLLM's ``response_cost``; ``None`` (unpriced) for a failed call, and for $0 on a call
    that used tokens: LiteLLM reports 0 when it has no price for the model, and an unpriced
    call must never read as free."""
    cost = None if failed else _number(slo.get("response_cost"))
    used = _count(slo.get("prompt_tokens")) + _count(slo.get("completion_tokens"))
    return None if cost == 0.0 and used > 0 else cost


def _strip_provider(model: str, provider: str) -> str:
    """``openai/gpt-4o`` -> ``gpt-4o`` when ``openai`` is the provider (LiteLLM's own prefix)."""
    prefix = f"{provider}/"
    return model[len(prefix) :] if model.startswith(prefix) and len(model) > len(prefix) else model


def _host(url: Any) -> str:
    try:
        return _text(urlsplit(str(url)).hostname)
    except ValueError:
        return ""


def selection_fields(record: CallRecord, *, tenant_id: str | None = None) -> dict[str, Any]:
    """The keyword arguments of ``Publisher.build`` for one call's selection event."""
    criteria: dict[str, Any] = {
        "source": "litellm",
        "requested_model": record.requested_model,
        "served_model": record.served_model,
        "status": record.status,
        "fallbacks_attempted": record.attempted_fallbacks,
        "retries_attempted": record.attempted_retries,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "stream": record.stream,
    }
    if record.model_group:
        criteria["model_group"] = record.model_group
    if record.deployment_id:
        criteria["deployment_id"] = record.deployment_id
    if record.routing_strategy:
        criteria["routing_strategy"] = record.routing_strategy
    if record.fallback_from:
        criteria["fallback_from"] = record.fallback_from
    if record.latency_ms is not None:
        criteria["latency_ms"] = round(record.latency_ms, 3)
        criteria["latency_basis"] = "measured"
    if record.ttft_ms is not None:
        criteria["ttft_ms"] = round(record.ttft_ms, 3)
    if record.cost_usd is not None:
        criteria["cost_usd"] = record.cost_usd
        criteria["cost_source"] = "litellm"
        tokens = record.input_tokens + record.output_tokens
        if tokens > 0 and record.cost_usd > 0:
            criteria["cost_per_token"] = record.cost_usd / tokens
    if record.error_class:
        criteria["error_class"] = record.error_class
    if record.call_id:
        criteria["litellm_call_id"] = record.call_id
    if record.fallback_from:
        reason = (
            f"LiteLLM fell back to {record.served_model} after "
            f"{', '.join(record.fallback_from)} failed"
        )
    elif record.model_group and record.model_group != record.served_model:
        reason = f"LiteLLM routed model group {record.model_group} to {record.served_model}"
    else:
        reason = f"LiteLLM call to {record.served_model}"
    if record.status != "success":
        reason += f" ({record.error_class or 'error'})"
    selected_at = (
        datetime.fromtimestamp(record.started_at, UTC) if record.started_at is not None else None
    )
    return {
        "provider_name": record.provider,
        "model_name": record.served_model,
        "correlation_id": record.correlation_id or None,
        "selection_reason": reason,
        "selection_criteria": criteria,
        "tenant_id": tenant_id,
        "source": "litellm",
        "selected_at": selected_at,
    }


#: UUIDv5 namespace of LiteLLM outcome ids: ``uuid5(NS, f"{call id}:{status}")``.
LITELLM_OUTCOME_NAMESPACE = uuid.UUID("0c6c3a52-95d4-4f0e-8a41-5a3f0e1f7d27")


def completion_payload(record: CallRecord) -> ProviderCompletedPayloadV1:
    """The completion event's payload for one call (raises ``ValueError`` if invalid)."""
    from provider_events.events._models import ProviderCompletedPayloadV1

    ended = record.ended_at if record.ended_at is not None else time.time()
    key = record.call_id or f"{record.correlation_id}:{record.started_at}:{record.served_model}"
    return ProviderCompletedPayloadV1(
        outcome_id=uuid.uuid5(LITELLM_OUTCOME_NAMESPACE, f"{key}:{record.status}"),
        correlation_id=record.correlation_id,
        provider_name=record.provider,
        model_name=record.served_model,
        requested_model=record.requested_model or None,
        completed_at=datetime.fromtimestamp(ended, UTC),
        agent="litellm",
        host=_text(socket.gethostname()) or None,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        cache_read_tokens=record.cache_read_tokens,
        cache_write_5m_tokens=record.cache_write_tokens,
        cost_usd=record.cost_usd,
        cost_source="reported" if record.cost_usd is not None else "unpriced",
        status="ok" if record.status == "success" else "error",
        error=record.error_class or None,
        latency_ms=record.latency_ms,
        request_id=record.call_id or None,
    )


def build_completion(
    payload: ProviderCompletedPayloadV1, publisher: Publisher, tenant_id: str | None
) -> OutgoingEvent:
    from provider_events.events._envelope import build_provider_completion

    return build_provider_completion(
        payload, settings=publisher.settings, tenant_id=tenant_id, source="litellm"
    )


class ProviderEventsLogger(CustomLogger):
    """LiteLLM ``CustomLogger`` publishing a selection (and outcome) per call, off the caller's path.

    ``publisher``: a :class:`~provider_events.Publisher` (default: one from the environment's
    settings, made lazily on the worker thread). ``correlation_key``: the metadata key holding a
    caller-supplied correlation id. ``tenant_id``: the events' tenant (default: the setting).
    ``max_queue``: calls held in memory before the callback writes to the outbox itself.
    """

    def __init__(
        self,
        publisher: Publisher | None = None,
        *,
        correlation_key: str = CORRELATION_KEY,
        tenant_id: str | None = None,
        max_queue: int = 10_000,
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        self._publisher = publisher
        self._correlation_key = correlation_key
        self._tenant_id = tenant_id
        self._queue: queue.Queue[CallRecord | _Marker | None] = queue.Queue(maxsize=max_queue)
        self._batch_size = batch_size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        #: calls seen; events acknowledged or stored, left in the outbox, rejected; failures;
        #: calls written to the outbox by the callback itself because the queue was full
        self.stats = {
            "calls": 0,
            "published": 0,
            "not_delivered": 0,
            "rejected": 0,
            "errors": 0,
            "queue_full": 0,
        }

    # -- LiteLLM's hooks: copy, enqueue, return ----------------------------------------------
    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._record(kwargs, response_obj, start_time, end_time, failed=False)

    def log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._record(kwargs, response_obj, start_time, end_time, failed=True)

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._record(kwargs, response_obj, start_time, end_time, failed=False)

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._record(kwargs, response_obj, start_time, end_time, failed=True)

    def _record(
        self, kwargs: dict[str, Any], response_obj: Any, start: Any, end: Any, *, failed: bool
    ) -> None:
        try:
            record = record_from_litellm(
                kwargs, response_obj, start, end, failed=failed,
                correlation_key=self._correlation_key,
            )  # fmt: skip
            if not self._first_time(record):
                return
            self.stats["calls"] += 1
            self._ensure_worker()
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                self.stats["queue_full"] += 1
                self._spool([record])  # rare: write it durably here rather than drop it
        except Exception:  # never raise into LiteLLM
            self.stats["errors"] += 1
            log.exception("provider-events: could not record a LiteLLM call")

    def _first_time(self, record: CallRecord) -> bool:
        """LiteLLM may report one call through both its sync and async hooks: keep one."""
        key = (record.call_id or f"{record.correlation_id}:{record.started_at}", record.status)
        with self._seen_lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            if len(self._seen) > 4096:
                self._seen.popitem(last=False)
        return True

    # -- the worker ---------------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            return
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._closed = False
                self._worker = threading.Thread(
                    target=self._run, name="provider-events-litellm", daemon=True
                )
                self._worker.start()
                atexit.register(self.close)

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            from provider_events.publish._publisher import Publisher

            self._publisher = Publisher()
        return self._publisher

    def _run(self) -> None:
        while True:
            batch: list[CallRecord] = []
            markers: list[_Marker] = []
            stop = False
            item = self._queue.get()
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, _Marker):
                    markers.append(item)
                else:
                    batch.append(item)
                if stop or len(batch) >= self._batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._publish(batch, "sync")
            for marker in markers:
                marker.done.set()
            if stop:
                return

    def _events(self, records: Sequence[CallRecord]) -> list[OutgoingEvent]:
        from provider_events.errors import InvalidEventError

        events: list[OutgoingEvent] = []
        for record in records:
            try:
                events.append(
                    self.publisher.build(**selection_fields(record, tenant_id=self._tenant_id))
                )
            except InvalidEventError as exc:
                self.stats["rejected"] += 1
                log.warning("provider-events: LiteLLM call not recorded: %s", exc)
            events.extend(self._completion_events(record))
        return events

    def _completion_events(self, record: CallRecord) -> list[OutgoingEvent]:
        """The call's measured outcome (``omninode.agent.provider.completed.v1``), keyed like
        its selection: tokens, LiteLLM's cost (``reported``, or ``unpriced`` when LiteLLM had
        none), latency, and the status or error class."""
        from provider_events.errors import InvalidEventError

        try:
            payload = completion_payload(record)
            return [build_completion(payload, self.publisher, self._tenant_id)]
        except (InvalidEventError, ValueError, TypeError) as exc:
            self.stats["rejected"] += 1
            log.warning("provider-events: LiteLLM outcome not recorded: %s", exc)
            return []

    def _publish(self, records: Sequence[CallRecord], delivery: Delivery) -> None:
        try:
            events = self._events(records)
            if not events:
                return
            results = self.publisher.send_many_sync(events, delivery)
            for result in results:
                if result.delivered or result.status.value in {"stored", "queued"}:
                    self.stats["published"] += 1
                elif result.status.value == "spooled":
                    self.stats["not_delivered"] += 1
                else:
                    self.stats["errors"] += 1
                    log.warning("provider-events: LiteLLM event not stored: %s", result.error)
        except (ProviderEventsError, OSError):
            self.stats["errors"] += 1
            log.exception("provider-events: publishing LiteLLM calls failed")
        except Exception:  # the worker must outlive any surprise
            self.stats["errors"] += 1
            log.exception("provider-events: unexpected error publishing LiteLLM calls")

    def _spool(self, records: Sequence[CallRecord]) -> None:
        self._publish(records, "background")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait (bounded) until every call recorded so far is published or spooled."""
        deadline = time.monotonic() + timeout
        done = threading.Event()
        self._ensure_worker()
        try:
            self._queue.put(_Marker(done), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker: publish what is queued (bounded), spool what is left."""
        if self._closed:
            return
        self._closed = True
        worker = self._worker
        if worker is not None and worker.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=1.0)
            worker.join(timeout)
        left: list[CallRecord] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Marker):
                item.done.set()
            elif item is not None:
                left.append(item)
        if left:
            self._spool(left)


class _Marker:
    """A queue item that only signals the worker reached it (see :meth:`flush`)."""

    __slots__ = ("done",)

    def __init__(self, done: threading.Event) -> None:
        self.done = done


#: The instance the LiteLLM proxy's config names: ``callbacks: provider_events.integrations.litellm.handler``
handler = ProviderEventsLogger()
