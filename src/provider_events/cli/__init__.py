"""The ``provider-events`` command line. One module per command; each is imported only when
its command runs, so ``publish --background`` (the hook path) stays import-light.

Exit codes: 0 success, 1 not delivered / failed, 2 bad input or configuration.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing is not imported: this module is on the hook's fast path
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["COMMANDS", "INTERNAL_ERROR", "SCRIPT_PROG", "hook_claude", "main"]

#: The start of the one line printed for an unexpected exception (a bug) instead of a traceback.
INTERNAL_ERROR = "internal error"

#: command -> (module, one-line help). Each module defines ``add_arguments`` and ``run``.
COMMANDS: dict[str, tuple[str, str]] = {
    "publish": ("_publish", "publish one provider-selection event (the guide's CLI)"),
    "relay": ("_relay_cmd", "deliver events waiting in the local outbox"),
    "outbox": (
        "_outbox_cmd",
        "the local outbox per destination: status, quarantine, retarget, drop",
    ),
    "doctor": ("_doctor", "check configuration, Kafka, topic, outbox and database"),
    "schema": ("_schema_cmd", "print or write the JSON Schema of an event"),
    "migrate": ("_migrate", "apply the PostgreSQL migrations"),
    "consume": ("_consume", "consume events from Kafka into PostgreSQL"),
    "stats": ("_stats", "usage, cost and criteria statistics"),
    "recommend": ("_recommend", "cheaper models with equal or better quality"),
    "report": ("_report", "write a self-contained HTML report"),
    "demo": ("_demo", "generate a synthetic week of selections and show the answers"),
    "switch": ("_switch", "switch Claude Code to another provider and record it"),
    "hook": ("_hook", "Claude Code hook integration"),
    "import": ("_import", "publish the measured usage in Claude Code's transcripts"),
    "usage": ("_usage", "measured tokens and cost by day, session, project, provider, model"),
    "budget": ("_budget", "daily spend budgets (set, show)"),
    "statusline": ("_statusline", "Claude Code statusline: today's spend against the budget"),
}


def _available() -> dict[str, tuple[str, str]]:
    from importlib.util import find_spec

    return {n: v for n, v in COMMANDS.items() if find_spec(f"{__name__}.{v[0]}") is not None}


def _fast(args: list[str]) -> int | None:
    """The hot paths, before argparse and msgspec are imported: ``publish --background`` and
    ``hook claude`` (see ``publish/_enqueue.py``). ``None``: take the full path."""
    if args[0] == "publish" and "--background" in args:
        from provider_events.publish._enqueue import cli_publish

        return cli_publish(args[1:])
    if args == ["hook", "claude"]:
        from provider_events.cli._hook_fast import claude

        return claude()
    return None


def hook_claude() -> int:
    """``hook claude`` as ``hook install`` registers it: ``python -I -S -c "import sys;
    sys.path.insert(0, ...); from provider_events.cli import hook_claude; hook_claude()"``
    (:func:`provider_events.integrations._hook.default_hook_command`). ``python -m`` would
    load runpy, importlib.util and contextlib before the first line (1.5-3 ms of every
    prompt). Never raises; returns 0."""
    from provider_events.cli._hook_fast import claude

    return claude()


#: ``scripts/publish_provider_selection.py`` (the guide's CLI): ``publish`` under this name.
SCRIPT_PROG = "publish_provider_selection.py"


def main(argv: Sequence[str] | None = None, *, script: bool = False) -> int:
    """``provider-events ARGS``; with ``script=True``, the guide's script: ``ARGS`` are the
    ``publish`` command's (same fast path, redaction and one-line errors)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if script:
        args = ["publish", *args]
    if args and sys.stdout is not None:  # fd 1 closed: the full path words that
        try:
            code = _fast(args)  # standard library only; prints event ids, never a setting
        except BrokenPipeError:
            return 0
        except OSError as exc:  # only its last step, writing the event id, can raise this
            _quiet_stdout(sys.stdout)
            sys.stderr.write(f"error: cannot write the output: {exc.strerror or exc}\n")
            return 1
        if code is not None:
            return code
    from provider_events.cli._common import EXIT_FAILED, RedactingStream, _OutputStreamError, fail

    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)
    try:
        code = _main(args, script)
        sys.stdout.flush()  # a full device reports itself here, not at interpreter exit
        return code
    except BrokenPipeError:
        return 0
    except _OutputStreamError as exc:
        try:
            return fail(str(exc), EXIT_FAILED)
        except OSError:  # stderr is gone too: the exit code is all that is left
            return EXIT_FAILED
    finally:
        _quiet_stdout(out)
        sys.stdout, sys.stderr = out, err


def _quiet_stdout(out: object) -> None:
    """After a failed write the interpreter would flush stdout again at exit and print a
    traceback-like "Exception ignored" message: point fd 1 at /dev/null once it has failed."""
    import os

    try:
        out.flush()  # type: ignore[attr-defined]
    except (OSError, AttributeError, ValueError):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
        except OSError:
            pass


def _main(args: list[str], script: bool = False) -> int:
    import importlib

    from provider_events.cli._common import EXIT_BAD_INPUT, ArgumentParser, fail

    if args[:1] == ["hook"]:
        # `hook claude` runs inside Claude Code: it never fails on its arguments (exit 2 would
        # block the prompt), so it skips argparse; every other `hook` action is parsed strictly.
        from provider_events.cli._hook import claude_arguments, run_claude

        is_claude, settings = claude_arguments(args[1:])
        if is_claude:
            return run_claude(settings)
    if script:  # the guide's script: `publish`'s flags at the top level, under its own name
        from provider_events.cli import _publish

        parser = ArgumentParser(
            prog=SCRIPT_PROG,
            description="Publish an omninode.agent.provider.selected.v1 event to Kafka.",
        )
        _publish.add_arguments(parser)
        parser.set_defaults(_run=_publish.run)
        return _run_command(parser.parse_args(args[1:]))
    prog = "provider-events"
    parser = ArgumentParser(
        prog=prog, description="Provider-selection events: publish, deliver, ingest, analyse."
    )
    parser.add_argument("--version", action="version", version=f"{prog} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = args[0] if args and args[0] in COMMANDS else None
    commands = _available()
    for name, (module_name, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(f"{__name__}.{module_name}")
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    if not args:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    ns = parser.parse_args(args)
    if not hasattr(ns, "_run"):
        return fail(f"unknown command {args[0]!r}", EXIT_BAD_INPUT)
    return _run_command(ns)


def _run_command(ns: Any) -> int:
    """Run the parsed command; every exception it lets through becomes one line."""
    from provider_events.cli._common import EXIT_BAD_INPUT, _OutputStreamError, fail
    from provider_events.errors import (
        ConfigError,
        InvalidEventError,
        ProviderEventsError,
        UnsafePathError,
    )

    try:
        return int(ns._run(ns) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except _OutputStreamError:
        raise  # main() words it
    # A command that let one of ours through: still one line, and the exit code its kind
    # means (bad input is 2 wherever it was found, e.g. a malformed DATABASE_URL).
    except ConfigError as exc:
        return fail(f"configuration: {exc}", EXIT_BAD_INPUT)
    except (InvalidEventError, UnsafePathError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except ProviderEventsError as exc:
        return fail(str(exc))
    except Exception as exc:  # a bug: one line (redacted by the stream), never a traceback
        return fail(f"{INTERNAL_ERROR} ({type(exc).__name__}: {exc}); please report it")


def _version() -> str:
    from provider_events import __version__

    return __version__
