"""Helpers every command shares: exit codes, one-line errors, settings loading."""

from __future__ import annotations

import argparse
import sys
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
