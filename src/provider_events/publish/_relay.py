"""The relay: delivers spooled events in order, with backoff, removing each only once acked.

No daemon to install. A publish that leaves events in the outbox calls :func:`ensure_relay`,
which starts a detached ``provider-events relay --detached`` unless one already holds the relay
lock; that drain lingers a few seconds once the outbox is empty (so a burst of hook calls
spawns one relay, not one each) and then exits (or after ``give_up_after`` seconds of failing,
so a long outage leaves no process behind; the next publish starts a new one).
``provider-events relay`` drains in the foreground; ``--follow`` keeps draining.

Crash safety: an event is deleted only after the broker acknowledged it, so a relay killed
mid-drain redelivers at most the batch in flight, with the same ``event_id`` (the idempotency
key downstream). Order per partition key: batches go out in ``seq`` order through an idempotent
producer (in-order per partition); a batch with any failure is retried from its first failure.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provider_events._retry import Backoff
from provider_events.publish._outbox import Outbox, OutboxRow
from provider_events.settings import Settings, process_environ

__all__ = ["DrainReport", "drain", "ensure_relay", "relay_lock_path"]


def relay_lock_path(settings: Settings) -> Path:
    path = settings.resolved_outbox_path
    return path.with_name(path.name + ".relay.lock")


def _try_lock(path: Path) -> int | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def relay_running(settings: Settings) -> bool:
    fd = _try_lock(relay_lock_path(settings))
    if fd is None:
        return True
    _unlock(fd)
    return False


def ensure_relay(settings: Settings) -> bool:
    """Start a detached drain unless a relay already runs. Returns True if one was started."""
    try:
        if relay_running(settings):
            return False
        env = dict(process_environ())  # the child inherits our environment
        env["PROVIDER_EVENTS_OUTBOX"] = str(settings.resolved_outbox_path)
        src = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            os.posix_spawn(
                sys.executable,
                [sys.executable, "-m", "provider_events.cli", "relay", "--detached"],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0),
                    (os.POSIX_SPAWN_DUP2, devnull, 1),
                    (os.POSIX_SPAWN_DUP2, devnull, 2),
                ],
                setsid=True,
            )
        finally:
            os.close(devnull)
        return True
    except OSError:
        return False  # the event is safe in the outbox; `provider-events relay` delivers it


@dataclass
class DrainReport:
    delivered: int = 0
    attempts: int = 0
    failures: int = 0
    last_error: str | None = None
    remaining: int = 0
    locked_out: bool = False


def _send_batch(settings: Settings, rows: list[OutboxRow]) -> tuple[list[int], str | None]:
    """Produce rows in order; returns the acknowledged seqs (per-key order kept) and an error."""
    from provider_events.publish._producer import get_producer

    producer = get_producer(settings)
    deadline = time.monotonic() + settings.delivery_timeout
    group = producer.produce_group([(r.topic, r.key, r.value, r.headers) for r in rows], deadline)
    group.done.wait(max(0.0, deadline - time.monotonic()))
    producer.release(group, f"not acknowledged within {settings.delivery_timeout:g}s")
    acked: list[int] = []
    first_error: str | None = None
    failed_keys: set[bytes] = set()
    for row, report in zip(rows, group.reports, strict=True):
        error = report[0] if report else "no report"
        if error is None and row.key not in failed_keys:
            acked.append(row.seq)
        else:
            # keep per-key order: a later event of a failed key is re-sent after it
            failed_keys.add(row.key)
            first_error = first_error or error
    return acked, first_error


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
) -> DrainReport:
    """Deliver the outbox until empty (or forever with ``follow``), holding the relay lock."""
    report = DrainReport()
    lock_path = relay_lock_path(settings)
    outbox = Outbox(
        settings.resolved_outbox_path, settings.outbox_max_events, settings.outbox_max_bytes
    )
    stop = stop or threading.Event()
    while True:
        fd = _try_lock(lock_path)
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
            _unlock(fd)
        # An event committed while we released the lock would otherwise wait for the next
        # publish: look once more, after releasing, and go again if anything is there.
        report.remaining = outbox.pending()
        if gave_up or stop.is_set() or not report.remaining:
            outbox.close()
            return report


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
        acked, error = _send_batch(settings, rows)
        outbox.remove(acked)
        report.delivered += len(acked)
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
