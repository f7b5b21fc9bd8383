"""The relay: delivers spooled events of ONE destination, removing each as soon as it is acked.

No daemon to install. A publish that leaves events in the outbox calls :func:`ensure_relay`,
which starts a detached ``provider-events relay --detached`` for the publisher's destination
unless one already holds that destination's lock (the publisher takes the lock and hands it to
the child, so a burst of publishes starts one relay). The detached relay lingers a few seconds
once its destination is empty, so the next hook call finds it still running, and exits; after
``relay_give_up`` seconds of failing it exits too, and the next publish starts a new one.

Destinations: each outbox row records the cluster it is meant for (see ``_spool``). A relay only
reads, sends and waits for its own destination's rows, under its own lock: a relay stuck on a
mistyped address never holds back another configuration's events.

Failures: an event the broker can never accept (invalid topic, too large, not authorised) is
*quarantined* (kept in the outbox file, out of the queue, with its reason); other failures are
retried with backoff. Every event acknowledged is deleted at once, whatever happens to its
neighbours, so an acknowledged event is never sent again (a relay killed between the ack and the
delete re-sends at most those, with the same ``event_id``, the idempotency key downstream).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provider_events._retry import Backoff
from provider_events.publish import _spool
from provider_events.publish._outbox import Destination, Outbox, OutboxRow
from provider_events.settings import Settings, process_environ

__all__ = [
    "DrainReport",
    "destination_of",
    "drain",
    "ensure_relay",
    "is_permanent",
    "relay_lock_path",
    "relay_running",
]

#: librdkafka / broker error names that no retry can fix for that event: it is quarantined.
PERMANENT_ERRORS = frozenset(
    {
        "MSG_SIZE_TOO_LARGE",
        "_MSG_SIZE_TOO_LARGE",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_RECORD",
        "CORRUPT_MESSAGE",
        "INVALID_MSG",
        "INVALID_MSG_SIZE",
        "TOPIC_EXCEPTION",
        "_INVALID_ARG",
        "TOPIC_AUTHORIZATION_FAILED",
        "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        "INVALID_TIMESTAMP",
        "POLICY_VIOLATION",
        "_KEY_SERIALIZATION",
        "_VALUE_SERIALIZATION",
    }
)


def is_permanent(error: str) -> bool:
    """Whether a delivery error (``NAME: text``, or ``KafkaException: KafkaError{code=NAME``)
    means the broker will never accept this event."""
    head = error.split(":", 1)[0].strip()
    if head in PERMANENT_ERRORS:
        return True
    if "code=" in error:
        code = error.split("code=", 1)[1].split(",", 1)[0].strip()
        return code in PERMANENT_ERRORS
    return head in ("TypeError", "ValueError")


def destination_of(settings: Settings) -> Destination:
    """The destination a configuration publishes to (no secret in it)."""
    from provider_events.events._catalog import PROVIDER_SELECTED_V1

    protocol = settings.kafka_security_protocol
    principal = (settings.kafka_sasl_username or "") if protocol.startswith("SASL") else ""
    return Destination(
        settings.kafka_bootstrap_servers,
        protocol,
        principal,
        settings.topic or PROVIDER_SELECTED_V1.topic,
    )


def relay_lock_path(settings: Settings) -> Path:
    return Path(_spool.lock_path(settings.resolved_outbox_path, destination_of(settings).key))


def relay_running(settings: Settings) -> bool:
    """Whether a relay is draining this configuration's destination."""
    return _spool.relay_alive(settings.resolved_outbox_path, destination_of(settings).key)


def ensure_relay(settings: Settings) -> bool:
    """Start a detached drain of this destination unless one runs. True if one was started."""
    try:
        return _spool.spawn_relay(
            settings.resolved_outbox_path,
            destination_of(settings).key,
            dict(process_environ()),
            sys.executable,
            str(Path(__file__).resolve().parent.parent.parent),
        )
    except OSError:
        return False  # the event is safe in the outbox; `provider-events relay` delivers it


@dataclass
class DrainReport:
    delivered: int = 0
    attempts: int = 0
    failures: int = 0
    quarantined: int = 0
    last_error: str | None = None
    remaining: int = 0
    locked_out: bool = False


def _send_batch(
    settings: Settings, outbox: Outbox, rows: list[OutboxRow], report: DrainReport
) -> str | None:
    """Produce ``rows``; delete each as its ack arrives, quarantine permanent failures.

    Returns the first retriable error (the rest stay pending), or ``None``.
    """
    from provider_events.publish._producer import get_producer

    producer = get_producer(settings)
    deadline = time.monotonic() + settings.delivery_timeout
    group = producer.produce_group([(r.topic, r.key, r.value, r.headers) for r in rows], deadline)
    removed = [False] * len(rows)

    def remove_acked() -> None:
        acked = [
            i for i, rep in enumerate(group.reports) if rep and rep[0] is None and not removed[i]
        ]
        if acked:
            outbox.remove([rows[i].seq for i in acked])
            for i in acked:
                removed[i] = True
            report.delivered += len(acked)

    while not group.done.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
        remove_acked()
        if time.monotonic() >= deadline:
            break
    producer.release(group, f"not acknowledged within {settings.delivery_timeout:g}s")
    remove_acked()
    first_error: str | None = None
    permanent: list[tuple[int, str]] = []
    for row, rep in zip(rows, group.reports, strict=True):
        error = rep[0] if rep else "no report"
        if error is None:
            continue
        if is_permanent(error):
            permanent.append((row.seq, error))
        else:
            first_error = first_error or error
    if permanent and len(rows) > 1:
        # The broker refuses a whole record batch for one bad record (MSG_SIZE_TOO_LARGE comes
        # back for each of its events): send each alone, in order, to find the guilty ones.
        by_seq = {r.seq: r for r in rows}
        for seq, _ in permanent:
            error = _send_batch(settings, outbox, [by_seq[seq]], report)
            first_error = first_error or error
    elif permanent:
        outbox.quarantine(permanent)
        report.quarantined += len(permanent)
        outbox.record_error(f"quarantined {len(permanent)} event(s): {permanent[0][1]}")
    return first_error


def _auth_failed(settings: Settings) -> bool:
    from provider_events.publish._producer import get_producer

    return get_producer(settings).auth_error is not None


def drain(
    settings: Settings,
    *,
    follow: bool = False,
    batch_size: int = 1000,
    give_up_after: float | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[DrainReport], None] | None = None,
    max_backoff: float = 5.0,
    linger: float = 0.0,
    held_lock: int | None = None,
    wait_for_lock: float = 0.0,
) -> DrainReport:
    """Deliver this configuration's destination until it is empty (or forever with
    ``follow``), holding its lock. ``held_lock``: an fd already holding it (a detached relay
    gets it from its parent). ``wait_for_lock``: seconds to wait for another relay of this
    destination to finish before giving up (``locked_out``)."""
    report = DrainReport()
    destination = destination_of(settings)
    lock = _spool.lock_path(settings.resolved_outbox_path, destination.key)
    outbox = Outbox(
        settings.resolved_outbox_path,
        settings.outbox_max_events,
        settings.outbox_max_bytes,
        destination=destination,
    )
    stop = stop or threading.Event()
    fd = held_lock
    try:
        while True:
            if fd is None:
                fd = _spool.try_lock(lock)
                wait_until = time.monotonic() + wait_for_lock
                while fd is None and time.monotonic() < wait_until and not stop.is_set():
                    stop.wait(0.2)
                    fd = _spool.try_lock(lock)
                if fd is None:
                    report.locked_out = True
                    report.remaining = outbox.pending()
                    return report
            try:
                gave_up = _drain_locked(
                    settings,
                    outbox,
                    report,
                    follow,
                    batch_size,
                    give_up_after,
                    stop,
                    on_progress,
                    max_backoff,
                    linger,
                )
            finally:
                _spool.unlock(fd)
                fd = None
            # An event committed while we released the lock would otherwise wait for the next
            # publish: look once more, after releasing, and go again if anything is there.
            report.remaining = outbox.pending()
            if gave_up or stop.is_set() or not report.remaining:
                return report
            wait_for_lock = 0.0  # someone else took over: that relay delivers it
    finally:
        outbox.close()


def _drain_locked(
    settings: Settings,
    outbox: Outbox,
    report: DrainReport,
    follow: bool,
    batch_size: int,
    give_up_after: float | None,
    stop: threading.Event,
    on_progress: Callable[[DrainReport], None] | None,
    max_backoff: float,
    linger: float = 0.0,
) -> bool:
    """Drain while holding the lock; True when it gave up after ``give_up_after`` seconds."""
    idle_until = time.monotonic() + linger
    retry, failures = Backoff(0.2, max_backoff), 0
    failing_since: float | None = None
    while not stop.is_set():
        rows = outbox.batch(batch_size)
        if not rows:
            if follow:
                stop.wait(0.5)
                continue
            if time.monotonic() >= idle_until:
                return False
            stop.wait(0.1)  # linger: a burst of hook calls finds this relay still running
            continue
        idle_until = time.monotonic() + linger
        report.attempts += 1
        outbox.mark_attempt([r.seq for r in rows])
        error = _send_batch(settings, outbox, rows, report)
        if on_progress:
            on_progress(report)
        if error is None:
            failures, failing_since = 0, None
            continue
        report.failures += 1
        report.last_error = error
        outbox.record_error(error)
        failing_since = failing_since or time.monotonic()
        if give_up_after is not None and time.monotonic() - failing_since > give_up_after:
            return True
        if not follow and _auth_failed(settings):
            return True  # the broker refused our credentials: retrying them cannot help
        failures += 1
        stop.wait(retry.delay(failures))
    return False
