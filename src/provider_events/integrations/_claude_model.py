"""Which model a Claude Code turn ran on, when the transcript cannot say.

The transcript is the truth (see :mod:`provider_events.integrations._transcript`); this module
is the fallback for a turn that made no API request or whose transcript cannot be read. In
order, the first that names a model decides (:func:`fallback_model` returns it and its source):

1. ``session``: the ``model`` SessionStart reported for the session (Claude Code adds display
   suffixes such as ``[1m]``; they are stripped);
2. ``ANTHROPIC_MODEL``: the hook's environment (Claude Code applies settings.json's ``env``
   to it), else the ``env`` block of the user's settings.json;
3. ``settings``: ``model`` in the project's ``.claude/settings.local.json``, then
   ``.claude/settings.json`` (under ``$CLAUDE_PROJECT_DIR``, else the hook JSON's ``cwd``),
   then the user's settings.json (``$CLAUDE_CONFIG_DIR/settings.json`` or
   ``~/.claude/settings.json``);
4. ``default``: the provider's sonnet-tier model.

The aliases ``haiku``, ``sonnet``, ``opus`` (and ``opusplan``, ``default``) resolve through
``ANTHROPIC_DEFAULT_{HAIKU,SONNET,OPUS}_MODEL``, then the provider's tier models. Import-light.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

__all__ = ["PROJECT_SETTINGS", "fallback_model", "resolve_alias", "strip_display_suffix"]

#: Project settings files, most specific first, relative to the project directory.
PROJECT_SETTINGS = (".claude/settings.local.json", ".claude/settings.json")
_SUFFIX = re.compile(r"\s*\[[^\[\]]{0,32}\]$")
_ALIASES = {
    "haiku": "haiku",
    "sonnet": "sonnet",
    "opus": "opus",
    "opusplan": "sonnet",  # opus while planning, sonnet otherwise
    "default": "sonnet",
}


def strip_display_suffix(model: str) -> str:
    """``claude-opus-4-8[1m]`` -> ``claude-opus-4-8`` (Claude Code's display suffixes)."""
    return _SUFFIX.sub("", model.strip()).strip()


def resolve_alias(model: str, tiers: Mapping[str, str | None]) -> str:
    """A tier alias (``opus``, ``sonnet[1m]`` ...) as the model it stands for; others as given."""
    bare = strip_display_suffix(model)
    tier = _ALIASES.get(bare.lower())
    if tier is None:
        return bare
    return tiers.get(tier) or bare


def _settings_model(path: Path) -> str | None:
    from provider_events.integrations._switch import SwitchError, read_settings

    try:
        value = read_settings(path).doc.get("model")
    except SwitchError:
        return None
    if isinstance(value, str) and value.strip() and len(value) <= 200:
        return value.strip()
    return None


def settings_model(project_dir: str | None, user_settings: Path | None) -> tuple[str, str] | None:
    """``(model, which file)`` from the first settings file naming a model, else ``None``."""
    if project_dir:
        base = Path(project_dir)
        for name in PROJECT_SETTINGS:
            model = _settings_model(base / name)
            if model:
                return model, f"project {Path(name).name}"
    if user_settings is not None:
        model = _settings_model(user_settings)
        if model:
            return model, "user settings.json"
    return None


def fallback_model(
    *,
    session_model: str | None,
    anthropic_model: str | None,
    project_dir: str | None,
    user_settings: Path | None,
    tiers: Mapping[str, str | None],
) -> tuple[str, str]:
    """``(model, source)``: the best prompt-time knowledge of the model (see the module doc)."""
    if session_model and strip_display_suffix(session_model):
        return resolve_alias(session_model, tiers), "session"
    if anthropic_model and anthropic_model.strip():
        return resolve_alias(anthropic_model, tiers), "ANTHROPIC_MODEL"
    found = settings_model(project_dir, user_settings)
    if found is not None:
        return resolve_alias(found[0], tiers), f"settings ({found[1]})"
    return tiers.get("sonnet") or "unknown", "default"
