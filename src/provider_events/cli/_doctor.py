"""``provider-events doctor``: the guide's troubleshooting, done for you, one line per check."""

from __future__ import annotations

import argparse

from provider_events.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from provider_events.observability._doctor import Check, run_checks

    if args.json:
        import msgspec

        checks = run_checks()
        print(
            msgspec.json.encode(
                [{"name": c.name, "ok": c.ok, "detail": c.detail, "hint": c.hint} for c in checks]
            ).decode()
        )
    else:
        from rich.console import Console
        from rich.markup import escape

        console = Console(highlight=False, soft_wrap=True)

        def show(c: Check) -> None:
            mark = "[green]PASS[/]" if c.ok else "[red]FAIL[/]"
            console.print(f"{mark}  {escape(c.name)}: {escape(c.detail)}")
            if c.hint and not c.ok:
                console.print(f"      hint: {escape(c.hint)}")

        checks = run_checks(show)
    if any(c.name == "DATABASE_URL" and not c.ok for c in checks):
        return EXIT_BAD_INPUT  # malformed, like every other command that reads it
    return EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED
