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
from collections.abc import Callable
from typing import Any

from ._config import Settings

__all__ = ["SharedProducer", "get_producer", "kafka_config", "shutdown_producers"]

log = logging.getLogger("provider_events.kafka")
# librdkafka logs reach Python logging; without a handler configured by the application they
# must not fall through to logging.lastResort and spray the CLI user's stderr.
logging.getLogger("provider_events").addHandler(logging.NullHandler())

#: Callback fired exactly once per produced message: (error text or None, partition, offset).
DeliveryCallback = Callable[[str | None, int | None, int | None, bool], None]


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
                "compression.type": "lz4",
                "message.timeout.ms": timeout_ms,
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


class SharedProducer:
    """A librdkafka producer with a poll thread that serves delivery callbacks.

    ``produce`` never blocks longer than the given deadline. When the client reports that all
    brokers are down, every waiting delivery is failed at once (fail fast) and, for a second,
    new messages are not handed to librdkafka at all, so a caller that spools them does not
    also leave a copy queued for later.
    """

    DOWN_PROBE_INTERVAL = 1.0

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import KafkaError, Producer

        self._kafka_error = KafkaError
        self.settings = settings
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._pending: dict[int, DeliveryCallback] = {}
        self._next_token = 0
        self._down_since: float | None = None
        self._last_probe = 0.0
        self.fatal_error: str | None = None
        self._purge_requested = False
        conf = kafka_config(settings)
        conf["error_cb"] = self._on_error
        self._producer = Producer(conf)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="provider-events-poll", daemon=True)
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
            except Exception:  # a user callback must never kill the poll thread
                log.exception("delivery callback failed")

    def _on_error(self, err: Any) -> None:
        code = err.code()
        if err.fatal():
            self.fatal_error = describe_kafka_error(err)
            self._fail_all(self.fatal_error)
        elif code == self._kafka_error._ALL_BROKERS_DOWN:
            self._down_since = time.monotonic()
            self._fail_all(describe_kafka_error(err))
            self._purge_requested = True
        log.debug("kafka client error: %s", describe_kafka_error(err))

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for callback in pending.values():
            callback(reason, None, None, True)

    def _complete(self, token: int, err: Any, msg: Any) -> None:
        with self._lock:
            callback = self._pending.pop(token, None)
        if err is None:
            self._down_since = None
        if callback is None:
            return  # already failed fast or timed out; a late success only means a duplicate
        if err is None:
            callback(None, msg.partition(), msg.offset(), False)
        else:
            callback(describe_kafka_error(err), None, None, bool(err.retriable()))

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

    def produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]],
        callback: DeliveryCallback,
        deadline: float,
    ) -> int | None:
        """Hand one message to librdkafka; ``callback`` fires exactly once unless this raises.

        Returns a token for :meth:`abandon`, or ``None`` when the message was refused at once
        (the callback has then already fired with the reason).
        """
        if self.fatal_error:
            callback(self.fatal_error, None, None, False)
            return None
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._pending[token] = callback
        on_delivery = lambda err, msg, _t=token: self._complete(_t, err, msg)  # noqa: E731
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                return token
            except BufferError:
                if time.monotonic() >= deadline:
                    self.abandon(token, "local producer queue is full")
                    return None
                self._producer.poll(0.01)
            except Exception as exc:  # KafkaException, TypeError: refused before sending
                self.abandon(token, f"{type(exc).__name__}: {exc}")
                return None

    def abandon(self, token: int, reason: str) -> None:
        """Stop waiting for ``token``: its callback fires now with ``reason`` if still pending."""
        with self._lock:
            callback = self._pending.pop(token, None)
        if callback is not None:
            callback(reason, None, None, True)

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
    """Flush and close every producer of this process (registered with ``atexit``)."""
    with _registry_lock:
        producers = [p for p in _producers.values() if p.pid == os.getpid()]
        _producers.clear()
    for producer in producers:
        bound = min(1.0, producer.settings.delivery_timeout) if timeout is None else timeout
        producer.close(bound)


atexit.register(shutdown_producers)
