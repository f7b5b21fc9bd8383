"""Helpers every command shares: exit codes, one-line errors, settings loading."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from provider_events.errors import ExitCode

if TYPE_CHECKING:
    from provider_events.settings import Settings

# Short names for the codes defined once in :class:`provider_events.errors.ExitCode`.
EXIT_OK = ExitCode.OK
EXIT_FAILED = ExitCode.FAILED
EXIT_BAD_INPUT = ExitCode.BAD_INPUT


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        # One line, even when the message quotes an argument holding a newline.
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {' '.join(message.split())}\n")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # Python 3.11 turns ``--opt=--`` into ``[]`` (it drops the ``--`` and skips ``type``):
        # take the value literally, converted and checked like any other.
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return value
        return super()._get_values(action, arg_strings)


class _OutputStreamError(Exception):
    """Standard output cannot be written (closed, a full device, an I/O error): the command
    ends with one line on stderr and exit 1, not an internal error. Never leaves the CLI."""


class RedactingStream:
    """A text stream that passes everything written through the one redaction function.

    :func:`provider_events.cli.main` puts it in front of ``sys.stdout`` and ``sys.stderr`` for the
    command's run, so no code path (a one-line error, a JSON log line, a rich table, a log
    record, a retry message) can print a DSN password, the SASL password or an API key.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        from provider_events.settings import redact_dsn

        if self._stream is None:  # the process started with that descriptor closed
            raise _OutputStreamError("standard output is closed")
        self._guarded(self._stream.write, redact_dsn(text))
        return len(text)

    def flush(self) -> None:
        if self._stream is not None:
            self._guarded(self._stream.flush)

    @staticmethod
    def _guarded(call: Callable[..., Any], *args: Any) -> None:
        """``call(*args)``, an ``OSError`` (a full device, an I/O error) as
        :class:`_OutputStreamError`; a broken pipe (the reader went away, `| head`) as is."""
        try:
            call(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _OutputStreamError(f"cannot write the output: {exc.strerror or exc}") from None

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# -- validated argparse types: a bad value is one line on stderr and exit 2 ---------------------
#: The largest whole number any flag takes: what PostgreSQL's bigint and SQLite hold.
INT64_MAX = 2**63 - 1


def int_arg(minimum: int, maximum: int = INT64_MAX) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``[minimum, maximum]`` (``1_000`` allowed)."""

    def parse(raw: str) -> int:
        text = raw.strip()
        if len(text) > 30:
            raise argparse.ArgumentTypeError(f"{raw[:30]!r}... is not a whole number")
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be {minimum}..{maximum}, got {raw!r}")
        return value

    parse.__name__ = "whole number"
    return parse


def float_arg(
    minimum: float, maximum: float, *, exclude_minimum: bool = False
) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in ``[minimum, maximum]`` (``(minimum, ...]`` with
    ``exclude_minimum``); nan and the infinities are refused."""

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip()[:400])
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw[:40]!r} is not a number") from None
        low_ok = value > minimum if exclude_minimum else value >= minimum
        if not math.isfinite(value) or not low_ok or value > maximum:
            low = f"> {minimum:g}" if exclude_minimum else f">= {minimum:g}"
            raise argparse.ArgumentTypeError(
                f"must be a finite number {low} and <= {maximum:g}, got {raw[:40]!r}"
            )
        return value + 0.0  # -0.0 -> 0.0

    parse.__name__ = "number"
    return parse


def text_arg(raw: str) -> str:
    """An argparse ``type``: a non-empty one-line text (an empty filter would match everything)."""
    if not raw.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if any(c in raw for c in "\x00\n\r"):
        raise argparse.ArgumentTypeError("must be one line without NUL characters")
    return raw


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """Print ``message`` as one line on stderr and return ``code``."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code


def add_claude_settings_argument(p: argparse.ArgumentParser) -> None:
    """``--settings PATH``: the Claude Code settings file (``switch`` and ``hook`` edit it)."""
    p.add_argument(
        "--settings",
        type=Path,
        default=None,
        metavar="PATH",
        help="Claude Code settings file (default: $CLAUDE_CONFIG_DIR/settings.json, "
        "else ~/.claude/settings.json)",
    )


def settings_or_exit(**overrides: Any) -> Settings:
    """Load settings; a misconfiguration ends the command with one line and exit code 2."""
    from provider_events.errors import ConfigError
    from provider_events.settings import load_settings

    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise SystemExit(fail(f"configuration: {exc}", EXIT_BAD_INPUT)) from None


def configure_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        logging.getLogger("provider_events.kafka").setLevel(logging.CRITICAL)
