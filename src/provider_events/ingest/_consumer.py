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

import base64
import contextlib
import hashlib
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
from provider_events.errors import ConfigError, DatabaseError, InvalidEventError, KafkaClientError
from provider_events.events._catalog import PROVIDER_COMPLETED_V1, PROVIDER_SELECTED_V1
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
from provider_events.store._outcomes import OutcomeWriter, outcome_row
from provider_events.store._pg import DeadLetter, describe_dsn

__all__ = [
    "DEFAULT_GROUP_ID",
    "ConsumerOptions",
    "EventSink",
    "IngestConsumer",
    "Totals",
    "bounded_record",
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

    def __post_init__(self) -> None:
        if self.dlq_topic == self.topic:
            raise ConfigError(
                "PROVIDER_EVENTS_DLQ_TOPIC",
                f"the dead-letter topic must differ from the input topic {self.topic!r} "
                "(a poison message would be consumed again and again)",
            )

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
    #: Of ``dead_lettered``: stored in the PostgreSQL dead-letter table (the DLQ refused them).
    dead_letter_table: int = 0
    batches: int = 0
    db_retries: int = 0
    lag: int | None = None
    uncommitted: int = 0
    elapsed: float = 0.0
    #: Wall-clock times (epoch seconds) of the first message received and the last commit.
    first_message_at: float | None = None
    last_commit_at: float | None = None
    #: ... and of the end of the run's last rollup merge (the rollups then count every event).
    rollups_merged_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Headers = list[tuple[str, str | bytes | None]]


#: Prefix of the headers the consumer adds; incoming headers with it are renamed
#: ``original_<name>`` so the reason a reader sees is always this consumer's own.
DLQ_HEADER_PREFIX = "dlq_"
#: How much of a message a bounded dead-letter record keeps.
PREFIX_BYTES = 4096
KEY_PREFIX_BYTES = 256


def _original_headers(msg: Message) -> list[tuple[str, str | bytes | None]]:
    original = msg.headers() or []
    pairs = original.items() if isinstance(original, dict) else original
    return [(str(k), v) for k, v in pairs]


def dlq_headers(msg: Message, reason: str, error: str, group_id: str) -> Headers:
    """The original headers (``dlq_*`` ones renamed ``original_dlq_*``) plus where the
    message came from and why it was dead-lettered."""
    headers: Headers = [
        (f"original_{k}" if k.startswith(DLQ_HEADER_PREFIX) else k, v)
        for k, v in _original_headers(msg)
    ]
    headers += _own_headers(msg, reason, error, group_id)
    return headers


def _own_headers(msg: Message, reason: str, error: str, group_id: str) -> Headers:
    headers: Headers = []
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


def _header_summary(msg: Message) -> list[dict[str, Any]]:
    return [
        {"name": k[:200], "bytes": len(v) if isinstance(v, bytes | str) else 0}
        for k, v in _original_headers(msg)[:100]
    ]


def bounded_record(msg: Message, reason: str, error: str) -> bytes:
    """A small JSON stand-in for a message the dead-letter topic refused whole: why, where
    from, its size and sha256, and its first :data:`PREFIX_BYTES` bytes (base64)."""
    value = msg.value() or b""
    key = msg.key()
    record = {
        "bounded_dead_letter": 1,
        "reason": reason,
        "error": error[:1000],
        "original_topic": msg.topic(),
        "original_partition": msg.partition(),
        "original_offset": msg.offset(),
        "size": len(value),
        "sha256": hashlib.sha256(value).hexdigest(),
        "prefix_base64": base64.b64encode(value[:PREFIX_BYTES]).decode(),
        "prefix_bytes": min(len(value), PREFIX_BYTES),
        "key_prefix_base64": None
        if key is None
        else base64.b64encode(key[:KEY_PREFIX_BYTES]).decode(),
        "headers": _header_summary(msg),
    }
    return json.dumps(record, separators=(",", ":")).encode()


def _key_prefix(msg: Message) -> bytes | None:
    key = msg.key()
    return None if key is None else key[:KEY_PREFIX_BYTES]


def _transient(err: KafkaError) -> bool:
    """A delivery error retrying may cure (the broker or the topic is away), as opposed to
    one refusing this message for good (too large, invalid, not authorised)."""
    return bool(err.retriable()) or err.code() in _TRANSIENT_CODES


_TRANSIENT_CODES = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._QUEUE_FULL,
    KafkaError._RESOLVE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.KAFKA_STORAGE_ERROR,
}


@dataclass(slots=True)
class _Dead:
    """One message on its way out: whole to the DLQ (stage 0), as a bounded record (1), or
    into the PostgreSQL dead-letter table (2)."""

    msg: Message
    reason: str
    error: str
    stage: int = 0
    failure: str = ""


@dataclass(slots=True)
class _Batch:
    messages: list[Message]
    rows: list[Row] = field(default_factory=list)
    #: (message, reason, error text) for the dead-letter topic.
    dead: list[tuple[Message, str, str]] = field(default_factory=list)
    #: partition -> last offset seen in this batch.
    last: dict[int, int] = field(default_factory=dict)
    #: completion events' rows (``store/_outcomes.py``), written by the second writer.
    outcomes: list[tuple[Any, ...]] = field(default_factory=list)

    def drop_partitions(self, partitions: set[int]) -> None:
        self.messages = [m for m in self.messages if m.partition() not in partitions]
        self.rows = [r for r in self.rows if r[12] not in partitions]
        self.dead = [d for d in self.dead if d[0].partition() not in partitions]
        self.outcomes = [r for r in self.outcomes if r[-2] not in partitions]
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
        self._outcome_writer = OutcomeWriter(dsn)
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
        self._last_progress = (time.monotonic(), 0)
        self._stop_deadline: float | None = None
        self._last_kafka_error: tuple[str, float] = ("", 0.0)
        #: Since when PostgreSQL has been unreachable without a break (None: it answers).
        self._db_down_since: float | None = None
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
                    # idle time counts from the end of the work: a batch slower to write
                    # than --until-idle must not end the run with messages still waiting
                    self._last_message = time.monotonic()
                else:
                    self._writer.maybe_merge()  # a quiet topic: the rollups catch up
            self._merge_rollups()
        finally:
            self._totals.elapsed = time.monotonic() - started
            self._totals.lag = sum(self._lag.values()) if self._lag else None
            self._close()
        self._emit("stopped", self._totals.as_dict())
        return self._totals

    def _merge_rollups(self) -> None:
        """At the end of a run: merge every staged rollup delta, so the rollups count every
        stored event when ``consume`` returns. PostgreSQL gone by then leaves the deltas
        pending (committed; the next merge by any writer folds them in), and says so."""
        try:
            self._writer.merge_rollups()
            self._totals.rollups_merged_at = time.time()
        except DatabaseUnavailableError as exc:
            self._emit("rollups_pending", {"error": str(exc)})

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
        completed = PROVIDER_COMPLETED_V1.event_type
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
                if envelope.event_type == completed:
                    batch.outcomes.append(outcome_row(envelope, partition, offset))
                    continue
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
            if result.rejected or result.conflicts:
                at = {(m.partition(), m.offset()): m for m in batch.messages}
            for index, reason in result.rejected:
                row = batch.rows[index]
                batch.dead.append((at[(row[12], row[13])], "db_rejected", reason))
                self._emit("rejected", {"partition": row[12], "offset": row[13], "error": reason})
            for position in result.conflicts:
                msg = at.get(position)
                if msg is not None:
                    batch.dead.append(
                        (
                            msg,
                            "conflicting_duplicate",
                            "event_id is already stored with a different content",
                        )
                    )
                    metrics.CONSUMER_CONFLICTS.inc()
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
                if batch.outcomes:  # the second writer: completion events (outcomes)
                    self._write_outcomes(batch, result)
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
                self._check_db_deadline(exc)
                if not self._wait(delay, batch):
                    return None
                if not batch.messages:
                    return WriteResult()  # every partition of the batch moved elsewhere
                continue
            self._db_down_since = None
            if attempt:
                self._emit("db_recovered", {"attempts": attempt})
                self._resume()
            return result

    def _write_outcomes(self, batch: _Batch, result: WriteResult) -> None:
        """Store the batch's outcomes (raises like the event writer); refused rows become
        dead letters (``db_rejected``), counts join ``result``."""
        written = self._outcome_writer.write(batch.outcomes)
        result.inserted += written.inserted
        result.duplicates += written.duplicates
        for index, reason in written.rejected:
            row = batch.outcomes[index]
            msg = next(
                m for m in batch.messages if m.partition() == row[-2] and m.offset() == row[-1]
            )
            batch.dead.append((msg, "db_rejected", reason))
            self._emit("rejected", {"partition": row[-2], "offset": row[-1], "error": reason})

    def _dead_letter(self, batch: _Batch) -> bool:
        """Dead-letter ``batch.dead``; False when a stop gave up meanwhile.

        Each message goes to the DLQ whole; one the DLQ refuses for good (too large, invalid)
        goes again as a bounded record (:func:`bounded_record`); one refused even then goes to
        the PostgreSQL dead-letter table. Only an outage (Kafka or PostgreSQL) makes it wait.
        """
        assert self._producer is not None
        pending = [_Dead(msg, reason, error) for msg, reason, error in batch.dead]
        attempt = 0
        while pending:
            outcomes: dict[int, KafkaError | None] = {}
            for index, dead in enumerate(pending):
                self._produce_dead(dead, index, outcomes)
            remaining = self._producer.flush(30.0)
            retry: list[_Dead] = []
            to_table: list[_Dead] = []
            transient = False
            for index, dead in enumerate(pending):
                if index not in outcomes:  # not acknowledged within the flush
                    dead.failure = f"{remaining} message(s) not acknowledged"
                    retry.append(dead)
                    transient = True
                    continue
                err = outcomes[index]
                if err is None:
                    continue
                dead.failure = describe_kafka_error(err)
                if _transient(err):
                    retry.append(dead)
                    transient = True
                    continue
                dead.stage += 1
                self._emit(
                    "dlq_refused",
                    {
                        "partition": dead.msg.partition(),
                        "offset": dead.msg.offset(),
                        "error": dead.failure,
                        "next": "bounded record" if dead.stage == 1 else "dead-letter table",
                    },
                )
                (retry if dead.stage == 1 else to_table).append(dead)
            if to_table and not self._dead_letter_table(to_table, batch):
                return False
            pending = retry
            if not pending or not transient:
                continue  # done, or bounded records to send at once
            attempt += 1
            delay = self._backoff(attempt)
            self._emit(
                "dlq_unavailable",
                {"error": pending[0].failure, "attempt": attempt, "retry_in": round(delay, 2)},
            )
            if not self._wait(delay, batch):
                return False
            live = {(m.partition(), m.offset()) for m in batch.messages}
            pending = [d for d in pending if (d.msg.partition(), d.msg.offset()) in live]
        if attempt:
            self._resume()
        return True

    def _dead_letter_table(self, letters: list[_Dead], batch: _Batch) -> bool:
        """Record ``letters`` in PostgreSQL, waiting out an outage; False if a stop gave up."""
        rows = [
            DeadLetter(
                topic=d.msg.topic() or self.options.topic,
                partition=cast(int, d.msg.partition()),
                offset=cast(int, d.msg.offset()),
                consumer_group=self.options.group_id,
                reason=d.reason,
                error=f"{d.error[:1000]} (dead-letter topic: {d.failure[:300]})",
                size=len(d.msg.value() or b""),
                sha256=hashlib.sha256(d.msg.value() or b"").hexdigest(),
                key_prefix=_key_prefix(d.msg),
                value_prefix=(d.msg.value() or b"")[:PREFIX_BYTES],
                headers=json.dumps(_header_summary(d.msg)),
            )
            for d in letters
        ]
        attempt = 0
        while True:
            try:
                self._writer.write_dead_letters(rows)
            except DatabaseUnavailableError as exc:
                attempt += 1
                self._totals.db_retries += 1
                delay = self._backoff(attempt)
                self._emit(
                    "db_unavailable",
                    {"error": str(exc), "attempt": attempt, "retry_in": round(delay, 2)},
                )
                self._check_db_deadline(exc)
                if not self._wait(delay, batch):
                    return False
                continue
            self._db_down_since = None
            self._totals.dead_letter_table += len(rows)
            metrics.CONSUMER_DEAD_LETTER_TABLE.inc(len(rows))
            self._emit("dead_letter_table", {"count": len(rows)})
            if attempt:
                self._resume()
            return True

    def _produce_dead(
        self, dead: _Dead, index: int, outcomes: dict[int, KafkaError | None]
    ) -> None:
        assert self._producer is not None
        msg = dead.msg
        if dead.stage == 0:
            value, key = msg.value(), msg.key()
            headers = dlq_headers(msg, dead.reason, dead.error, self.options.group_id)
        else:
            value, key = bounded_record(msg, dead.reason, dead.error), None
            headers = _own_headers(msg, dead.reason, dead.error, self.options.group_id)
            headers.append(("dlq_bounded", b"1"))
            headers.append(("dlq_whole_refused", dead.failure[:500].encode()))

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            outcomes[index] = err

        while True:
            try:
                self._producer.produce(
                    self.options.dlq_topic,
                    value=value,
                    key=key[:KEY_PREFIX_BYTES] if key is not None and dead.stage else key,
                    headers=headers,
                    on_delivery=delivered,
                )
                return
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:  # refused before sending (e.g. MSG_SIZE_TOO_LARGE)
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                outcomes[index] = err or KafkaError(KafkaError._INVALID_ARG, str(exc))
                return

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
        # conflicting duplicates are counted when found (CONSUMER_CONFLICTS) and dead-lettered
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

    def db_patience(self) -> float | None:
        """How long PostgreSQL may stay unreachable before :meth:`run` raises: with
        ``until_idle`` N, max(N, 30) seconds; otherwise forever (None)."""
        if self.options.until_idle is None:
            return None
        return max(self.options.until_idle, 30.0)

    def _check_db_deadline(self, exc: DatabaseUnavailableError) -> None:
        """Raise when PostgreSQL has been unreachable longer than :meth:`db_patience`."""
        now = time.monotonic()
        if self._db_down_since is None:
            self._db_down_since = now
        patience = self.db_patience()
        if patience is not None and now - self._db_down_since >= patience:
            raise DatabaseUnavailableError(
                f"PostgreSQL unreachable for {now - self._db_down_since:.0f}s "
                f"(--until-idle allows {patience:g}s): {exc}"
            )

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
        self._writer.close(merge=False)  # merged by _merge_rollups when the run ends well
        self._outcome_writer.close()

    def _wait_for_database(self) -> bool:
        """Wait until PostgreSQL answers (False: stopped meanwhile); raise if it refuses us."""
        attempt = 0
        while True:
            try:
                self._writer.ping()
                self._db_down_since = None
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
                self._check_db_deadline(exc)
                if self._stop.wait(delay):
                    return False
            except DatabaseError:
                raise
