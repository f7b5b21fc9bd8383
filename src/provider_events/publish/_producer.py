"""The process-wide Kafka producer: one per configuration, a poll thread, bounded exit flush.

confluent-kafka (librdkafka) does the protocol work. This module owns everything that touches
it on the produce side, and translates its errors into short, secret-free strings.

librdkafka defaults worth overriding, and why:
  * ``enable.idempotence``: off by default; on, so a retry never duplicates within a session.
  * ``partitioner``: CRC32 by default; ``murmur2_random`` puts a key on the same partition as the
    Java and aiokafka producers do.
  * ``message.timeout.ms``: 5 minutes by default; set to the delivery bound so nothing waits
    longer than the caller was promised.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from provider_events._retry import Backoff
from provider_events.publish._result import FailureReason
from provider_events.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Producer

__all__ = ["DeliveryGroup", "SharedProducer", "get_producer", "kafka_config", "shutdown_producers"]

log = logging.getLogger("provider_events.kafka")
#: How long to serve delivery reports before trying a message librdkafka's full queue refused.
_QUEUE_FULL_RETRY = Backoff(0.005, 0.05)
# librdkafka logs reach Python logging; without a handler configured by the application they
# must not fall through to logging.lastResort and spray the CLI user's stderr.
logging.getLogger("provider_events").addHandler(logging.NullHandler())


def kafka_config(settings: Settings, *, for_consumer: bool = False) -> dict[str, Any]:
    """librdkafka configuration shared by producers, consumers and admin clients."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": settings.kafka_client_id,
        "security.protocol": settings.kafka_security_protocol,
        "socket.connection.setup.timeout.ms": max(1000, int(settings.delivery_timeout * 1000)),
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
        "log.connection.close": False,
        "logger": log,
    }
    if settings.kafka_sasl_mechanism:
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        conf["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password:
        conf["sasl.password"] = settings.kafka_sasl_password.reveal()
    if settings.kafka_ssl_ca_location:
        conf["ssl.ca.location"] = settings.kafka_ssl_ca_location
    if not for_consumer:
        timeout_ms = max(1, int(settings.delivery_timeout * 1000))
        conf.update(
            {
                "enable.idempotence": True,
                "acks": "all",
                "partitioner": "murmur2_random",
                "linger.ms": 5,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 500_000,
                "compression.type": settings.kafka_compression_type,
                "message.timeout.ms": timeout_ms,
                "message.max.bytes": settings.kafka_message_max_bytes,
                "request.timeout.ms": min(30_000, max(1000, timeout_ms)),
            }
        )
    return conf


def describe_kafka_error(err: Any) -> str:
    """A one-line, secret-free description of a librdkafka ``KafkaError``."""
    try:
        name, text = err.name(), err.str()
    except AttributeError:
        return str(err)
    return f"{name}: {text}" if text and text != name else str(name)


#: A delivery report: (error or None, partition, offset, retriable, why it failed or None).
Report = tuple[str | None, int | None, int | None, bool, FailureReason | None]

#: librdkafka error names that mean the broker could not be reached.
_UNREACHABLE = frozenset({"_ALL_BROKERS_DOWN", "_TRANSPORT", "_RESOLVE", "_NODE_DOWN"})
_KAFKA_ERROR = FailureReason.KAFKA_ERROR
_TIMED_OUT = frozenset({"_MSG_TIMED_OUT", "_TIMED_OUT", "REQUEST_TIMED_OUT"})


def kafka_failure_reason(err: Any) -> FailureReason:
    """The :class:`FailureReason` of a librdkafka ``KafkaError``, from its code's name."""
    try:
        name = err.name()
    except AttributeError:
        return FailureReason.KAFKA_ERROR
    if name in _TIMED_OUT:
        return FailureReason.TIMEOUT
    if name in _UNREACHABLE:
        return FailureReason.BROKER_UNAVAILABLE
    if name == "_QUEUE_FULL":
        return FailureReason.QUEUE_FULL
    return FailureReason.KAFKA_ERROR


class DeliveryGroup:
    """Delivery reports of a group of messages produced together (one publish call).

    Each message gets exactly one report: the broker's, or a failure (timeout, all brokers
    down, refused). The first report wins; later ones only mean a duplicate on the topic.
    ``done`` is set when every message has its report; ``on_done`` then runs (any thread).
    """

    __slots__ = ("_lock", "_on_done", "done", "remaining", "reports")

    def __init__(self, size: int, on_done: Callable[[], None] | None = None) -> None:
        #: per message: (error or None, partition, offset, retriable, why), None while pending
        self.reports: list[Report | None] = [None] * size
        self.remaining = size
        self.done = threading.Event()
        self._on_done = on_done
        self._lock = threading.Lock()
        if size == 0:
            self.done.set()

    def report(
        self,
        index: int,
        error: str | None,
        partition: int | None,
        offset: int | None,
        retriable: bool,
        why: FailureReason | None = None,
    ) -> None:
        with self._lock:
            if self.reports[index] is not None:
                return
            self.reports[index] = (error, partition, offset, retriable, why)
            self.remaining -= 1
            finished = self.remaining == 0
        if finished:
            self.done.set()
            if self._on_done is not None:
                self._on_done()

    def delivered(self, index: int, err: Any, msg: Any) -> None:
        """librdkafka's delivery report for message ``index``."""
        _OnDelivery(self, index)(err, msg)

    def fail_pending(
        self, reason: str, retriable: bool = True, why: FailureReason = FailureReason.KAFKA_ERROR
    ) -> None:
        for index, current in enumerate(self.reports):
            if current is None:
                self.report(index, reason, None, None, retriable, why)


class _OnDelivery(msgspec.Struct, gc=False):
    """The delivery callback of message ``index`` of ``group``: one per message produced.

    A msgspec Struct with ``gc=False`` rather than a ``functools.partial``: half the cost to
    make, and never tracked by the cyclic GC, which otherwise walks every callback of a large
    batch still in flight at each collection. It is safe untracked: nothing it refers to (the
    group, its reports and lock) ever refers back to it.
    """

    group: Any
    index: int

    def __call__(self, err: Any, msg: Any) -> None:
        group = self.group
        if err is not None:
            group.report(
                self.index,
                describe_kafka_error(err),
                None,
                None,
                bool(err.retriable()),
                kafka_failure_reason(err),
            )
            return
        # DeliveryGroup.report inlined: this runs once per message on the poll thread,
        # holding the GIL the caller needs to build the next events.
        report = (None, msg.partition(), msg.offset(), False, None)
        with group._lock:
            reports = group.reports
            if reports[self.index] is not None:
                return
            reports[self.index] = report
            group.remaining -= 1
            if group.remaining:
                return
        group.done.set()
        if group._on_done is not None:
            group._on_done()


class SharedProducer:
    """A librdkafka producer with a poll thread that serves delivery reports.

    ``produce_group`` never blocks longer than the given deadline. When the client reports
    that all brokers are down, or that the broker refused its credentials, every waiting
    delivery is failed at once (fail fast), the queued copies are purged, and for a second new
    messages are not handed to librdkafka at all, so a caller that spools them does not also
    leave a copy queued for later.
    """

    DOWN_PROBE_INTERVAL = 1.0

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import KafkaError, Producer

        self._kafka_error = KafkaError
        self.settings = settings
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._groups: set[DeliveryGroup] = set()
        self._down_since: float | None = None
        #: Why the broker refused us (wrong SASL credentials), while ``_down_since`` is set.
        self.auth_error: str | None = None
        self._last_probe = 0.0
        self.fatal_error: str | None = None
        self._purge_requested = False
        conf = kafka_config(settings)
        conf["error_cb"] = self._on_error
        self._producer: Producer | _DestroyedProducer = Producer(conf)
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._poll_loop, name="provider-events-poll", daemon=True
        )
        self._thread.start()

    # -- callbacks (poll thread) ------------------------------------------------------------
    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            try:
                self._producer.poll(0.05)
                if self._purge_requested:
                    self._purge_requested = False
                    # Every waiter was already failed (and its event spooled): drop the queued
                    # copies so a broker that comes back does not receive them twice.
                    self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            except Exception:  # a report handler must never kill the poll thread
                log.exception("delivery report failed")

    def _on_error(self, err: Any) -> None:
        code = err.code()
        if err.fatal():
            self.fatal_error = describe_kafka_error(err)
            self._fail_all(self.fatal_error)
        elif code == self._kafka_error._AUTHENTICATION:
            # Reported just before _ALL_BROKERS_DOWN; no retry succeeds until the credentials
            # are fixed, so callers hear the real reason now rather than after the timeout.
            # librdkafka's text names the mechanism and broker, never the password.
            self.auth_error = (
                f"Kafka authentication failed ({describe_kafka_error(err)}); check "
                "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
            )
            self._down_since = time.monotonic()
            self._fail_all(self.auth_error)
            self._purge_requested = True
        elif code == self._kafka_error._ALL_BROKERS_DOWN:
            self._down_since = time.monotonic()
            self._fail_all(describe_kafka_error(err), FailureReason.BROKER_UNAVAILABLE)
            self._purge_requested = True
        log.debug("kafka client error: %s", describe_kafka_error(err))

    def _fail_all(self, reason: str, why: FailureReason = FailureReason.KAFKA_ERROR) -> None:
        with self._lock:
            groups, self._groups = self._groups, set()
        for group in groups:
            group.fail_pending(reason, why=why)

    # -- API --------------------------------------------------------------------------------
    @property
    def known_down(self) -> bool:
        """True while the client recently reported every broker down (probes once a second)."""
        if self._down_since is None:
            return False
        now = time.monotonic()
        if now - self._last_probe >= self.DOWN_PROBE_INTERVAL:
            self._last_probe = now
            return False
        return True

    def produce_group(
        self,
        messages: Iterable[tuple[str, bytes, bytes, list[tuple[str, bytes]]]],
        deadline: float,
        on_done: Callable[[], None] | None = None,
        *,
        size: int | None = None,
    ) -> DeliveryGroup:
        """Hand (topic, key, value, headers) messages to librdkafka; reports go to the group.

        Report ``i`` is message ``i``'s. ``messages`` may be a generator when ``size`` says how
        many it yields. (Compact batches take :func:`provider_events.publish._fast.produce_parts`.)
        """
        if size is None:
            assert isinstance(messages, Sequence), "pass size= with a generator of messages"
            size = len(messages)
        group, accepting = self.open_group(size, on_done)
        if not accepting:
            return group
        # Typed loosely on purpose: confluent-kafka's stub wants dict[str, str | bytes | None]
        # headers (invariant), ours are dict[str, bytes], which it takes as they are.
        produce: Callable[..., None] = self._producer.produce
        on_delivery = _OnDelivery
        for index, (topic, key, value, headers) in enumerate(messages):
            try:
                produce(topic, value, key, headers=headers, on_delivery=on_delivery(group, index))
            except BufferError:
                self.produce_when_room(group, index, topic, key, value, headers, deadline)
            except Exception as exc:  # KafkaException, TypeError: refused before sending
                group.report(index, f"{type(exc).__name__}: {exc}", None, None, False, _KAFKA_ERROR)
        return group

    @property
    def client(self) -> Producer | _DestroyedProducer:
        """The librdkafka producer itself (the compact fast path produces through it)."""
        return self._producer

    def open_group(
        self, size: int, on_done: Callable[[], None] | None
    ) -> tuple[DeliveryGroup, bool]:
        """A new group of ``size`` messages, and whether to produce them: not when the client
        failed fatally or recently reported every broker down (the group is failed already)."""
        group = DeliveryGroup(size, on_done)
        if self.fatal_error:
            group.fail_pending(self.fatal_error, retriable=False)
            return group, False
        if self.known_down:
            group.fail_pending(
                f"{self.auth_error} (recently reported by the client)"
                if self.auth_error
                else "all brokers are down (recently reported by the client)",
                why=FailureReason.KAFKA_ERROR
                if self.auth_error
                else FailureReason.BROKER_UNAVAILABLE,
            )
            return group, False
        with self._lock:
            self._groups.add(group)
        return group, True

    def produce_when_room(
        self,
        group: DeliveryGroup,
        index: int,
        topic: str,
        key: bytes,
        value: bytes,
        headers: Any,  # a dict or a list of (name, bytes), as confluent-kafka takes them
        deadline: float,
    ) -> None:
        """Retry one message while librdkafka's queue is full, until ``deadline``."""
        on_delivery = _OnDelivery(group, index)
        attempt = 0
        while True:
            if time.monotonic() >= deadline:
                group.report(
                    index,
                    "local producer queue is full",
                    None,
                    None,
                    True,
                    FailureReason.QUEUE_FULL,
                )
                return
            attempt += 1  # serve delivery reports (they free queue room), longer each time
            self._producer.poll(_QUEUE_FULL_RETRY.delay(attempt))
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:
                continue
            except Exception as exc:  # KafkaException, TypeError: refused before sending
                group.report(index, f"{type(exc).__name__}: {exc}", None, None, False, _KAFKA_ERROR)
                return

    def release(
        self, group: DeliveryGroup, reason: str, why: FailureReason = FailureReason.TIMEOUT
    ) -> None:
        """Stop waiting for ``group``: pending messages are failed now with ``reason``."""
        if any(r is not None and r[0] is None for r in group.reports):
            self._down_since = None  # the broker acknowledged something: it is up
            self.auth_error = None
        group.fail_pending(reason, why=why)
        with self._lock:
            self._groups.discard(group)

    @property
    def waiting(self) -> bool:
        """Whether some caller is still waiting for a delivery report."""
        with self._lock:
            return any(group.remaining for group in self._groups)

    def flush(self, timeout: float) -> int:
        return int(self._producer.flush(max(0.0, timeout)))

    def close(self, timeout: float = 1.0) -> None:
        """Flush for at most ``timeout`` seconds, then drop what is left (already reported)."""
        if self._closed.is_set():
            return
        try:
            remaining = self._producer.flush(max(0.0, timeout))
            if remaining:
                self._producer.purge(in_queue=True, in_flight=True, blocking=False)
                self._producer.poll(0)
        finally:
            self._closed.set()
            self._fail_all("producer closed")

    def destroy(self, timeout: float = 0.0) -> None:
        """Close, stop the poll thread and destroy the librdkafka client now.

        At exit this must happen before the interpreter and the C runtime tear down: a client
        still alive then keeps its broker threads running (reconnecting, mid TLS handshake)
        while OpenSSL's exit handlers free their state, which crashed a SASL_SSL publish with
        SIGSEGV after it had already reported and spooled its event.
        """
        self.close(timeout)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        producer, self._producer = self._producer, _DestroyedProducer()
        del producer  # the last reference: rd_kafka_destroy runs here, not at finalization


class _DestroyedProducer:
    """What a destroyed SharedProducer holds: refuses new messages, has nothing to serve."""

    def produce(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the Kafka producer was shut down (the process is exiting)")

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float = 0.0) -> int:
        return 0

    def purge(self, *args: Any, **kwargs: Any) -> None:
        return None


_producers: dict[tuple[Any, ...], SharedProducer] = {}
_registry_lock = threading.Lock()


def _key(settings: Settings) -> tuple[Any, ...]:
    return (
        settings.kafka_bootstrap_servers,
        settings.kafka_security_protocol,
        settings.kafka_sasl_mechanism,
        settings.kafka_sasl_username,
        settings.kafka_sasl_password,
        settings.kafka_ssl_ca_location,
        settings.kafka_client_id,
        settings.delivery_timeout,
    )


def get_producer(settings: Settings) -> SharedProducer:
    """The process's producer for ``settings``; a new one after ``fork`` or a fatal error."""
    key = _key(settings)
    with _registry_lock:
        producer = _producers.get(key)
        if producer is None or producer.pid != os.getpid() or producer.fatal_error:
            producer = SharedProducer(settings)
            _producers[key] = producer
        return producer


def shutdown_producers(timeout: float | None = None) -> None:
    """Flush, close and destroy every producer of this process (registered with ``atexit``)."""
    with _registry_lock:
        producers = [p for p in _producers.values() if p.pid == os.getpid()]
        _producers.clear()
    for producer in producers:
        if timeout is not None:
            bound = timeout
        elif producer.waiting:
            bound = min(1.0, producer.settings.delivery_timeout)
        else:
            # Every message was waited for and already reported (delivered, or spooled by its
            # caller): what is left in librdkafka's queue is a copy, so exit now.
            bound = 0.0
        producer.destroy(bound)


atexit.register(shutdown_producers)
