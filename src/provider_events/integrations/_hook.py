"""The Claude Code hook: record which provider and model each turn really ran on.

``provider-events hook claude`` is registered for ``SessionStart``, ``UserPromptSubmit``,
``Stop`` and ``SubagentStop``. Claude Code gives it the hook JSON on stdin (``session_id``,
``hook_event_name``, ``cwd``, ``transcript_path``, ``prompt_id`` ...). One selection event is
published per turn, at its end, keyed by the session id so every event of a session lands on
one partition in order:

* ``SessionStart`` remembers the session's ``model`` when Claude Code reports one;
* ``UserPromptSubmit`` remembers when the prompt was submitted and how long the transcript was
  (and publishes a previous turn that never reached ``Stop``, e.g. an interrupted one);
* ``Stop`` reads the transcript lines written since (incrementally, bounded in bytes and time)
  and publishes the turn with the ``model`` of its API requests and ``selected_at`` = the
  prompt's time; ``SubagentStop`` does the same with the sub-agent's transcript;
* any other event is ignored (logged, nothing published).

Where the transcript has nothing, the model comes from :mod:`._claude_model`'s fallbacks; the
``selection_reason`` says which source decided, and ``selection_criteria["claude_code"]`` holds
the turn's details (main or sub-agent, model source, prompt id, number of requests).

The rules of a hook that runs on every prompt:

* nothing on stdout (for ``UserPromptSubmit`` stdout becomes part of the model's context);
* exit 0 always (exit 2 would block the prompt), whatever stdin or the configuration holds;
* never block: stdin is read with a deadline and a watchdog ends the process after
  ``PROVIDER_EVENTS_HOOK_TIMEOUT`` seconds (default 3) whatever it is doing;
* problems go to ``<state dir>/hook.log`` (kept under 256 KiB, one previous file).

Which provider: per key, the hook's own environment (Claude Code applied settings.json's ``env``
to it when the session started) then settings.json's ``env``; the base URL and tier models are
matched against the provider table (:func:`provider_events.integrations._providers.identify`).

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

from provider_events.errors import HookInputError
from provider_events.integrations._providers import (
    ENV_BASE_URL,
    ENV_MODEL_KEYS,
    TIERS,
    Provider,
    identify,
)
from provider_events.settings import (
    DEFAULT_HOOK_TIMEOUT,
    hook_timeout,
    process_environ,
    state_dir_from,
)

__all__ = [
    "HOOK_CODE",
    "HOOK_EVENTS",
    "HookInput",
    "Selection",
    "default_hook_command",
    "detect_selection",
    "hook_code",
    "install",
    "is_our_command",
    "parse_hook_input",
    "resume_claude_hook",
    "run_claude_hook",
    "uninstall",
]

HOOK_EVENTS = ("UserPromptSubmit", "SessionStart", "Stop", "SubagentStop")
#: At these, the new part of ``transcript_path`` is read and its outcomes published.
OUTCOME_EVENTS = ("Stop", "SubagentStop")
MAX_STDIN = 32 << 20  # a pasted prompt can be large; beyond this the call is logged, not read
STDIN_DEADLINE = 1.0
DEFAULT_TIMEOUT = DEFAULT_HOOK_TIMEOUT
LOG_MAX_BYTES = 256 * 1024
#: The Python code of the registered command (``-c``: ``-m`` would load runpy first).
HOOK_CODE = "from provider_events.cli import hook_claude; hook_claude()"
_OURS = re.compile(
    r"(?:provider-events|provider_events\.cli)['\"]?\s+hook\s+claude\b"
    r"|provider_events\.cli import hook_claude\b"
)


@dataclass(frozen=True, slots=True)
class HookInput:
    event_name: str
    session_id: str | None
    source: str | None
    cwd: str | None
    model: str | None
    transcript_path: str | None = None
    prompt_id: str | None = None
    agent_id: str | None = None
    agent_type: str | None = None
    agent_transcript_path: str | None = None
    stop_hook_active: bool = False


@dataclass(frozen=True, slots=True)
class Selection:
    provider_name: str
    model_name: str
    criteria: dict[str, Any]
    exact: bool
    #: The model of each tier (``haiku``, ``sonnet``, ``opus``) for this provider setup.
    tiers: Mapping[str, str | None] | None = None
    #: ``ANTHROPIC_MODEL`` from the environment or settings.json's ``env``.
    anthropic_model: str | None = None


# -- the log -----------------------------------------------------------------------------------
def _state_dir(settings: Any | None, environ: Mapping[str, str]) -> Path:
    if settings is not None:
        return Path(settings.state_dir)
    return state_dir_from(environ)


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
        cwd=_opt_text(doc, "cwd", 4096),
        model=_opt_text({"model": model}, "model", 200),
        transcript_path=_opt_text(doc, "transcript_path", 4096),
        prompt_id=_opt_text(doc, "prompt_id"),
        agent_id=_opt_text(doc, "agent_id"),
        agent_type=_opt_text(doc, "agent_type"),
        agent_transcript_path=_opt_text(doc, "agent_transcript_path", 4096),
        stop_hook_active=doc.get("stop_hook_active") is True,
    )


# -- working out provider and model ------------------------------------------------------------
def detect_selection(
    settings_env: Mapping[str, Any],
    environ: Mapping[str, str],
    providers: Mapping[str, Provider],
    hook_model: str | None = None,
) -> Selection:
    """Provider and model Claude Code runs on: the process environment, then settings.json.

    The model is ``hook_model`` when given, else ``ANTHROPIC_MODEL``, else the sonnet tier
    (tier aliases resolved); the hook itself prefers the transcript (see :func:`run_claude_hook`).
    """
    from provider_events.integrations._claude_model import resolve_alias

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
    model = resolve_alias(model, tiers) if model else (tiers["sonnet"] or "unknown")
    criteria = dict(provider.criteria) if provider is not None else {}
    return Selection(match.name, model, criteria, match.exact, tiers, merged.get("ANTHROPIC_MODEL"))


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
    return hook_timeout(environ)  # PROVIDER_EVENTS_HOOK_TIMEOUT, read in settings


def run_claude_hook(
    fd: int = 0,
    environ: Mapping[str, str] | None = None,
    settings_path: Path | None = None,
    data: bytes | None = None,
) -> str | None:
    """Publish the selection for one hook call; returns the event id, ``None`` if not published.

    ``data``: the call's stdin when it was already read (by the lean path), else ``fd`` is read.
    Never raises; problems are written to ``hook.log`` in the state directory.
    """
    env = process_environ(environ)
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
        return _publish(fd, env, settings, log, settings_path, data)
    except Exception as exc:
        log.write(f"unexpected {type(exc).__name__}: {exc}")
        return None


def resume_claude_hook(
    data: bytes,
    turn: Mapping[str, Any] | None,
    *,
    interrupted: bool,
    outcomes: bool,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The full path from where the lean hook (:mod:`._hook_lean`) handed over: the session
    state is up to date; publish ``turn`` (if given) and the outcomes (if asked). Never raises."""
    env = process_environ(environ)
    log = HookLog(_state_dir(None, env))
    try:
        from provider_events.settings import load_settings

        settings = load_settings(env)
    except Exception as exc:
        log.write(f"configuration problem, event not published: {exc}")
        return None
    log = HookLog(_state_dir(settings, env))
    try:
        from provider_events.integrations._turns import publish_turn

        hook = parse_hook_input(data)
        event_id = None
        if turn is not None:
            event_id = publish_turn(hook, turn, env, settings, log, None, interrupted=interrupted)
        if outcomes:
            _publish_outcomes(hook, env, settings, log, None)
        return event_id
    except Exception as exc:
        log.write(f"unexpected {type(exc).__name__}: {exc}")
        return None


def _publish(
    fd: int,
    env: Mapping[str, str],
    settings: Any,
    log: HookLog,
    path: Path | None,
    data: bytes | None = None,
) -> str | None:
    try:
        hook = parse_hook_input(read_stdin(fd) if data is None else data)
    except (HookInputError, OSError) as exc:
        log.write(f"ignored hook call, event not published: {exc}")
        return None
    if hook.event_name not in HOOK_EVENTS:
        log.write(
            f"{hook.event_name}: not an event this hook is registered for "
            f"({', '.join(HOOK_EVENTS)}); nothing published"
        )
        return None
    if hook.session_id is None:
        log.write(f"{hook.event_name}: no usable session_id; nothing published")
        return None
    from provider_events.integrations._claude_state import open_session, prune_sessions
    from provider_events.integrations._transcript import transcript_size
    from provider_events.integrations._turns import now, publish_subagent, publish_turn

    state_dir = Path(settings.state_dir)
    if hook.event_name == "SessionStart":
        with open_session(state_dir, hook.session_id) as state:
            if hook.model:
                state["session_model"] = hook.model
        prune_sessions(state_dir)
        return None
    if hook.event_name == "UserPromptSubmit":
        turn = {
            "prompt_id": hook.prompt_id,
            "at": now(),
            "offset": transcript_size(hook.transcript_path),
        }
        with open_session(state_dir, hook.session_id) as state:
            previous = state.get("turn")
            state["turn"] = turn
        if isinstance(previous, dict):  # that turn never reached Stop (interrupted)
            return publish_turn(hook, previous, env, settings, log, path, interrupted=True)
        return None
    if hook.event_name == "SubagentStop":
        event_id = publish_subagent(hook, env, settings, log, path)
        _publish_outcomes(hook, env, settings, log, path)
        return event_id
    with open_session(state_dir, hook.session_id) as state:
        turn = state.pop("turn", None)
        read_up_to = state.get("offset")
    if not isinstance(turn, dict):
        if hook.stop_hook_active:  # a continuation of a turn already recorded
            log.write("Stop: continuation of a recorded turn; no selection published")
            _publish_outcomes(hook, env, settings, log, path)
            return None
        turn = {"prompt_id": hook.prompt_id, "at": None, "offset": read_up_to}
    event_id = publish_turn(hook, turn, env, settings, log, path, interrupted=False)
    _publish_outcomes(hook, env, settings, log, path)
    return event_id


def _publish_outcomes(
    hook: HookInput, env: Mapping[str, str], settings: Any, log: HookLog, path: Path | None
) -> int | None:
    """Stop / SubagentStop: queue the measured outcomes of the turn (the transcript's new
    lines, and its sub-agent files), for the provider this session runs on."""
    if hook.transcript_path is None:
        log.write(f"{hook.event_name}: no transcript_path; no outcomes published")
        return None
    from provider_events.integrations._sink import zero_config_sink
    from provider_events.integrations._turns import session_selection
    from provider_events.usage._transcripts import TranscriptImportError, publish_turn_outcomes

    provider = session_selection(env, log, path)[0].provider_name
    settings = zero_config_sink(settings)
    try:
        count = publish_turn_outcomes(
            hook.transcript_path, hook.session_id, provider, settings.state_dir, settings=settings
        )
    except (TranscriptImportError, OSError) as exc:
        log.write(f"{hook.event_name}: outcomes not published: {exc}")
        return None
    if env.get("PROVIDER_EVENTS_HOOK_DEBUG"):
        log.write(f"{hook.event_name}: queued {count} outcome(s) provider={provider}")
    return count


# -- install / uninstall -----------------------------------------------------------------------
def is_our_command(command: Any) -> bool:
    return isinstance(command, str) and _OURS.search(command) is not None


def hook_code(package_parent: str) -> str:
    """The ``-c`` code of the registered command: put this copy of the package first on
    ``sys.path`` (``-S`` leaves site-packages and ``.pth`` files out), then :data:`HOOK_CODE`."""
    # A JSON string is a Python string literal too, in double quotes: the shell's single
    # quotes around the code then need no escaping.
    return f"import sys; sys.path.insert(0, {json.dumps(package_parent)}); {HOOK_CODE}"


def default_hook_command() -> str:
    """The command to register: this interpreter, isolated and without ``site``
    (``-I -S``), running :func:`hook_code` for this copy of the package.

    ``-S`` skips the site-packages scan and every ``.pth`` file (8 ms of a 17 ms start-up in
    a venv here); the lean hook needs only the standard library and this package, and when it
    hands a call to the full hook it runs ``site.main()`` first. ``-I`` keeps the project
    Claude Code runs in out of ``sys.path`` (``python -c`` would import a ``json.py`` or
    ``sqlite3.py`` lying in the working directory) and ignores ``PYTHON*`` variables."""
    import shlex
    import sys

    package = Path(__file__).resolve().parents[1]  # .../provider_events
    # sys.executable as Python reports it, never resolved: in a venv (pipx, uv tool, the
    # project's .venv) it is the venv's own bin/python, which a resolved path would leave.
    executable = os.path.abspath(sys.executable)
    return shlex.join([executable, "-I", "-S", "-c", hook_code(str(package.parent))])


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
            if event not in outcome:  # the layout Claude Code's hooks reference documents
                groups.append({"matcher": "", "hooks": [dict(entry)]})
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
