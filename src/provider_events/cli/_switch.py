"""``provider-events switch PROVIDER|list|status`` (and ``scripts/toggle-claude-provider.sh``).

Points Claude Code at a provider by editing the ``env`` block of its settings.json, then queues
the provider-selection event in background mode. Exit 0 switched (a publish problem is a warning,
never a failure), 2 bad input (unknown provider, key not set, malformed settings or providers
file; nothing written), 1 the file could not be written (nothing changed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from provider_events.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    add_claude_settings_argument,
    configure_logging,
    fail,
)

RESTART = "Restart Claude Code for changes to take effect."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "provider",
        nargs="?",
        default="status",
        metavar="PROVIDER",
        help="claude, zai, together, openrouter, gemini-pro, gemini-flash, gemini-2.5-flash "
        "(or one from your providers file); 'list' shows them, 'status' (default) the active one",
    )
    add_claude_settings_argument(p)
    p.add_argument(
        "--no-event", action="store_true", help="switch without publishing the selection event"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    out.add_argument(
        "--verbose", "-v", action="store_true", help="also print the keys changed and client logs"
    )
    p.epilog = (
        "Providers file: $PROVIDER_EVENTS_PROVIDERS_FILE, else "
        "~/.config/provider-events/providers.toml or providers.json. API keys are read from the "
        "variable each provider names (e.g. ZAI_API_KEY) and never printed."
    )


class _Out:
    """Plain lines when stdout is not a terminal; rich styling when it is."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._console: Any = None
        if not quiet and sys.stdout.isatty():
            from rich.console import Console

            self._console = Console(highlight=False, soft_wrap=True)

    def line(self, text: str = "", style: str | None = None) -> None:
        if self.quiet:
            return
        if self._console is None:
            print(text)
        else:
            from rich.markup import escape

            self._console.print(f"[{style}]{escape(text)}[/]" if style else escape(text))

    def field(self, label: str, value: str) -> None:
        self.line(f"  {label:<9} {value}")


def _models(models: Any) -> str:
    return "  ".join(
        f"{tier}={models[tier] or '(default)'}" for tier in ("haiku", "sonnet", "opus")
    )


def run(args: argparse.Namespace) -> int:
    if args.verbose:
        configure_logging(True)
    from provider_events.errors import ConfigError
    from provider_events.integrations._providers import load_providers
    from provider_events.integrations._switch import SwitchError

    try:
        providers = load_providers()
    except ConfigError as exc:
        return fail(f"providers file: {exc}", EXIT_BAD_INPUT)
    name = args.provider.strip().lower()
    out = _Out(args.quiet and name not in ("list", "status"))
    try:
        if name == "list":
            return _list(out, providers, args.settings)
        if name == "status":
            return _status(out, providers, args.settings)
        return _switch(out, args, providers, name)
    except SwitchError as exc:
        return fail(str(exc), exc.exit_code)


def _list(out: _Out, providers: dict[str, Any], path: Path | None) -> int:
    from provider_events.integrations._switch import SettingsFileError, status
    from provider_events.settings import process_environ

    try:
        active = status(providers, path=path).match.provider
    except SettingsFileError:
        active = None
    for p in providers.values():
        mark = "*" if active is not None and active.name == p.name else " "
        if p.native:
            key = "Claude login"
        else:
            key = f"{p.api_key_env} ({'set' if process_environ().get(p.api_key_env or '') else 'not set'})"
        url = p.resolved_base_url() or "Anthropic"
        out.line(f"{mark} {p.name:<17} {p.display_name:<17} {p.sonnet_model:<40} {key}  {url}")
    return EXIT_OK


def _status(out: _Out, providers: dict[str, Any], path: Path | None) -> int:
    from provider_events.integrations._switch import status

    st = status(providers, path=path)
    match = st.match
    if match.provider is not None:
        headline = f"Active provider: {match.provider.name} ({match.provider.display_name})"
    elif match.closest is not None:
        headline = f"Active provider: custom (closest: {match.closest.name}; models differ)"
    else:
        headline = f"Active provider: custom ({match.name})"
    out.line(headline, "bold")
    out.field("base URL", match.base_url or "Anthropic (no override)")
    out.field("models", _models(match.models))
    out.field("token", "set (hidden)" if st.token_set else "not set")
    out.field("settings", f"{st.path}" + ("" if st.exists else " (no file yet)"))
    if st.model_override:
        out.line(f"Note: ANTHROPIC_MODEL={st.model_override} in settings.json overrides the tiers.")
    return EXIT_OK


def _switch(out: _Out, args: argparse.Namespace, providers: dict[str, Any], name: str) -> int:
    from provider_events.integrations._switch import publish_switch_event, resolve_provider, switch

    provider = resolve_provider(name, providers)
    outcome = switch(provider, path=args.settings)
    if outcome.changed:
        out.line(f"Switched Claude Code to {provider.display_name} ({provider.name})", "bold green")
    else:
        out.line(f"Claude Code already uses {provider.display_name} ({provider.name})", "bold")
    out.field("base URL", outcome.base_url or "Anthropic (overrides removed)")
    out.field("models", _models(provider.models) if not provider.native else "Claude Code's own")
    if not provider.native:
        out.field("key", f"from {provider.api_key_env} (not shown)")
    out.field("settings", str(outcome.path))
    if outcome.backup is not None:
        out.field("backup", f"{outcome.backup} (mode 0600)")
    if args.verbose:
        out.field("set", ", ".join(outcome.set_keys) or "-")
        out.field("removed", ", ".join(outcome.removed_keys) or "-")
    if outcome.model_override:
        out.line(
            f"Note: ANTHROPIC_MODEL={outcome.model_override} in settings.json still overrides "
            "the tier models."
        )
    if not args.no_event:
        event_id, problem = publish_switch_event(provider)
        if problem is None:
            out.field("event", f"queued for delivery ({event_id})")
        else:
            print(f"warning: selection event not recorded: {problem}", file=sys.stderr)
    out.line(RESTART, "yellow")
    return EXIT_OK
