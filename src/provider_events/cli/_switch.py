"""``provider-events switch PROVIDER|list|status|add`` (and ``scripts/toggle-claude-provider.sh``).

``switch add NAME --base-url URL --model M --key-env VAR`` defines a new provider in the user's
providers file (``--haiku-model``/``--sonnet-model``/``--opus-model`` set one tier each).

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
        "(or one from your providers file); 'list' shows them, 'status' (default) the active "
        "one, 'add NAME ...' defines a new one",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="add: the new provider's name")
    add = p.add_argument_group("add NAME (stored in the providers file)")
    add.add_argument("--base-url", metavar="URL", help="the Anthropic-compatible base URL")
    add.add_argument("--model", metavar="MODEL", help="the model of every tier")
    for tier in ("haiku", "sonnet", "opus"):
        add.add_argument(f"--{tier}-model", metavar="MODEL", help=f"the {tier}-tier model")
    add.add_argument("--key-env", metavar="VAR", help="the variable holding the API key")
    add.add_argument("--display-name", metavar="TEXT", help="a display name (default: NAME)")
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
    add_options = [
        o
        for o in (
            *("base_url", "model", "haiku_model", "sonnet_model", "opus_model"),
            *("key_env", "display_name"),
        )
        if getattr(args, o) is not None
    ]
    if name != "add" and (args.name is not None or add_options):
        extra = args.name if args.name is not None else "--" + add_options[0].replace("_", "-")
        return fail(f"{extra!r} only goes with 'switch add'", EXIT_BAD_INPUT)
    try:
        if name == "add":
            return _add(out, args)
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
        headline = f"Active provider: {match.name} (no definition matches; see 'switch add')"
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


def _add(out: _Out, args: argparse.Namespace) -> int:
    from provider_events.integrations._switch import add_provider

    if not args.name:
        return fail("switch add needs a NAME", EXIT_BAD_INPUT)
    if args.name != args.name.lower():
        return fail(f"{args.name!r}: provider names are lower case (switch lowers them)", 2)
    missing = [o for o in ("base_url", "key_env") if getattr(args, o) is None]
    models = {t: getattr(args, f"{t}_model") or args.model for t in ("haiku", "sonnet", "opus")}
    missing += [f"{t}_model" for t, m in models.items() if m is None and args.model is None]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing[:2])
        return fail(f"switch add needs {flags} (and --model or one per tier)", EXIT_BAD_INPUT)
    spec: dict[str, Any] = {}
    if args.display_name is not None:
        spec["display_name"] = args.display_name
    spec.update(base_url=args.base_url, models=models, api_key_env=args.key_env)
    path, provider = add_provider(args.name, spec)
    out.line(f"Added provider {provider.name} ({provider.display_name})", "bold green")
    out.field("base URL", provider.base_url or "")
    out.field("models", _models(provider.models))
    out.field("key", f"from {provider.api_key_env} (not shown)")
    out.field("file", str(path))
    out.line(f"Switch to it with: provider-events switch {provider.name}")
    return EXIT_OK
