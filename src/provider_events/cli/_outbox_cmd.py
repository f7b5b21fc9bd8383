"""``provider-events outbox``: what waits locally, per destination, and what to do about it.

Actions (options in any order):
  status                     pending, oldest and last error per destination (``--json``)
  quarantine                 list the quarantined events and why (``--json``)
  export [--output FILE]     the quarantined events as JSON lines (stdout by default)
  requeue (--all | --event-id ID ...)
                             put quarantined events back in the queue
  retarget --from KEY        move a destination's pending events to the current configuration
  drop --destination KEY --yes
                             delete a destination's pending events
  log                        the last retarget/drop/requeue/quarantine entries
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from provider_events.cli._common import EXIT_BAD_INPUT, EXIT_OK, fail, settings_or_exit

ACTIONS = ("status", "quarantine", "export", "requeue", "retarget", "drop", "log")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=ACTIONS, nargs="?", default="status")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--from", dest="from_key", metavar="KEY", help="retarget: the destination key")
    p.add_argument("--destination", metavar="KEY", help="drop: the destination key")
    p.add_argument("--yes", action="store_true", help="drop: confirm")
    p.add_argument("--all", action="store_true", help="requeue: every quarantined event")
    p.add_argument(
        "--event-id", action="append", default=[], metavar="ID", help="requeue: this event"
    )
    p.add_argument("--output", "-o", metavar="FILE", help="export: write here (default stdout)")


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
    from provider_events.publish._relay import destination_of

    here = destination_of(settings)
    outbox = Outbox(
        settings.resolved_outbox_path,
        settings.outbox_max_events,
        settings.outbox_max_bytes,
        destination=here,
    )
    try:
        if args.action == "status":
            return _status(args, settings, outbox, here.key)
        if args.action == "quarantine":
            return _quarantine(args, outbox)
        if args.action == "export":
            return _export(args, outbox)
        if args.action == "requeue":
            if not args.all and not args.event_id:
                return fail("requeue needs --all or --event-id ID", EXIT_BAD_INPUT)
            n = outbox.requeue(None if args.all else args.event_id)
            print(f"requeued {n} event(s) for {here.key} ({here.describe()})")
            return EXIT_OK
        if args.action == "retarget":
            if not args.from_key:
                return fail("retarget needs --from KEY (see `outbox status`)", EXIT_BAD_INPUT)
            n = outbox.retarget(args.from_key, settings.topic)
            print(f"moved {n} event(s) from {args.from_key} to {here.key} ({here.describe()})")
            if n and settings.relay_autostart:
                from provider_events.publish._relay import ensure_relay

                ensure_relay(settings)
            return EXIT_OK
        if args.action == "drop":
            if not args.destination:
                return fail("drop needs --destination KEY (see `outbox status`)", EXIT_BAD_INPUT)
            if not args.yes:
                return fail(
                    f"drop deletes every pending event of {args.destination}: add --yes",
                    EXIT_BAD_INPUT,
                )
            n = outbox.drop(args.destination)
            print(f"dropped {n} event(s) of destination {args.destination}")
            return EXIT_OK
        for at, action, detail in reversed(outbox.log_entries()):
            print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at))} {action}: {detail}")
        return EXIT_OK
    except OutboxError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{exc.strerror or exc}")
    finally:
        outbox.close()


def _status(args: argparse.Namespace, settings: Any, outbox: Any, current: str) -> int:
    from provider_events.publish import _spool

    st = outbox.status()
    path = settings.resolved_outbox_path

    def running(key: str) -> bool:
        return _spool.relay_alive(path, key)

    if args.json:
        import msgspec

        doc = {f: getattr(st, f) for f in st.__slots__ if f != "destinations"}
        doc["relay_running"] = running(current)
        doc["current_destination"] = current
        doc["destinations"] = [
            {
                **{f: getattr(d, f) for f in d.__slots__},
                "relay_running": running(d.key),
                "current": d.key == current,
            }
            for d in st.destinations
        ]
        print(msgspec.json.encode(doc).decode())
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
    table.add_row("quarantined", str(st.quarantined))
    when = f" ({_age(time.time() - st.last_error_at)} ago)" if st.last_error_at else ""
    table.add_row("last error", (st.last_error or "-") + when)
    table.add_row("relay", "running" if running(current) else "idle")
    console = make_console()
    console.print(table)
    dests = Table(title="per destination", caption="* the current configuration's destination")
    dests.add_column("key", no_wrap=True, min_width=17)  # whole: `retarget --from KEY` needs it
    for col in ("destination", "pending", "oldest", "quarantined", "relay", "last error"):
        dests.add_column(col)
    for d in st.destinations:
        who = f" as {d.principal}" if d.principal else ""
        err = d.last_error or "-"
        if d.last_error_at:
            err += f" ({_age(time.time() - d.last_error_at)} ago)"
        dests.add_row(
            d.key + ("*" if d.key == current else ""),
            f"{d.servers} {d.protocol}{who} {d.topic}",
            str(d.pending),
            _age(d.oldest_age_seconds),
            str(d.quarantined),
            "running" if running(d.key) else "idle",
            err,
        )
    if st.destinations:
        console.print(dests)
    return EXIT_OK


def _quarantine_doc(row: Any) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "destination": row.destination,
        "topic": row.topic,
        "key": row.key.decode("utf-8", "replace"),
        "value": row.value.decode("utf-8", "replace"),
        "headers": {k: v.decode("utf-8", "replace") for k, v in row.headers},
        "enqueued_at": row.enqueued_at,
        "attempts": row.attempts,
        "reason": row.reason,
        "quarantined_at": row.quarantined_at,
    }


def _quarantine(args: argparse.Namespace, outbox: Any) -> int:
    rows = outbox.quarantined()
    if args.json:
        import json

        print(json.dumps([{**_quarantine_doc(r), "value": None} for r in rows]))
        return EXIT_OK
    if not rows:
        print("no quarantined events")
    for r in rows:
        print(f"{r.event_id} {r.destination} topic={r.topic} attempts={r.attempts}: {r.reason}")
    return EXIT_OK


def _export(args: argparse.Namespace, outbox: Any) -> int:
    import json

    rows = outbox.quarantined()
    lines = "".join(json.dumps(_quarantine_doc(r), ensure_ascii=False) + "\n" for r in rows)
    if args.output in (None, "-"):
        sys.stdout.write(lines)
    else:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(lines)
    print(f"exported {len(rows)} quarantined event(s)", file=sys.stderr)
    return EXIT_OK
