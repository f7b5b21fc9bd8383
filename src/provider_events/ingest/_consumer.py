"""The ingest loop: Kafka topic -> decode and validate -> PostgreSQL, offsets committed after.

One batch at a time, bounded by ``batch_size`` and ``batch_timeout``:

1. ``consume()`` up to ``batch_size`` messages, waiting at most ``batch_timeout``;
2. decode each with :func:`~provider_events.events._validation.decode_envelope` while its row streams
   into PostgreSQL (binary ``COPY``, one transaction, idempotent on ``event_id``); a message
   that does not decode is produced to the dead-letter topic with the reason in its headers;
3. flush the dead-letter producer (idempotent, ``acks=all``);
4. commit the batch's offsets synchronously.

A crash anywhere before step 4 re-reads the batch on restart: rows already stored are
skipped by ``ON CONFLICT (event_id) DO NOTHING``, so the table ends with each event exactly
once. While PostgreSQL (or the dead-letter topic) is unavailable the partitions are paused,
the batch is kept in memory and retried with exponential backoff; nothing is committed.
PostgreSQL refusing the login or the database (wrong password, unknown role or database:
:class:`~provider_events.store.DatabaseLoginError`) is no outage: :meth:`IngestConsumer.run`
raises at once, at start or mid-stream, with nothing committed for the batch in hand.
A stop request (SIGTERM/SIGINT) finishes the batch in hand, commits, and returns.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from provider_events._retry import Backoff
from provider_events.errors import DatabaseError, InvalidEventError, KafkaClientError
from provider_events.events._catalog import PROVIDER_SELECTED_V1
from provider_events.events._validation import decode_envelope
from provider_events.observability import _metrics as metrics
from provider_events.publish._producer import describe_kafka_error, kafka_config
from provider_events.settings import DEFAULT_CONSUMER_GROUP, Settings
from provider_events.store import (
    BatchWriter,
    DatabaseUnavailableError,
    Row,
    WriteResult,
    row_from_envelope,
)
from provider_events.store._pg import describe_dsn

__all__ = [
    "DEFAULT_GROUP_ID",
    "ConsumerOptions",
    "EventSink",
    "IngestConsumer",
    "Totals",
    "dlq_headers",
]

DEFAULT_GROUP_ID = DEFAULT_CONSUMER_GROUP
#: Receives lifecycle and progress events: (kind, fields). Kinds: started, assigned, revoked,
#: progress, db_unavailable, db_recovered, dlq_unavailable, kafka_error, commit_failed,
#: rejected, stopping, gave_up, stopped.
EventSink = Callable[[str, dict[str, Any]], None]
_EOF = KafkaError._PARTITION_EOF
#: Offset commits are retried twice, after about 0.2 s and 0.4 s.
_COMMIT_RETRY = Backoff(0.2, 0.4)
_REBALANCING = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError._NO_OFFSET,
}


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    topic: str
    dlq_topic: str
    group_id: str = DEFAULT_GROUP_ID
    batch_size: int = 5000
    batch_timeout: float = 1.0
    #: Stop after handling this many messages (tests, benchmarks).
    max_messages: int | None = None
    #: Stop after this many seconds without a message (counted from the first assignment).
    until_idle: float | None = None
    #: ``group.instance.id`` (static membership): a restart takes its partitions back at once.
    instance_id: str | None = None
    progress_interval: float = 10.0
    retry_initial: float = 0.2
    retry_max: float = 15.0
    #: After a stop request, how long to keep retrying an unwritten batch before giving up.
    stop_grace: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings, **changes: Any) -> ConsumerOptions:
        """The options :class:`Settings` configure (topic, dead-letter topic, group, batches,
        instance id); ``changes`` sets the rest (``max_messages``, ``until_idle``, ...)."""
        topic = settings.topic or PROVIDER_SELECTED_V1.topic
        configured: dict[str, Any] = {
            "topic": topic,
            "dlq_topic": settings.dlq_topic or f"{topic}.dlq",
            "group_id": settings.consumer_group,
            "batch_size": settings.consumer_batch_size,
            "batch_timeout": settings.consumer_batch_timeout,
            "instance_id": settings.consumer_instance_id,
        }
        return cls(**{**configured, **changes})


@dataclass(slots=True)
class Totals:
    """Counters of one run; ``uncommitted`` is non-zero only when a stop gave up on a batch."""

    messages: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0
    db_retries: int = 0
    lag: int | None = None
    uncommitted: int = 0
    elapsed: float = 0.0
    #: Wall-clock times (epoch seconds) of the first message received and the last commit.
    first_message_at: float | None = None
    last_commit_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Headers = list[tuple[str, str | bytes | None]]


def dlq_headers(msg: Message, reason: str, error: str, group_id: str) -> Headers:
    """The original headers plus where the message came from and why it was dead-lettered."""
    original = msg.headers() or []
    pairs = original.items() if isinstance(original, dict) else original
    headers: Headers = [(str(k), v) for k, v in pairs]
    ts_type, ts = msg.timestamp()
    headers += [
        ("dlq_reason", reason.encode()),
        ("dlq_error", error[:1000].encode("utf-8", "replace")),
        ("dlq_original_topic", (msg.topic() or "").encode()),
        ("dlq_original_partition", str(msg.partition()).encode()),
        ("dlq_original_offset", str(msg.offset()).encode()),
        ("dlq_consumer_group", group_id.encode()),
    ]
    if ts_type:
        headers.append(("dlq_original_timestamp_ms", str(ts).encode()))
    return headers


@dataclass(slots=True)
class _Batch:
    messages: list[Message]
    rows: list[Row] = field(default_factory=list)
    #: (message, reason, error text) for the dead-letter topic.
    dead: list[tuple[Message, str, str]] = field(default_factory=list)
    #: partition -> last offset seen in this batch.
    last: dict[int, int] = field(default_factory=dict)

    def drop_partitions(self, partitions: set[int]) -> None:
        self.messages = [m for m in self.messages if m.partition() not in partitions]
        self.rows = [r for r in self.rows if r[12] not in partitions]
        self.dead = [d for d in self.dead if d[0].partition() not in partitions]
        for p in partitions:
            self.last.pop(p, None)


class IngestConsumer:
    """Consumes ``options.topic`` into PostgreSQL until stopped (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        options: ConsumerOptions,
        dsn: str,
        on_event: EventSink | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self._dsn = dsn
        self._emit: EventSink = on_event or (lambda kind, fields: None)
        self._writer = BatchWriter(dsn)
        self._stop = threading.Event()
        self._stop_requests = 0
        self._totals = Totals()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._encode = msgspec.json.Encoder().encode
        self._batch: _Batch | None = None
        self._held: list[Message] = []
        self._paused = False
        self._assigned: set[int] = set()
        self._lag: dict[int, int] = {}
        self._first_assignment: float | None = None
        self._last_message: float | None = None
        self._dlq_failures: list[str] = []
        self._last_progress = (time.monotonic(), 0)
        self._stop_deadline: float | None = None
        self._last_kafka_error: tuple[str, float] = ("", 0.0)
        self.fatal_error: str | None = None
        self._closing = False

    # -- control ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the batch in hand, commit and return from :meth:`run` (signal-safe)."""
        self._stop_requests += 1
        self._stop.set()

    @property
    def totals(self) -> Totals:
        return self._totals

    # -- Kafka clients ----------------------------------------------------------------------
    def _consumer_config(self) -> dict[str, Any]:
        conf = kafka_config(self.settings, for_consumer=True)
        conf.update(
            {
                "group.id": self.options.group_id,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "statistics.interval.ms": 1000,
                # Partitions added to the topic are noticed (and assigned, from the earliest
                # offset) at the next metadata refresh: librdkafka's default of 5 minutes left
                # their events unconsumed, and outside the lag metric, for that long.
                "topic.metadata.refresh.interval.ms": 10_000,
                # Prefetch up to 32 MiB (librdkafka's default is 64 MiB): plenty for batches of
                # tens of thousands of events, and half the resident memory.
                "queued.max.messages.kbytes": 32 * 1024,
                "stats_cb": self._on_stats,
                "error_cb": self._on_kafka_error,
            }
        )
        if self.options.instance_id:
            conf["group.instance.id"] = self.options.instance_id
        return conf

    def _producer_config(self) -> dict[str, Any]:
        conf = kafka_config(self.settings)
        conf["client.id"] = f"{self.settings.kafka_client_id}-dlq"
        conf["message.timeout.ms"] = 30_000
        conf["request.timeout.ms"] = 10_000
        return conf

    def _ensure_dlq_topic(self) -> None:
        """Create the dead-letter topic (as many partitions as the source) if it is missing.

        Best effort: without the permission, the broker's auto-creation or an operator must
        provide it, and dead-lettering waits (visibly) until it exists.
        """
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.cimpl import NewTopic

        conf = kafka_config(self.settings, for_consumer=True)
        conf["error_cb"] = self._on_kafka_error
        admin = AdminClient(conf)
        try:
            deadline = time.monotonic() + 10
            while True:  # short slices, serving error_cb: refused credentials end it at once
                try:
                    meta = admin.list_topics(timeout=0.5)
                    break
                except KafkaException:
                    admin.poll(0)
                    if self.fatal_error or time.monotonic() >= deadline:
                        raise
            if self.options.dlq_topic in meta.topics:
                return
            source = meta.topics.get(self.options.topic)
            partitions = len(source.partitions) if source is not None and source.partitions else 1
            new = NewTopic(self.options.dlq_topic, num_partitions=partitions, replication_factor=-1)
            admin.create_topics([new], operation_timeout=10)[self.options.dlq_topic].result(15)
            self._emit("dlq_created", {"topic": self.options.dlq_topic, "partitions": partitions})
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return
            self._emit(
                "kafka_error",
                {"error": f"dead-letter topic check: {describe_kafka_error(err)}", "fatal": False},
            )

    def _on_kafka_error(self, err: KafkaError) -> None:
        text = describe_kafka_error(err)
        # Refused credentials are final for this process, as in the Java client
        # (SaslAuthenticationException): stop with the reason instead of retrying forever.
        if err.fatal() or err.code() == KafkaError._AUTHENTICATION:
            self.fatal_error = text
            self._emit("kafka_error", {"error": text, "fatal": True})
            self.request_stop()
            return
        now = time.monotonic()
        if self._last_kafka_error[0] != text or now - self._last_kafka_error[1] > 10.0:
            self._emit("kafka_error", {"error": text, "fatal": False})
        self._last_kafka_error = (text, now)

    def _on_stats(self, raw: str) -> None:
        try:
            stats = json.loads(raw)
            partitions = stats["topics"][self.options.topic]["partitions"]
        except (ValueError, KeyError, TypeError):
            return
        for key, p in partitions.items():
            partition = int(key)
            if partition < 0 or partition not in self._assigned:
                continue
            hi, committed, lo = (
                p.get("hi_offset", -1),
                p.get("committed_offset", -1),
                p.get("lo_offset", -1),
            )
            if hi < 0:
                continue
            lag = hi - committed if committed >= 0 else hi - max(lo, 0)
            self._lag[partition] = max(0, lag)
            metrics.CONSUMER_LAG.labels(self.options.topic, str(partition)).set(
                self._lag[partition]
            )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        if self._paused:
            consumer.pause(partitions)
        self._assigned = {tp.partition for tp in partitions}
        if self._first_assignment is None:
            self._first_assignment = time.monotonic()
        self._emit("assigned", {"partitions": sorted(self._assigned)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {tp.partition for tp in partitions}
        self._forget(revoked)
        self._emit("revoked", {"partitions": sorted(revoked)})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {tp.partition for tp in partitions}
        self._forget(lost)
        self._emit("revoked", {"partitions": sorted(lost), "lost": True})

    def _forget(self, partitions: set[int]) -> None:
        """Drop uncommitted work of partitions we no longer own: their next owner re-reads it."""
        if self._batch is not None:
            self._batch.drop_partitions(partitions)
        self._held = [m for m in self._held if m.partition() not in partitions]
        self._assigned -= partitions
        for p in partitions:
            self._lag.pop(p, None)
            if not self._closing:  # at exit the last values stay (a final scrape, tests)
                with contextlib.suppress(KeyError):
                    metrics.CONSUMER_LAG.remove(self.options.topic, str(p))

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> Totals:
        """Consume until stopped, ``max_messages`` or ``until_idle``; return the totals.

        Raises :class:`DatabaseError` for a permanent database problem (missing table, no
        permission, a refused login: :class:`~provider_events.store.DatabaseLoginError`) and
        :class:`~provider_events.errors.KafkaClientError` for a fatal Kafka error (or a Kafka setting
        librdkafka refuses); nothing is committed for the batch in hand, so a restart re-reads it.
        This is where ``KafkaException`` is translated, and nowhere else on the ingest side.
        """
        try:
            return self._run()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError):
                raise KafkaClientError(
                    f"Kafka: {describe_kafka_error(err)}", err.name(), err.retriable()
                ) from None
            raise KafkaClientError(f"Kafka: {exc}") from None

    def _run(self) -> Totals:
        started = time.monotonic()
        try:
            ready = self._wait_for_database()
        except DatabaseError:
            self._writer.close()
            raise
        if not ready:
            self._writer.close()
            self._totals.elapsed = time.monotonic() - started
            return self._totals
        self._ensure_dlq_topic()
        self._producer = Producer(self._producer_config())
        consumer = self._consumer = Consumer(self._consumer_config())
        self._emit(
            "started",
            {
                "topic": self.options.topic,
                "dlq_topic": self.options.dlq_topic,
                "group_id": self.options.group_id,
                "database": describe_dsn(self._dsn),
            },
        )
        consumer.subscribe(
            [self.options.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not self._finished(started):
                messages = self._next_messages(consumer)
                self._progress()
                if messages:
                    self._last_message = time.monotonic()
                    if self._totals.first_message_at is None:
                        self._totals.first_message_at = time.time()
                    if not self._handle(_Batch(messages)):
                        break
        finally:
            self._totals.elapsed = time.monotonic() - started
            self._totals.lag = sum(self._lag.values()) if self._lag else None
            self._close()
        self._emit("stopped", self._totals.as_dict())
        return self._totals

    def _finished(self, started: float) -> bool:
        opts = self.options
        if self._stop.is_set():
            return True
        if opts.max_messages is not None and self._totals.messages >= opts.max_messages:
            return True
        if opts.until_idle is not None:
            now = time.monotonic()
            if self._first_assignment is None:
                return now - started >= max(opts.until_idle, 60.0)
            since = max(self._first_assignment, self._last_message or 0.0)
            return now - since >= opts.until_idle and not self._held
        return False

    def _next_messages(self, consumer: Consumer) -> list[Message]:
        want = self.options.batch_size
        if self.options.max_messages is not None:
            want = max(1, min(want, self.options.max_messages - self._totals.messages))
        held, self._held = self._held, []
        if len(held) >= want:
            self._held = held[want:]
            return held[:want]
        got = consumer.consume(want - len(held), timeout=self.options.batch_timeout)
        messages = [m for m in got if m.error() is None]
        if len(messages) != len(got):
            for m in got:
                err = m.error()
                if err is not None and err.code() != _EOF:
                    if err.fatal():
                        raise KafkaException(err)
                    self._on_kafka_error(err)
        return held + messages if held else messages

    def _rows(self, batch: _Batch) -> Iterator[Row]:
        """Decode the batch's messages, yielding rows and setting aside the undecodable."""
        expected = PROVIDER_SELECTED_V1.event_type
        encode = self._encode
        last = batch.last
        for msg in batch.messages:
            # Set on every message without an error (the only kind in a batch).
            partition, offset = cast(int, msg.partition()), cast(int, msg.offset())
            last[partition] = offset
            value = msg.value()
            try:
                if value is None:
                    raise InvalidEventError("message has no value (tombstone)", reason="bad_json")
                envelope = decode_envelope(value)
                if envelope.event_type != expected:
                    raise InvalidEventError(
                        f"event_type {envelope.event_type!r} is not stored by this consumer",
                        reason="unknown_event_type",
                    )
            except InvalidEventError as exc:
                batch.dead.append((msg, exc.reason, str(exc)))
                continue
            except UnicodeDecodeError as exc:  # raised by msgspec for bad UTF-8 inside a string
                batch.dead.append((msg, "bad_utf8", f"not UTF-8: {exc}"))
                continue
            except Exception as exc:  # never let one message crash-loop the consumer
                batch.dead.append((msg, "decode_error", f"{type(exc).__name__}: {exc}"))
                continue
            row = row_from_envelope(
                envelope, partition, offset, encode(envelope.payload.selection_criteria)
            )
            batch.rows.append(row)
            yield row

    def _handle(self, batch: _Batch) -> bool:
        """Write, dead-letter and commit one batch. False when a stop gave up on it."""
        started = time.monotonic()
        self._batch = batch
        try:
            result = self._write(batch)
            if result is None:
                return False
            for index, reason in result.rejected:
                row = batch.rows[index]
                msg = next(
                    m for m in batch.messages if m.partition() == row[12] and m.offset() == row[13]
                )
                batch.dead.append((msg, "db_rejected", reason))
                self._emit("rejected", {"partition": row[12], "offset": row[13], "error": reason})
            written = time.monotonic()
            if batch.dead and not self._dead_letter(batch):
                return False
            self._commit(batch)
        finally:
            self._batch = None
        done = time.monotonic()
        self._account(batch, result, done - started)
        self._emit(
            "batch",
            {
                "messages": len(batch.messages),
                "inserted": result.inserted,
                "duplicates": result.duplicates,
                "dead_lettered": len(batch.dead),
                "path": result.path,
                "write_seconds": round(written - started, 4),
                "commit_seconds": round(done - written, 4),
            },
        )
        return True

    def _write(self, batch: _Batch) -> WriteResult | None:
        """Write the batch's rows, retrying while PostgreSQL is down; None when giving up.

        Any other :class:`DatabaseError` (a refused login included) propagates uncommitted.
        """
        decoding = self._rows(batch)
        attempt = 0
        while True:
            try:
                # First attempt: rows stream into COPY while they are decoded. Retries: the
                # decoded rows kept in the batch (revoked partitions already removed).
                result = self._writer.write(decoding if attempt == 0 else batch.rows)
            except DatabaseUnavailableError as exc:
                for _ in decoding:
                    pass  # finish decoding: rows and dead letters are complete for the retry
                attempt += 1
                self._totals.db_retries += 1
                delay = self._backoff(attempt)
                self._emit(
                    "db_unavailable",
                    {"error": str(exc), "attempt": attempt, "retry_in": round(delay, 2)},
                )
                if not self._wait(delay, batch):
                    return None
                if not batch.messages:
                    return WriteResult()  # every partition of the batch moved elsewhere
                continue
            if attempt:
                self._emit("db_recovered", {"attempts": attempt})
                self._resume()
            return result

    def _dead_letter(self, batch: _Batch) -> bool:
        assert self._producer is not None
        pending = list(batch.dead)
        attempt = 0
        while True:
            self._dlq_failures = []
            for msg, reason, error in pending:
                self._produce_dead(msg, reason, error)
            remaining = self._producer.flush(30.0)
            if not remaining and not self._dlq_failures:
                if attempt:
                    self._resume()
                return True
            attempt += 1
            delay = self._backoff(attempt)
            error = self._dlq_failures[0] if self._dlq_failures else f"{remaining} not acknowledged"
            self._emit(
                "dlq_unavailable", {"error": error, "attempt": attempt, "retry_in": round(delay, 2)}
            )
            if not self._wait(delay, batch):
                return False
            pending = list(batch.dead)  # re-send all: the DLQ is at-least-once

    def _produce_dead(self, msg: Message, reason: str, error: str) -> None:
        assert self._producer is not None
        headers = dlq_headers(msg, reason, error, self.options.group_id)
        while True:
            try:
                self._producer.produce(
                    self.options.dlq_topic,
                    value=msg.value(),
                    key=msg.key(),
                    headers=headers,
                    on_delivery=self._on_dlq_delivery,
                )
                return
            except BufferError:
                self._producer.poll(0.1)

    def _on_dlq_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._dlq_failures.append(describe_kafka_error(err))

    def _commit(self, batch: _Batch) -> None:
        assert self._consumer is not None
        if not batch.last:
            return
        offsets = [TopicPartition(self.options.topic, p, o + 1) for p, o in batch.last.items()]
        for attempt in range(1, 4):
            try:
                result = self._consumer.commit(offsets=offsets, asynchronous=False)
                failed = [tp for tp in result or [] if tp.error is not None]
                if not failed:
                    return
                error = describe_kafka_error(failed[0].error)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                error = describe_kafka_error(err)
                if isinstance(err, KafkaError) and err.code() in _REBALANCING:
                    attempt = 3  # the partitions moved: the new owner re-reads, the table dedupes
            self._emit("commit_failed", {"error": error, "attempt": attempt})
            if attempt >= 3:
                return  # the next commit covers these offsets; a redelivery is deduplicated
            time.sleep(_COMMIT_RETRY.delay(attempt))

    def _account(self, batch: _Batch, result: WriteResult, seconds: float) -> None:
        t = self._totals
        handled = len(batch.messages)
        t.messages += handled
        t.inserted += result.inserted
        t.duplicates += result.duplicates
        t.dead_lettered += len(batch.dead)
        t.batches += 1
        t.last_commit_at = time.time()
        metrics.CONSUMER_MESSAGES.inc(handled)
        metrics.CONSUMER_ROWS_INSERTED.inc(result.inserted)
        metrics.CONSUMER_DUPLICATES.inc(result.duplicates)
        metrics.CONSUMER_BATCH_DURATION.observe(seconds)
        for reason, count in Tally(d[1] for d in batch.dead).items():
            metrics.CONSUMER_DLQ.labels(reason).inc(count)
        ids = result.inserted_ids
        stored = batch.rows if ids is None else [r for r in batch.rows if r.event_id in ids]
        for (provider, model), count in Tally(
            (r.provider_name, r.model_name) for r in stored
        ).items():
            metrics.PROVIDER_SELECTION.labels(*metrics.selection_labels(provider, model)).inc(count)

    # -- waiting out an outage --------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        return Backoff(self.options.retry_initial, self.options.retry_max).delay(attempt)

    def _wait(self, seconds: float, batch: _Batch) -> bool:
        """Sleep ``seconds`` keeping the group membership alive; False to give up (stopping)."""
        consumer = self._consumer
        assert consumer is not None
        if not self._paused:
            self._paused = True
            consumer.pause(consumer.assignment())
        deadline = time.monotonic() + seconds
        while True:
            if self._stop.is_set() and self._giving_up():
                self._totals.uncommitted = len(batch.messages) + len(self._held)
                self._emit("gave_up", {"uncommitted": self._totals.uncommitted})
                return False
            msg = consumer.poll(min(0.1, max(0.0, deadline - time.monotonic())))
            if msg is not None and msg.error() is None:
                self._held.append(msg)  # fetched before the pause took effect: keep, in order
            self._progress()
            if time.monotonic() >= deadline or not batch.messages:
                return True

    def _giving_up(self) -> bool:
        """Stopping during an outage: give up after ``stop_grace`` or a second request."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.options.stop_grace
            self._emit("stopping", {"grace_seconds": self.options.stop_grace})
        return self._stop_requests > 1 or time.monotonic() >= self._stop_deadline

    def _resume(self) -> None:
        if self._paused and self._consumer is not None:
            self._paused = False
            self._consumer.resume(self._consumer.assignment())

    # -- reporting and shutdown -------------------------------------------------------------
    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        then, count = self._last_progress
        if not force and now - then < self.options.progress_interval:
            return
        self._last_progress = (now, self._totals.messages)
        self._totals.lag = sum(self._lag.values()) if self._lag else None
        fields = self._totals.as_dict()
        fields["rate"] = round((self._totals.messages - count) / max(now - then, 1e-9), 1)
        self._emit("progress", fields)

    def _close(self) -> None:
        self._closing = True
        if self._producer is not None:
            self._producer.flush(5.0)
        if self._consumer is not None:
            with contextlib.suppress(KafkaException, RuntimeError):
                self._consumer.close()
        self._writer.close()

    def _wait_for_database(self) -> bool:
        """Wait until PostgreSQL answers (False: stopped meanwhile); raise if it refuses us."""
        attempt = 0
        while True:
            try:
                self._writer.ping()
                if attempt:
                    self._emit("db_recovered", {"attempts": attempt})
                return True
            except DatabaseUnavailableError as exc:
                attempt += 1
                delay = self._backoff(attempt)
                self._emit(
                    "db_unavailable",
                    {"error": str(exc), "attempt": attempt, "retry_in": round(delay, 2)},
                )
                if self._stop.wait(delay):
                    return False
            except DatabaseError:
                raise
