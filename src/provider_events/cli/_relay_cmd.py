"""``provider-events relay``: deliver what waits in the outbox for this configuration's
destination (``--follow`` keeps going).

Exit 0 only when nothing is pending for the destination afterwards; 1 with the count and the
last error otherwise. When another relay is draining the same destination, it waits for that one
(at most ``PROVIDER_EVENTS_RELAY_GIVE_UP`` seconds, or ``--wait``) and then drains itself.
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import threading

from provider_events.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    configure_logging,
    fail,
    int_arg,
    settings_or_exit,
)

#: Seconds a detached relay waits for more events after the outbox empties.
DETACHED_LINGER = 5.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--follow", "-f", action="store_true", help="keep draining until interrupted")
    p.add_argument(
        "--batch-size",
        type=int_arg(1, 100_000),
        default=1000,
        help="events per batch (default 1000)",
    )
    p.add_argument(
        "--wait",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="longest wait for another relay of this destination "
        "(default: PROVIDER_EVENTS_RELAY_GIVE_UP, 300)",
    )
    p.add_argument("--detached", action="store_true", help=argparse.SUPPRESS)
    # the lock the spawning publish took for the detached relay: a descriptor number
    p.add_argument("--lock-fd", type=int_arg(0, 1 << 20), default=None, help=argparse.SUPPRESS)
    p.add_argument("--verbose", "-v", action="store_true", help="client logs on stderr")


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {raw!r}") from None
    if not (0 <= value <= 86_400):
        raise argparse.ArgumentTypeError(f"must be 0..86400 seconds, got {raw!r}")
    return value


def run(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    settings = settings_or_exit()
    from provider_events.errors import OutboxError
    from provider_events.publish._relay import drain

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.batch_size <= 0:
        return fail("--batch-size must be positive", EXIT_BAD_INPUT)
    if args.detached:
        give_up: float | None = settings.relay_give_up
    else:
        give_up = None if args.follow else min(60.0, settings.relay_give_up)
    wait = settings.relay_give_up if args.wait is None else args.wait
    try:
        report = drain(
            settings,
            follow=args.follow,
            batch_size=args.batch_size,
            give_up_after=give_up,
            stop=stop,
            linger=DETACHED_LINGER if args.detached else 0.0,
            held_lock=_held(args.lock_fd) if args.detached else None,
            wait_for_lock=0.0 if args.detached else wait,
        )
    except OutboxError as exc:
        return fail(str(exc))
    except (OSError, sqlite3.Error) as exc:  # e.g. a read-only outbox directory
        outbox = settings.resolved_outbox_path
        return fail(f"outbox {outbox}: {getattr(exc, 'strerror', None) or exc}")
    if args.detached:
        return EXIT_OK
    from provider_events.publish._relay import destination_of

    where = destination_of(settings)
    quarantined = f"; {report.quarantined} quarantined" if report.quarantined else ""
    print(
        f"delivered {report.delivered} event(s){quarantined}; {report.remaining} pending "
        f"for {where.key} ({where.describe()})"
    )
    if report.locked_out:
        return fail(
            f"another relay is still draining destination {where.key} after {wait:g}s; "
            f"{report.remaining} pending",
            EXIT_FAILED,
        )
    if report.remaining:
        return fail(
            f"{report.remaining} event(s) still pending for {where.key}: last error: "
            f"{report.last_error or _last_error(settings, where.key)}",
            EXIT_FAILED,
        )
    return EXIT_OK


def _last_error(settings: object, key: str) -> str:
    """The destination's last recorded error (this run may not have sent anything)."""
    from provider_events.errors import OutboxError
    from provider_events.publish._outbox import Outbox

    try:
        status = Outbox(settings.resolved_outbox_path).status()  # type: ignore[attr-defined]
    except OutboxError:
        return "unknown"
    for dest in status.destinations:
        if dest.key == key and dest.last_error:
            return dest.last_error
    return "none recorded"


def _held(fd: int | None) -> int | None:
    """``fd`` if it holds an exclusive lock this process may keep (the one its parent took
    for it: re-locking an already held lock succeeds at once), else ``None`` (drain locks)."""
    if fd is None:
        return None
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (OSError, ValueError):  # not an open file, or locked by someone else
        return None
    return fd
