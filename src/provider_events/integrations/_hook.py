"""The Claude Code hook: record which provider and model each session and prompt runs on.

``provider-events hook claude`` is registered for ``UserPromptSubmit`` and ``SessionStart``.
Claude Code gives it the hook JSON on stdin (``session_id``, ``hook_event_name``, ``cwd``,
``transcript_path``, ``prompt`` or ``source`` ...). It publishes one provider-selection event in
background mode (committed to the local outbox; the relay delivers it) keyed by the session id,
so every event of a session lands on one partition in order. The prompt text is never read into
the event.

The rules of a hook that runs before every prompt:

* nothing on stdout (for ``UserPromptSubmit`` stdout becomes part of the model's context);
* exit 0 always (exit 2 would block the prompt), whatever stdin or the configuration holds;
* never block: stdin is read with a deadline and a watchdog ends the process after
  ``PROVIDER_EVENTS_HOOK_TIMEOUT`` seconds (default 3) whatever it is doing;
* problems go to ``<state dir>/hook.log`` (kept under 256 KiB, one previous file).

Which provider: per key, the hook's own environment (Claude Code applied settings.json's ``env``
to it when the session started, so it describes the running session even after a switch that
awaits a restart) then settings.json's ``env``. The base URL and tier models are matched against
the provider table (:func:`provider_events.integrations._providers.identify`). Which model: the hook JSON's
``model`` when Claude Code sends one, else ``ANTHROPIC_MODEL`` (tier aliases like ``opus`` are
resolved), else the sonnet-tier model.

Import-light: no rich, confluent_kafka, asyncio or prometheus_client on this path.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provider_events.integrations._providers import (
    ENV_BASE_URL,
    ENV_MODEL_KEYS,
    TIERS,
    Provider,
    identify,
)

__all__ = [
    "HOOK_EVENTS",
    "HookInput",
    "Selection",
    "default_hook_command",
    "detect_selection",
    "install",
    "is_our_command",
    "parse_hook_input",
    "run_claude_hook",
    "uninstall",
]

HOOK_EVENTS = ("UserPromptSubmit", "SessionStart")
MAX_STDIN = 32 << 20  # a pasted prompt can be large; beyond this the call is logged, not read
STDIN_DEADLINE = 1.0
DEFAULT_TIMEOUT = 3.0
LOG_MAX_BYTES = 256 * 1024
_OURS = re.compile(r"(?:provider-events|provider_events\.cli)['\"]?\s+hook\s+claude\b")


class HookInputError(ValueError):
    """stdin did not hold a Claude Code hook JSON object."""


@dataclass(frozen=True, slots=True)
class HookInput:
    event_name: str
    session_id: str | None
    source: str | None
    cwd: str | None
    model: str | None


@dataclass(frozen=True, slots=True)
class Selection:
    provider_name: str
    model_name: str
    criteria: dict[str, Any]
    exact: bool


# -- the log -----------------------------------------------------------------------------------
def _state_dir(settings: Any | None, environ: Mapping[str, str]) -> Path:
    if settings is not None:
        return Path(settings.state_dir)
    explicit = environ.get("PROVIDER_EVENTS_STATE_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local/state")
    return Path(base).expanduser() / "provider-events"


class HookLog:
    """Appends one line per problem to ``hook.log``; never raises."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "hook.log"

    def write(self, message: str) -> None:
        from provider_events.settings import redact_dsn

        line = " ".join(redact_dsn(message).split())
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        data = f"{stamp} pid={os.getpid()} {line}\n".encode("utf-8", "replace")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                if self.path.stat().st_size > LOG_MAX_BYTES:
                    os.replace(self.path, self.path.with_name("hook.log.1"))
            except FileNotFoundError:
                pass
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError:
            pass


# -- reading the hook input --------------------------------------------------------------------
def read_stdin(fd: int = 0, deadline: float = STDIN_DEADLINE, limit: int = MAX_STDIN) -> bytes:
    """Read ``fd`` to EOF, but for at most ``deadline`` seconds and ``limit`` bytes."""
    import select

    if os.isatty(fd):
        return b""
    chunks: list[bytes] = []
    size = 0
    end = time.monotonic() + deadline
    while size < limit:
        left = end - time.monotonic()
        if left <= 0:
            raise HookInputError(f"stdin was not closed within {deadline:g}s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    else:
        raise HookInputError(f"stdin is larger than {limit} bytes")
    return b"".join(chunks)


def _opt_text(doc: Mapping[str, Any], key: str, limit: int = 128) -> str | None:
    value = doc.get(key)
    if isinstance(value, str):
        value = value.strip()
        if value and len(value) <= limit and not any(ord(c) < 32 for c in value):
            return value
    return None


def parse_hook_input(data: bytes) -> HookInput:
    """The fields this hook uses from Claude Code's hook JSON (raises :class:`HookInputError`)."""
    if not data.strip():
        raise HookInputError("stdin was empty (expected Claude Code's hook JSON)")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HookInputError(f"stdin is not JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict):
        raise HookInputError(f"stdin holds a JSON {type(doc).__name__}, not an object")
    model = doc.get("model")
    if isinstance(model, dict):  # some versions send {"id": ..., "display_name": ...}
        model = model.get("id")
    return HookInput(
        event_name=_opt_text(doc, "hook_event_name", 64) or "hook",
        session_id=_opt_text(doc, "session_id"),
        source=_opt_text(doc, "source", 64),
        cwd=doc["cwd"] if isinstance(doc.get("cwd"), str) else None,
        model=_opt_text({"model": model}, "model", 200),
    )


# -- working out provider and model ------------------------------------------------------------
_ALIAS = re.compile(r"^(haiku|sonnet|opus)(\[1m\])?$")


def detect_selection(
    settings_env: Mapping[str, Any],
    environ: Mapping[str, str],
    providers: Mapping[str, Provider],
    hook_model: str | None = None,
) -> Selection:
    """Provider and model Claude Code runs on: the process environment, then settings.json."""
    keys = (ENV_BASE_URL, *ENV_MODEL_KEYS.values(), "ANTHROPIC_MODEL")
    merged: dict[str, str] = {}
    for key in keys:
        value = environ.get(key) or settings_env.get(key)
        if isinstance(value, str) and value.strip():
            merged[key] = value.strip()
    match = identify(merged, providers, environ)
    provider = match.provider or match.closest
    tiers = {
        t: merged.get(ENV_MODEL_KEYS[t]) or (provider.models[t] if provider else None)
        for t in TIERS
    }
    model = hook_model or merged.get("ANTHROPIC_MODEL")
    alias = _ALIAS.match(model) if model else None
    if alias:
        model = tiers[alias.group(1)] or model
    model = model or tiers["sonnet"] or "unknown"
    criteria = dict(provider.criteria) if provider is not None else {}
    return Selection(match.name, model, criteria, match.exact)


def _reason(hook: HookInput) -> str:
    return f"Claude Code {hook.event_name}" + (f" ({hook.source})" if hook.source else "")


# -- the hook itself ---------------------------------------------------------------------------
def _watchdog(seconds: float, log: HookLog) -> None:
    import threading

    def expire() -> None:
        log.write(f"gave up after {seconds:g}s (PROVIDER_EVENTS_HOOK_TIMEOUT); exiting 0")
        os._exit(0)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def _timeout(environ: Mapping[str, str]) -> float:
    try:
        value = float(environ.get("PROVIDER_EVENTS_HOOK_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if 0 < value <= 60 else DEFAULT_TIMEOUT


def run_claude_hook(
    fd: int = 0, environ: Mapping[str, str] | None = None, settings_path: Path | None = None
) -> str | None:
    """Publish the selection for one hook call; returns the event id, ``None`` if not published.

    Never raises; problems are written to ``hook.log`` in the state directory.
    """
    env = os.environ if environ is None else environ
    log = HookLog(_state_dir(None, env))
    try:
        from provider_events.settings import load_settings

        settings = load_settings(env)
    except Exception as exc:
        log.write(f"configuration problem, event not published: {exc}")
        return None
    log = HookLog(_state_dir(settings, env))
    _watchdog(_timeout(env), log)
    try:
        return _publish(fd, env, settings, log, settings_path)
    except Exception as exc:
        log.write(f"unexpected {type(exc).__name__}: {exc}")
        return None


def _publish(
    fd: int, env: Mapping[str, str], settings: Any, log: HookLog, path: Path | None
) -> str | None:
    try:
        hook = parse_hook_input(read_stdin(fd))
    except (HookInputError, OSError) as exc:
        log.write(f"ignored hook call, event not published: {exc}")
        return None
    from provider_events.errors import ConfigError
    from provider_events.integrations._providers import BUILTIN_PROVIDERS, load_providers
    from provider_events.integrations._switch import (
        SwitchError,
        claude_settings_path,
        read_settings,
    )

    try:
        providers = load_providers(env)
    except ConfigError as exc:
        log.write(f"provider file problem, using the built-in providers: {exc}")
        providers = dict(BUILTIN_PROVIDERS)
    try:
        settings_env = read_settings(path or claude_settings_path(env)).env
    except SwitchError as exc:
        log.write(f"settings.json not used: {exc}")
        settings_env = {}
    selection = detect_selection(settings_env, env, providers, hook.model)
    if hook.session_id is None:
        log.write(f"{hook.event_name}: no usable session_id; a correlation id was generated")
    from provider_events.publish._publisher import Publisher

    result = Publisher(settings).publish_sync(
        delivery="background",
        provider_name=selection.provider_name,
        model_name=selection.model_name,
        correlation_id=hook.session_id,
        selection_reason=_reason(hook),
        selection_criteria=selection.criteria,
    )
    if not result.accepted:
        log.write(f"{hook.event_name}: event not queued ({result.status.value}): {result.error}")
        return None
    if env.get("PROVIDER_EVENTS_HOOK_DEBUG"):
        log.write(
            f"{hook.event_name}: queued {result.event_id} provider={selection.provider_name} "
            f"model={selection.model_name} session={hook.session_id}"
        )
    return result.event_id


# -- install / uninstall -----------------------------------------------------------------------
def is_our_command(command: Any) -> bool:
    return isinstance(command, str) and _OURS.search(command) is not None


def default_hook_command() -> str:
    """The command to register: this interpreter running ``provider_events.cli hook claude``,
    with ``PYTHONPATH`` when that interpreter would not find this copy of the package alone."""
    import shlex
    import subprocess
    import sys

    package = Path(__file__).resolve().parent
    command = shlex.join([sys.executable, "-m", "provider_events.cli", "hook", "claude"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = "import provider_events, os; print(os.path.dirname(provider_events.__file__))"
    try:
        found = subprocess.run(
            [sys.executable, "-c", probe],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        found = ""
    if found and Path(found).resolve() == package:
        return command
    return f"PYTHONPATH={shlex.quote(str(package.parent))} {command}"


@dataclass(frozen=True, slots=True)
class HookEdit:
    path: Path
    changed: bool
    backup: Path | None
    #: hook event name -> "added", "updated", "unchanged" or "removed"
    events: dict[str, str]


def _groups(hooks: dict[str, Any], event: str, path: Path) -> list[Any]:
    from provider_events.integrations._switch import SettingsFileError

    groups = hooks.get(event, [])
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("hooks", []), list) for g in groups
    ):
        raise SettingsFileError(
            f"{path}: hooks.{event} is not a list of matcher groups; the file was not changed"
        )
    return groups


def _hooks(doc: Mapping[str, Any], path: Path) -> dict[str, Any]:
    from provider_events.integrations._switch import SettingsFileError

    hooks = doc.get("hooks", {})
    if not isinstance(hooks, dict):
        raise SettingsFileError(f'{path}: "hooks" must be an object; the file was not changed')
    return hooks


def _edit(path: Path | None, change: Any) -> HookEdit:
    from provider_events.integrations._switch import (
        _Changed,
        _WriteError,
        claude_settings_path,
        dump_settings,
        read_settings,
        write_settings,
    )

    path = path or claude_settings_path()
    for _ in range(5):
        settings = read_settings(path)
        new_doc, events = change(settings.doc, path)
        if new_doc == settings.doc:
            return HookEdit(path, False, None, events)
        try:
            backup = write_settings(settings, dump_settings(new_doc, settings.style))
        except _Changed:
            continue
        return HookEdit(path, True, backup, events)
    raise _WriteError(f"{path} kept changing; nothing was changed, try again")


def install(
    command: str,
    *,
    path: Path | None = None,
    events: tuple[str, ...] = HOOK_EVENTS,
    timeout: int = 10,
) -> HookEdit:
    """Register ``command`` for ``events`` in settings.json, once (idempotent; updates ours)."""

    def change(doc: dict[str, Any], where: Path) -> tuple[dict[str, Any], dict[str, str]]:
        new = dict(doc)
        hooks = dict(_hooks(doc, where))
        outcome: dict[str, str] = {}
        entry = {"type": "command", "command": command, "timeout": timeout}
        for event in events:
            groups: list[Any] = []
            for group in _groups(hooks, event, where):
                kept = []
                for h in group.get("hooks", []):
                    if not (isinstance(h, dict) and is_our_command(h.get("command"))):
                        kept.append(h)
                    elif event not in outcome:  # the first of ours: keep it, up to date
                        kept.append(h if h == entry else {**h, **entry})
                        outcome[event] = "unchanged" if h == entry else "updated"
                    # a further one of ours is a duplicate: dropped
                if kept or not group.get("hooks"):
                    groups.append(dict(group, hooks=kept) if "hooks" in group else group)
            if event not in outcome:
                groups.append({"hooks": [dict(entry)]})
                outcome[event] = "added"
            hooks[event] = groups
        new["hooks"] = hooks
        return new, outcome

    return _edit(path, change)


def uninstall(*, path: Path | None = None) -> HookEdit:
    """Remove every hook entry running ``provider-events hook claude``; nothing else."""

    def change(doc: dict[str, Any], where: Path) -> tuple[dict[str, Any], dict[str, str]]:
        if "hooks" not in doc:
            return doc, {}
        hooks = dict(_hooks(doc, where))
        outcome: dict[str, str] = {}
        for event in list(hooks):
            groups = _groups(hooks, event, where)
            new_groups = []
            removed = False
            for group in groups:
                kept = [
                    h
                    for h in group.get("hooks", [])
                    if not (isinstance(h, dict) and is_our_command(h.get("command")))
                ]
                if len(kept) != len(group.get("hooks", [])):
                    removed = True
                    if kept:
                        new_groups.append(dict(group, hooks=kept))
                else:
                    new_groups.append(group)
            if removed:
                outcome[event] = "removed"
                if new_groups:
                    hooks[event] = new_groups
                else:
                    del hooks[event]
        if not outcome:
            return doc, {}
        new = dict(doc)
        if hooks:
            new["hooks"] = hooks
        else:
            del new["hooks"]
        return new, outcome

    return _edit(path, change)
