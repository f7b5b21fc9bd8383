"""``provider-events relay``: deliver what waits in the outbox (``--follow`` keeps going)."""

from __future__ import annotations

import argparse
import signal
import sqlite3
import sys
import threading

from provider_events.cli._common import (
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
    p.add_argument("--detached", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--verbose", "-v", action="store_true", help="client logs on stderr")


def run(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    settings = settings_or_exit()
    from provider_events.errors import OutboxError
    from provider_events.publish._relay import drain

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    give_up = 300.0 if args.detached else (None if args.follow else 60.0)
    try:
        report = drain(
            settings,
            follow=args.follow,
            batch_size=args.batch_size,
            give_up_after=give_up,
            stop=stop,
        )
    except OutboxError as exc:
        return fail(str(exc))
    except (OSError, sqlite3.Error) as exc:  # e.g. a read-only outbox directory
        where = settings.resolved_outbox_path
        return fail(f"outbox {where}: {getattr(exc, 'strerror', None) or exc}")
    if args.detached:
        return EXIT_OK
    if report.locked_out:
        print(f"another relay is draining the outbox ({report.remaining} pending)", file=sys.stderr)
        return EXIT_OK
    print(f"delivered {report.delivered} event(s); {report.remaining} pending")
    if report.remaining:
        return fail(f"outbox not empty: last error: {report.last_error}", EXIT_FAILED)
    return EXIT_OK
