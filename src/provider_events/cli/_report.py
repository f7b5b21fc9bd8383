"""``provider-events report [--html [FILE]]``: one self-contained HTML report with charts.

Reads the same store as ``stats`` (PostgreSQL with ``DATABASE_URL``, else the local event store)
and writes a single file that needs no network to view: FILE, or ``report.html`` in the state
directory when no FILE is given. The path written is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from provider_events.cli._analytics_common import add_window_arguments
    from provider_events.cli._common import int_arg

    p.description = (
        "Write one self-contained HTML file (inline SVG charts, no script, no network): "
        "selections over time by provider, model distribution, cost, latency and quality "
        "trends, top reasons and recommendations."
    )
    p.add_argument(
        "--html",
        type=Path,
        nargs="?",
        default=None,
        const=None,
        metavar="FILE",
        help="where to write it (default: report.html in the state directory, "
        "PROVIDER_EVENTS_STATE_DIR; the path is printed)",
    )
    add_window_arguments(p)
    p.add_argument(
        "--min-samples",
        type=int_arg(1, 1_000_000_000),
        default=30,
        metavar="N",
        help="for recommendations: samples a model needs (default 30)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")


def run(args: argparse.Namespace) -> int:
    from provider_events._files import check_output_path
    from provider_events.analytics._recommend import RecommendOptions
    from provider_events.analytics.report import write_report
    from provider_events.cli._analytics_common import open_backend_or_exit, window_from_args
    from provider_events.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, fail, settings_or_exit
    from provider_events.errors import DatabaseError, UnsafePathError

    if args.min_samples < 1:
        return fail("--min-samples must be >= 1", EXIT_BAD_INPUT)
    if args.html is None:
        args.html = settings_or_exit().state_dir / "report.html"
    try:
        check_output_path(args.html)
    except UnsafePathError as exc:
        return fail(f"--html {exc}", EXIT_BAD_INPUT)
    window = window_from_args(args)
    with open_backend_or_exit(args) as backend:
        try:
            path = write_report(
                args.html, backend, window, RecommendOptions(min_samples=args.min_samples)
            )
        except DatabaseError as exc:
            return fail(str(exc), EXIT_FAILED)
        except UnsafePathError as exc:  # replaced by a FIFO or device while the report was built
            return fail(f"--html {exc}", EXIT_BAD_INPUT)
        except OSError as exc:
            return fail(f"cannot write {args.html}: {exc.strerror or exc}", EXIT_FAILED)
    if not args.quiet:
        print(f"wrote {path} ({path.stat().st_size / 1024:,.0f} KiB): open file://{path}")
    return 0
