"""``provider-events import claude-code``: publish the measured outcomes in Claude Code's
transcripts (incremental: a second run publishes only what is new).

Exit 0 done, 1 outcomes could not be published (the state did not advance past them), 2 bad
input. A progress bar on a terminal; a one-paragraph summary (or ``--json``) at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", choices=("claude-code",), help="whose records to read")
    p.add_argument(
        "--projects-dir",
        type=Path,
        action="append",
        metavar="DIR",
        help="read this projects folder (repeatable) instead of the defaults: "
        "$CLAUDE_CONFIG_DIR/projects (comma-separated list), $XDG_CONFIG_HOME/claude/projects, "
        "~/.claude/projects",
    )
    p.add_argument(
        "--provider",
        metavar="NAME",
        help="provider that served these sessions (default: what the hook saw for the session, "
        "else 'claude' for claude-* models, else 'unknown')",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")


def run(args: argparse.Namespace) -> int:
    from provider_events.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, fail, settings_or_exit
    from provider_events.errors import ConfigError

    settings = settings_or_exit()
    if args.provider is not None and not (
        args.provider.strip() and len(args.provider) <= 100 and args.provider.isprintable()
    ):
        return fail("--provider must be a printable name of 1-100 characters", EXIT_BAD_INPUT)
    roots = args.projects_dir
    for root in roots or []:
        if not root.is_dir():
            return fail(f"--projects-dir {root}: not a directory", EXIT_BAD_INPUT)
    from provider_events.usage._transcripts import TranscriptImportError, import_transcripts

    progress = None
    task = None
    if sys.stderr.isatty() and not args.quiet and not args.json:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        progress = Progress(
            TextColumn("importing transcripts"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
    try:
        if progress is not None:
            with progress:
                task = progress.add_task("import", total=None)

                def total(n: int) -> None:
                    progress.update(task, total=n)

                def advance(n: int) -> None:
                    progress.advance(task, n)

                summary = import_transcripts(
                    settings, roots, provider=args.provider, on_total=total, on_bytes=advance
                )
        else:
            summary = import_transcripts(settings, roots, provider=args.provider)
    except ConfigError as exc:
        return fail(f"configuration: {exc}", EXIT_BAD_INPUT)
    except TranscriptImportError as exc:
        return fail(str(exc), EXIT_FAILED)
    if args.json:
        import json

        print(json.dumps(summary.as_dict(), sort_keys=True))
    elif not args.quiet:
        s = summary
        print(
            f"{s.published} new outcome(s) from {s.files_read} of {s.files} transcript file(s) "
            f"({s.lines} lines, {s.duplicates} repeated responses, "
            f"{s.skipped_synthetic} synthetic, {s.skipped_api_error} API errors, "
            f"{s.bad_lines} bad and {s.partial_lines} unfinished line(s) skipped)"
        )
        print(
            f"tokens: input {s.input_tokens}, output {s.output_tokens}, cache read "
            f"{s.cache_read_tokens}, cache write {s.cache_write_tokens}; cost ${s.cost_usd:.4f}"
            + (f" ({s.unpriced} unpriced)" if s.unpriced else "")
            + (
                f"; {', '.join(f'{k} {v}' for k, v in sorted(s.statuses.items()))}"
                if s.statuses
                else ""
            )
        )
        if s.skipped_files:
            print(
                f"{s.skipped_files} file(s) skipped (not regular files, or unreadable"
                + (f"; first: {s.file_error}" if s.file_error else "")
                + ")"
            )
    return 0
