"""What ``stats``, ``recommend``, ``report`` and ``demo`` share on the command line.

Window flags (``--since``, ``--until``, ``--tenant``), the store choice, opening the backend
with one-line errors, and writing JSON or CSV with stable field names.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from provider_events.analytics._model import Window, parse_when
from provider_events.cli._common import EXIT_BAD_INPUT, EXIT_FAILED

__all__ = [
    "add_window_arguments",
    "csv_cell",
    "open_backend_or_exit",
    "window_from_args",
    "write_csv",
    "write_json",
]


def _fail(message: str, code: int) -> SystemExit:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return SystemExit(code)


def add_window_arguments(p: argparse.ArgumentParser) -> None:
    """``--since``, ``--until``, ``--tenant`` and ``--store``."""
    p.add_argument(
        "--since",
        metavar="WHEN",
        help="start of the window: a duration before now (7d, 24h, 90m) or an ISO date/time "
        "(UTC unless it says otherwise); rounded down to the hour (default: 7 days before --until)",
    )
    p.add_argument(
        "--until",
        metavar="WHEN",
        help="end of the window (exclusive), same forms; rounded up to the hour (default: now)",
    )
    from provider_events.cli._common import text_arg

    p.add_argument("--tenant", type=text_arg, metavar="ID", help="only this tenant_id (not empty)")
    p.add_argument(
        "--store",
        choices=("auto", "local", "postgresql"),
        default="auto",
        help="where to read: PostgreSQL when DATABASE_URL is set, else the local event store "
        "in PROVIDER_EVENTS_STATE_DIR (default auto)",
    )


def window_from_args(args: argparse.Namespace, now: datetime | None = None) -> Window:
    """The :class:`Window` the flags describe; bad input ends the command with exit code 2."""
    now = now or datetime.now(UTC)
    try:
        until = parse_when(args.until, now) if args.until else None
        since = parse_when(args.since, now) if args.since else None
        return Window.of(since, until, args.tenant, now=now)
    except ValueError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    except OverflowError:  # e.g. --until 0001-01-02 leaves no room for the default 7 days
        raise _fail("the window reaches outside 0001-01-01 .. 9999-01-01", EXIT_BAD_INPUT) from None


def open_backend_or_exit(args: argparse.Namespace) -> Any:
    """The backend for ``--store``; configuration or database errors end the command."""
    from provider_events.analytics._answers import open_backend
    from provider_events.errors import ConfigError, DatabaseError, OutboxError

    try:
        from provider_events.settings import load_settings

        settings = load_settings()
    except ConfigError as exc:
        raise _fail(f"configuration: {exc}", EXIT_BAD_INPUT) from None
    try:
        return open_backend(settings, args.store)
    except ConfigError as exc:  # a malformed DATABASE_URL: bad input, not an outage
        raise _fail(f"configuration: {exc}", EXIT_BAD_INPUT) from None
    except DatabaseError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    except OutboxError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None


def write_json(data: Any, out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    json.dump(data, out, indent=2, ensure_ascii=False, allow_nan=False)
    out.write("\n")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula (OWASP): text starting with ``=``,
    ``+``, ``-``, ``@``, tab or carriage return gets a leading ``'``; numbers stay numbers
    (a negative number is not text), ``None`` becomes an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    text = str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_csv(
    rows: Iterable[dict[str, Any]], fieldnames: Sequence[str], out: IO[str] | None = None
) -> None:
    """CSV with a header of ``fieldnames``; ``None`` becomes an empty cell, and text that a
    spreadsheet would run as a formula is neutralised (:func:`csv_cell`)."""
    writer = csv.DictWriter(out or sys.stdout, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(row.get(k)) for k in fieldnames})
