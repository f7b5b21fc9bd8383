"""``provider-events outbox status``: what waits locally, how old, why, and how much room."""

from __future__ import annotations

import argparse
import time

from provider_events.cli._common import EXIT_OK, fail, settings_or_exit


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["status"], nargs="?", default="status")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def run(args: argparse.Namespace) -> int:
    settings = settings_or_exit()
    from provider_events.errors import OutboxError
    from provider_events.publish._outbox import Outbox
    from provider_events.publish._relay import relay_running

    outbox = Outbox(
        settings.resolved_outbox_path, settings.outbox_max_events, settings.outbox_max_bytes
    )
    try:
        st = outbox.status()
    except OutboxError as exc:
        return fail(str(exc))
    if args.json:
        import msgspec

        print(
            msgspec.json.encode(
                {
                    **{f: getattr(st, f) for f in st.__slots__},
                    "relay_running": relay_running(settings),
                }
            ).decode()
        )
        return EXIT_OK
    from rich.table import Table

    from provider_events.analytics._render import make_console

    table = Table(title="provider-events outbox", show_header=False)
    table.add_row("path", st.path)
    table.add_row("pending", f"{st.pending} / {st.max_events}")
    table.add_row("oldest", _age(st.oldest_age_seconds))
    table.add_row("size used", f"{st.size_bytes:,} / {st.max_bytes:,} bytes")
    table.add_row("delivered (total)", str(st.delivered_total))
    table.add_row("refused (full)", str(st.refused_full))
    when = f" ({_age(time.time() - st.last_error_at)} ago)" if st.last_error_at else ""
    table.add_row("last error", (st.last_error or "-") + when)
    table.add_row("relay", "running" if relay_running(settings) else "idle")
    make_console().print(table)
    return EXIT_OK
