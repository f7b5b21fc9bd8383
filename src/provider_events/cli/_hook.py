"""``provider-events hook claude|install|uninstall|status``: the Claude Code hook.

``hook claude`` is what Claude Code runs: hook JSON on stdin, nothing on stdout, exit 0 always
(problems go to ``<state dir>/hook.log``). ``install`` registers it for SessionStart,
UserPromptSubmit, Stop and SubagentStop in settings.json (idempotent); ``uninstall`` removes only
entries running it.

Options go anywhere (``hook install --settings F`` = ``hook --settings F install``), are never
abbreviated, and an unknown one is an error (exit 2, nothing written), except for ``hook claude``:
exit 2 would block Claude Code's prompt, so :func:`claude_arguments` reads its ``--settings``
leniently and ignores anything else (``provider-events`` routes it there before argparse).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from provider_events.cli._common import EXIT_OK, add_claude_settings_argument


def claude_arguments(args: list[str]) -> tuple[bool, Path | None]:
    """``(is a claude call, --settings value)`` for the arguments after ``hook``; not a claude
    call when the first positional is another action or ``--help`` is asked for."""
    settings: Path | None = None
    positionals: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            return False, None
        if arg in ("--settings", "--command"):
            if arg == "--settings" and i + 1 < len(args):
                settings = Path(args[i + 1])
            i += 2
            continue
        if arg.startswith("--settings="):
            settings = Path(arg.split("=", 1)[1])
        elif not arg.startswith("-"):
            positionals.append(arg)
        i += 1
    # A stray value (`--setting x claude`) must not hide `claude`; another action wins only
    # when it comes first.
    first = positionals[0] if positionals else None
    if first in ("install", "uninstall", "status"):
        return False, None
    return "claude" in positionals, settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.allow_abbrev = False  # `--setting F` is a typo to report, not `--settings F`
    p.add_argument(
        "action",
        choices=("claude", "install", "uninstall", "status"),
        help="claude: run as the hook (reads stdin); install/uninstall: edit settings.json; "
        "status: show what is installed",
    )
    add_claude_settings_argument(p)
    p.add_argument(
        "--command",
        default=None,
        help="install: the command to register (default: this Python running "
        "'-c \"from provider_events.cli import hook_claude; hook_claude()\"', i.e. "
        "'hook claude')",
    )
    p.epilog = (
        "Options may come before or after the action. 'hook claude' ignores arguments it does "
        "not know (exit 2 would block Claude Code's prompt)."
    )


def run(args: argparse.Namespace) -> int:
    if args.action == "claude":
        return run_claude(args.settings)
    from provider_events.cli._common import fail
    from provider_events.integrations._switch import SwitchError

    try:
        if args.action == "install":
            return _install(args)
        if args.action == "uninstall":
            return _uninstall(args)
        return _status(args)
    except SwitchError as exc:
        return fail(str(exc), exc.exit_code)


def run_claude(settings_path: Path | None) -> int:
    """``hook claude``: run the hook; exit 0 whatever happens."""
    try:
        # Nothing may reach stdout: for UserPromptSubmit it becomes part of the prompt.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        from provider_events.integrations._hook import run_claude_hook

        run_claude_hook(settings_path=settings_path)
    except BaseException:
        pass
    return EXIT_OK


def _install(args: argparse.Namespace) -> int:
    from provider_events.integrations._hook import default_hook_command, install

    command = args.command or default_hook_command()
    edit = install(command, path=args.settings)
    for event, what in edit.events.items():
        print(f"{event}: {what}")
    print(f"command: {command}")
    print(f"settings: {edit.path}" + ("" if edit.changed else " (unchanged)"))
    if edit.backup is not None:
        print(f"backup: {edit.backup} (mode 0600)")
    if edit.changed:
        print("Restart Claude Code (or open /hooks) for the hook to take effect.")
    return EXIT_OK


def _uninstall(args: argparse.Namespace) -> int:
    from provider_events.integrations._hook import uninstall

    edit = uninstall(path=args.settings)
    if not edit.events:
        print(f"no provider-events hook in {edit.path}; nothing changed")
        return EXIT_OK
    for event, what in edit.events.items():
        print(f"{event}: {what}")
    print(f"settings: {edit.path}")
    if edit.backup is not None:
        print(f"backup: {edit.backup} (mode 0600)")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from provider_events.integrations._hook import HOOK_EVENTS, is_our_command
    from provider_events.integrations._switch import claude_settings_path, read_settings
    from provider_events.settings import load_settings

    settings = read_settings(args.settings or claude_settings_path())
    hooks = settings.doc.get("hooks")
    hooks = hooks if isinstance(hooks, dict) else {}
    for event in HOOK_EVENTS:
        commands = [
            h.get("command")
            for g in hooks.get(event, [])
            if isinstance(g, dict)
            for h in g.get("hooks", [])
            if isinstance(h, dict) and is_our_command(h.get("command"))
        ]
        print(f"{event}: {commands[0] if commands else 'not installed'}")
    print(f"settings: {settings.path}")
    try:
        print(f"log: {load_settings().state_dir / 'hook.log'}")
    except Exception as exc:
        print(f"log: unknown (configuration problem: {exc})")
    return EXIT_OK
