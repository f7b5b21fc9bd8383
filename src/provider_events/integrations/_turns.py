"""Publishing one Claude Code turn: the model from the transcript, or the best fallback.

Called by the hook (:mod:`provider_events.integrations._hook`) at ``Stop`` (the main
conversation's turn, from the transcript lines written since the prompt), ``SubagentStop`` (a
sub-agent's turn, from its own transcript) and ``UserPromptSubmit`` (a previous turn that never
reached ``Stop``). See the hook's module documentation for what the event holds.
Import-light: the hook runs it on every turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provider_events.integrations._hook import HookInput, HookLog, detect_selection

__all__ = ["now", "publish_subagent", "publish_turn", "session_selection"]


def now() -> str:
    """The current UTC time, RFC 3339 with microseconds."""
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _when(text: Any) -> Any:
    """An RFC 3339 text as an aware datetime; ``None`` when absent or unreadable."""
    if not isinstance(text, str):
        return None
    from datetime import datetime

    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def _read(path: str | None, offset: Any, log: HookLog, what: str, max_seconds: float = 1.0) -> Any:
    """The transcript's assistant records after ``offset`` (``None``: unreadable, logged)."""
    from provider_events.integrations._transcript import read_assistant_records

    if not path:
        return None
    start = offset if isinstance(offset, int) and offset >= 0 else 0
    try:
        read = read_assistant_records(path, start, max_seconds=max_seconds)
    except OSError as exc:
        log.write(f"{what}: transcript not read ({type(exc).__name__}: {exc.strerror})")
        return None
    if read.truncated:
        log.write(f"{what}: transcript read stopped at its bound (offset {read.offset})")
    return read


def publish_turn(
    hook: HookInput,
    turn: Mapping[str, Any],
    env: Mapping[str, str],
    settings: Any,
    log: HookLog,
    path: Path | None,
    *,
    interrupted: bool,
) -> str | None:
    """Publish one main-conversation turn that began at ``turn`` (see the module doc)."""
    offset = turn.get("offset")
    if not isinstance(offset, int):
        # No prompt was seen (the hook was installed mid-session): the last 4 MiB hold the
        # turn's lines; older lines would name older turns' models.
        size = _size(hook.transcript_path)
        offset = max(0, size - (4 << 20)) if size is not None else 0
    if not interrupted:
        _wait_for_transcript(hook, Path(settings.state_dir))
    read = _read(hook.transcript_path, offset, log, hook.event_name)
    records = [r for r in read.records if not r.sidechain] if read is not None else []
    if _unfinished(records) and read is not None and not interrupted:
        read, records = _wait_for_turn(hook.transcript_path, offset, log, hook.event_name, read)
    if read is not None and hook.session_id is not None:
        from provider_events.integrations._claude_state import open_session

        with open_session(Path(settings.state_dir), hook.session_id) as state:
            state["offset"] = read.offset
    prompt_id = turn.get("prompt_id") if isinstance(turn.get("prompt_id"), str) else None
    details: dict[str, Any] = {"turn": "interrupted" if interrupted else "main"}
    if prompt_id:
        details["prompt_id"] = prompt_id
    label = "Claude Code turn" + (" (interrupted)" if interrupted else "")
    return _publish_selection(
        hook, records, details, label, turn.get("at"), env, settings, log, path
    )


def publish_subagent(
    hook: HookInput, env: Mapping[str, str], settings: Any, log: HookLog, path: Path | None
) -> str | None:
    """Publish a sub-agent's turn from its own transcript (or, in versions without one, the
    sidechain lines of the main transcript)."""
    from provider_events.integrations._claude_state import open_session

    assert hook.session_id is not None
    key = hook.agent_id or hook.agent_transcript_path or "sidechain"
    with open_session(Path(settings.state_dir), hook.session_id) as state:
        agents = _dict(state.get("agents"))
        offset = agents.get(key)
        turn = _dict(state.get("turn"))
    # Claude Code can fire SubagentStop before the sub-agent's own file exists or holds its
    # answer (seen on a loaded machine): wait for it a little (bounded), then, in versions
    # that have no such file, the sidechain lines of the main transcript name its model.
    agent_file = _wait_for_records(hook.agent_transcript_path, offset, AGENT_FILE_WAIT)
    if agent_file:
        read = _read(hook.agent_transcript_path, offset, log, hook.event_name)
        records = list(read.records) if read is not None else []
    else:
        if key != "sidechain":  # the offset kept for the agent's own file is not this file's
            key = "sidechain"
            with open_session(Path(settings.state_dir), hook.session_id) as state:
                offset = _dict(state.get("agents")).get(key)
        start = offset if isinstance(offset, int) else turn.get("offset")
        read = _read(hook.transcript_path, start, log, hook.event_name)
        records = [r for r in read.records if r.sidechain] if read is not None else []
    if read is not None:
        with open_session(Path(settings.state_dir), hook.session_id) as state:
            agents = _dict(state.get("agents"))
            agents[key] = read.offset
            state["agents"] = agents
    details: dict[str, Any] = {"turn": "subagent"}
    if hook.agent_type:
        details["agent_type"] = hook.agent_type
    if hook.agent_id:
        details["agent_id"] = hook.agent_id
    prompt_id = hook.prompt_id or turn.get("prompt_id")
    if isinstance(prompt_id, str):
        details["prompt_id"] = prompt_id
    label = "Claude Code sub-agent turn" + (f" ({hook.agent_type})" if hook.agent_type else "")
    at = read.first_timestamp if read is not None else None
    return _publish_selection(hook, records, details, label, at, env, settings, log, path)


#: Longest wait (seconds) at SubagentStop for the sub-agent's transcript to hold its answer.
AGENT_FILE_WAIT = 1.5
#: Longest wait (seconds) at Stop for the turn's last response line: Claude Code can fire Stop
#: before its last transcript line is written (seen on a loaded machine): a turn of one request
#: would then name a fallback model, and a turn of several would count one request too few.
STOP_WAIT = 0.5


#: Longest wait (seconds) at Stop for the transcript file itself: under load Claude Code can
#: fire Stop before it has created the session's transcript (seen in CI with the real CLI).
TRANSCRIPT_WAIT = 1.5


def _wait_for_file(path: str, limit: float) -> bool:
    """Poll (up to ``limit`` seconds) until ``path`` exists; whether it does."""
    import os
    import time

    deadline = time.monotonic() + limit
    while not os.path.lexists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _wait_for_transcript(hook: HookInput, state_dir: Path) -> None:
    """At Stop, a transcript that does not exist yet is waited for (:data:`TRANSCRIPT_WAIT`),
    once per session: a session whose transcript never appeared (Claude Code writes none with
    ``cleanupPeriodDays: 0``) is not made to wait again. The caller reads it and words what
    it finds."""
    import os

    path = hook.transcript_path
    if not path or hook.session_id is None or os.path.lexists(path):
        return
    from provider_events.integrations._claude_state import open_session

    with open_session(state_dir, hook.session_id) as state:
        waited = state.get("no_transcript") is True
    if not waited and not _wait_for_file(path, TRANSCRIPT_WAIT):
        with open_session(state_dir, hook.session_id) as state:
            state["no_transcript"] = True


def _unfinished(records: list[Any]) -> bool:
    """At Stop: the transcript holds no response of the turn yet, or its last response asked
    for a tool (``stop_reason`` ``tool_use``), so the turn's final answer is still to be
    written. (A ``null`` stop reason, as streamed lines have, is not waited for.)"""
    return not records or records[-1].stop_reason == "tool_use"


def _wait_for_turn(path: str | None, offset: Any, log: HookLog, what: str, read: Any) -> Any:
    """``(read, main records)``: the transcript read again until its main-conversation
    responses after ``offset`` look finished (:func:`_unfinished`), for at most
    :data:`STOP_WAIT` seconds."""
    import time

    deadline = time.monotonic() + STOP_WAIT
    records: list[Any] = [r for r in read.records if not r.sidechain]
    while _unfinished(records) and time.monotonic() < deadline:
        time.sleep(0.02)
        again = _read(path, offset, log, what)
        if again is None:
            break
        read = again
        records = [r for r in read.records if not r.sidechain]
    return read, records


def _wait_for_records(path: str | None, offset: Any, limit: float) -> bool:
    """Whether ``path`` exists and holds an assistant record after ``offset``, polling up to
    ``limit`` seconds; False at once when no path was given."""
    if not path:
        return False
    import time

    from provider_events.integrations._transcript import read_assistant_records

    start = offset if isinstance(offset, int) and offset >= 0 else 0
    deadline = time.monotonic() + limit
    while True:
        if Path(path).is_file():
            try:
                if read_assistant_records(path, start, max_seconds=0.2).records:
                    return True
            except OSError:
                pass
        if time.monotonic() >= deadline:
            return Path(path).is_file()
        time.sleep(0.05)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _size(path: str | None) -> int | None:
    from provider_events.integrations._transcript import transcript_size

    return transcript_size(path)


def session_selection(env: Mapping[str, str], log: HookLog, path: Path | None) -> tuple[Any, Path]:
    """What Claude Code's settings and environment select (provider, tiers, criteria), and the
    user settings file they were read from."""
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
    user_settings = path or claude_settings_path(env)
    try:
        settings_env = read_settings(user_settings).env
    except SwitchError as exc:
        log.write(f"settings.json not used: {exc}")
        settings_env = {}
    return detect_selection(settings_env, env, providers), user_settings


def _publish_selection(
    hook: HookInput,
    records: list[Any],
    details: dict[str, Any],
    label: str,
    at: Any,
    env: Mapping[str, str],
    settings: Any,
    log: HookLog,
    path: Path | None,
) -> str | None:
    selection, user_settings = session_selection(env, log, path)
    if records:
        models = list(dict.fromkeys(r.model for r in records))
        model, source = records[-1].model, "transcript"
        details["requests"] = len(
            {r.request_id or r.message_id or i for i, r in enumerate(records)}
        )
        if len(models) > 1:
            details["models"] = models
    else:
        from provider_events.integrations._claude_model import fallback_model
        from provider_events.integrations._claude_state import open_session

        assert hook.session_id is not None
        with open_session(Path(settings.state_dir), hook.session_id) as state:
            session_model = state.get("session_model")
        model, source = fallback_model(
            session_model=session_model if isinstance(session_model, str) else None,
            anthropic_model=selection.anthropic_model,
            project_dir=env.get("CLAUDE_PROJECT_DIR") or hook.cwd,
            user_settings=user_settings,
            tiers=selection.tiers or {},
        )
    details["model_source"] = source
    criteria = {**selection.criteria, "claude_code": details}
    reason = f"{label}: model from {_SOURCES.get(source, source)}"
    from provider_events.integrations._sink import zero_config_sink
    from provider_events.publish._publisher import Publisher

    settings = zero_config_sink(settings)
    result = Publisher(settings).publish_sync(
        delivery="background",
        provider_name=selection.provider_name,
        model_name=model,
        correlation_id=hook.session_id,
        selection_reason=reason,
        selection_criteria=criteria,
        selected_at=_when(at),
    )
    if not result.accepted:
        log.write(f"{hook.event_name}: event not queued ({result.status.value}): {result.error}")
        return None
    if env.get("PROVIDER_EVENTS_HOOK_DEBUG"):
        log.write(
            f"{hook.event_name}: queued {result.event_id} provider={selection.provider_name} "
            f"model={model} source={source} session={hook.session_id}"
        )
    return result.event_id


_SOURCES = {
    "transcript": "the transcript",
    "session": "SessionStart",
    "default": "the provider's default (sonnet tier)",
}
