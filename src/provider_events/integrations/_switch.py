"""Switching Claude Code between providers by editing the ``env`` block of its settings.json.

A switch sets ``ANTHROPIC_BASE_URL``, ``ANTHROPIC_AUTH_TOKEN`` and the three tier models (or, for
``claude``, removes them) and changes nothing else: every other setting keeps its value and its
place, and the file keeps its indentation, key separator, final newline and line endings.

The write is atomic and safe against our own concurrent writers: under an ``flock`` on the
directory the file is re-read and must still hold what the switch was computed from; the previous
bytes go to ``settings.json.bak`` (mode 0600: it may hold the previous token), the new ones to a
temporary file in the same directory that is fsync'd and ``os.replace``'d over the original
(a symlinked settings.json is followed, so dotfile links survive). A file that holds a token is
written 0600. A malformed file (or duplicate keys, or NaN) is reported and never rewritten.

The API key is read from the environment at switch time and is never part of any message.
Import-light: the Claude Code hook reads settings through :func:`read_settings` on every prompt.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from provider_events.errors import ExitCode, SettingsFileError, SettingsWriteError, SwitchError
from provider_events.integrations._providers import (
    ENV_BASE_URL,
    ENV_KEYS,
    ENV_MODEL_KEYS,
    ENV_TOKEN,
    RESERVED,
    Match,
    Provider,
    identify,
)
from provider_events.settings import process_environ

__all__ = [
    "ClaudeSettings",
    "SettingsFileError",
    "Status",
    "SwitchError",
    "SwitchOutcome",
    "add_provider",
    "apply_provider",
    "claude_settings_path",
    "dump_settings",
    "publish_switch_event",
    "read_settings",
    "selection_reason",
    "status",
    "switch",
    "write_settings",
]

#: Kept for importers of the old names; the codes live in :class:`provider_events.errors.ExitCode`.
EXIT_BAD_INPUT = ExitCode.BAD_INPUT
EXIT_FAILED = ExitCode.FAILED
#: The old private name of :class:`~provider_events.errors.SettingsWriteError`.
_WriteError = SettingsWriteError


class _Changed(Exception):
    """The file changed between read and write; the caller recomputes."""


def claude_settings_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$CLAUDE_CONFIG_DIR/settings.json``, else ``~/.claude/settings.json``."""
    env = process_environ(environ)
    folder = env.get("CLAUDE_CONFIG_DIR", "").strip()
    if folder:
        return Path(folder).expanduser() / "settings.json"
    home = env.get("HOME", "").strip()
    return (Path(home) if home else Path.home()) / ".claude" / "settings.json"


# -- reading and writing settings.json, faithfully ------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Style:
    indent: int | str | None = 2
    key_sep: str = ": "
    item_sep: str = ","
    final_newline: bool = True
    crlf: bool = False
    ensure_ascii: bool = False
    bom: bool = False


@dataclass(frozen=True, slots=True)
class ClaudeSettings:
    """One read of settings.json: the exact bytes (``None``: no file), the parsed object, style."""

    path: Path
    raw: bytes | None
    doc: dict[str, Any]
    style: _Style

    @property
    def env(self) -> dict[str, Any]:
        env = self.doc.get("env")
        return env if isinstance(env, dict) else {}


class _DuplicateKey(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _detect_style(text: str) -> _Style:
    body = text.strip()
    indent: int | str | None = 2
    if body and "\n" not in body:
        indent = None
    else:
        m = re.search(r"\n([ \t]+)\S", body)
        if m:
            ws = m.group(1)
            indent = len(ws) if set(ws) == {" "} else ws
    key_sep = ": " if (not body or re.search(r'"\s*:\s', body)) else ":"
    item_sep = "," if indent is not None else (", " if re.search(r",\s", body) else ",")
    non_ascii = any(ord(c) > 127 for c in body)
    return _Style(
        indent=indent,
        key_sep=key_sep,
        item_sep=item_sep,
        final_newline=text.endswith("\n") or not body,
        crlf="\r\n" in text,
        ensure_ascii=bool(re.search(r"\\u[0-9a-fA-F]{4}", body)) and not non_ascii,
    )


def _parse(path: Path, raw: bytes) -> tuple[dict[str, Any], _Style]:
    bom = raw.startswith(b"\xef\xbb\xbf")
    try:
        text = raw[3:].decode("utf-8") if bom else raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsFileError(
            f"{path} is not valid UTF-8 (byte {exc.start}); fix it and run again, "
            "it was not changed"
        ) from None
    style = _detect_style(text)
    if bom:
        style = replace(style, bom=True)
    if not text.strip():
        return {}, style
    try:
        doc = json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SettingsFileError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "fix it and run again, it was not changed"
        ) from None
    except ValueError as exc:
        raise SettingsFileError(f"{path} is not valid: {exc}; it was not changed") from None
    if not isinstance(doc, dict):
        raise SettingsFileError(
            f"{path} must hold a JSON object, not {type(doc).__name__}; it was not changed"
        )
    env = doc.get("env")
    if env is not None and not isinstance(env, dict):
        raise SettingsFileError(f'{path}: "env" must be an object; the file was not changed')
    return doc, style


#: The largest settings.json read (a FIFO or device is refused, never opened).
MAX_SETTINGS_BYTES = 16 * 1024 * 1024


def read_settings(path: Path | None = None) -> ClaudeSettings:
    """Read and parse settings.json; a missing file reads as ``{}`` (raises
    :class:`SettingsFileError` when it is unreadable or malformed)."""
    from provider_events._files import read_bounded
    from provider_events.errors import UnsafePathError

    path = path or claude_settings_path()
    try:
        raw = read_bounded(path, MAX_SETTINGS_BYTES)
    except FileNotFoundError:
        return ClaudeSettings(path, None, {}, _Style())
    except UnsafePathError as exc:
        if path.is_dir():
            raise SettingsFileError(f"{path} is a directory, not a settings file") from None
        raise SettingsFileError(f"{exc}; the file was not changed") from None
    except OSError as exc:
        raise SettingsFileError(f"cannot read {path}: {exc.strerror}") from None
    doc, style = _parse(path, raw)
    return ClaudeSettings(path, raw, doc, style)


def dump_settings(doc: Mapping[str, Any], style: _Style) -> bytes:
    """Serialise ``doc`` in ``style`` (key order as in the mapping)."""
    text = json.dumps(
        doc,
        indent=style.indent,
        separators=(style.item_sep, style.key_sep),
        ensure_ascii=style.ensure_ascii,
    )
    if style.final_newline:
        text += "\n"
    if style.crlf:
        text = text.replace("\n", "\r\n")
    data = text.encode("utf-8")
    return b"\xef\xbb\xbf" + data if style.bom else data


@contextmanager
def _dir_lock(folder: Path) -> Iterator[None]:
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(target: Path, data: bytes, mode: int) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def write_settings(settings: ClaudeSettings, new: bytes, *, secret: bool = False) -> Path | None:
    """Atomically replace the file ``settings`` was read from with ``new``; return the backup.

    Raises ``_Changed`` when the file no longer holds ``settings.raw`` (re-read and retry).
    With ``secret`` the file is made 0600. The backup is always 0600.
    """
    target = settings.path.resolve() if settings.path.is_symlink() else settings.path
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _dir_lock(target.parent):
            try:
                current: bytes | None = target.read_bytes()
                mode = os.stat(target).st_mode & 0o7777
            except FileNotFoundError:
                current, mode = None, 0o600
            if current != settings.raw:
                raise _Changed
            backup = None
            if current is not None:
                backup = backup_path(target)
                _write_atomic(backup, current, 0o600)
            _write_atomic(target, new, mode & ~0o077 if secret else mode)
            return backup
    except _Changed:
        raise
    except OSError as exc:
        raise _WriteError(f"cannot write {target}: {exc.strerror}; it was not changed") from None


# -- switching ---------------------------------------------------------------------------------
def apply_provider(
    doc: Mapping[str, Any], provider: Provider, token: str | None, base_url: str | None
) -> dict[str, Any]:
    """A copy of ``doc`` with the provider's keys in ``env`` (or, native, without them).

    Keys already there keep their place; new ones are appended in :data:`ENV_KEYS` order;
    ``env`` is added at the end when missing, and dropped when removing our keys empties it.
    """
    new = dict(doc)
    had_env = isinstance(doc.get("env"), dict)
    env: dict[str, Any] = dict(doc["env"]) if had_env else {}
    if provider.native:
        removed = [key for key in ENV_KEYS if key in env]
        for key in removed:
            del env[key]
        if had_env:
            if removed and not env:
                del new["env"]
            else:
                new["env"] = env
        return new
    values = {ENV_BASE_URL: base_url, ENV_TOKEN: token}
    values.update({key: provider.models[tier] for tier, key in ENV_MODEL_KEYS.items()})
    for key in ENV_KEYS:
        env[key] = values[key]
    new["env"] = env
    return new


def _read_key(provider: Provider, environ: Mapping[str, str]) -> str:
    var = provider.api_key_env
    assert var is not None
    raw = environ.get(var)
    if raw is None or not raw.strip():
        raise SwitchError(
            f"{var} is not set: export your {provider.display_name} API key as {var} "
            f"and run again; nothing was changed"
        )
    token = raw.strip()
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in token):
        raise SwitchError(
            f"{var} contains whitespace or control characters, so it cannot be an API key; "
            "nothing was changed"
        )
    return token


@dataclass(frozen=True, slots=True)
class SwitchOutcome:
    provider: Provider
    path: Path
    base_url: str | None
    #: False when the file already said exactly this (nothing was written).
    changed: bool
    backup: Path | None
    #: Names (never values) of the env keys set and removed.
    set_keys: tuple[str, ...]
    removed_keys: tuple[str, ...]
    #: settings.json also sets ANTHROPIC_MODEL, which overrides the tier models.
    model_override: str | None


def resolve_provider(name: str, providers: Mapping[str, Provider]) -> Provider:
    if name in RESERVED or name not in providers:
        known = ", ".join(providers)
        raise SwitchError(f"unknown provider {name!r}; choose one of: {known}")
    return providers[name]


def switch(
    provider: Provider,
    *,
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    attempts: int = 5,
) -> SwitchOutcome:
    """Point Claude Code at ``provider``; raises :class:`SwitchError` with nothing written."""
    env = process_environ(environ)
    path = path or claude_settings_path(env)
    token = None if provider.native else _read_key(provider, env)
    base_url = provider.resolved_base_url(env)
    for _ in range(attempts):
        settings = read_settings(path)
        new_doc = apply_provider(settings.doc, provider, token, base_url)
        before, after = settings.env, new_doc.get("env") or {}
        set_keys = tuple(k for k in ENV_KEYS if k in after)
        removed = tuple(k for k in ENV_KEYS if k in before and k not in after)
        override = after.get("ANTHROPIC_MODEL") if isinstance(after, dict) else None
        if new_doc == settings.doc:  # already so (apply_provider never reorders keys)
            return SwitchOutcome(provider, path, base_url, False, None, set_keys, (), override)
        data = dump_settings(new_doc, settings.style)
        try:
            backup = write_settings(settings, data, secret=not provider.native)
        except _Changed:
            continue
        return SwitchOutcome(provider, path, base_url, True, backup, set_keys, removed, override)
    raise _WriteError(f"{path} kept changing while switching; nothing was changed, try again")


def selection_reason(provider: Provider) -> str:
    """The reason recorded for a switch, as in the guide: "User requested switch to X"."""
    return f"User requested switch to {provider.display_name}"


# -- status ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Status:
    path: Path
    exists: bool
    match: Match
    token_set: bool
    model_override: str | None


def status(
    providers: Mapping[str, Provider],
    *,
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Status:
    """Which provider settings.json points Claude Code at (raises :class:`SettingsFileError`)."""
    env = process_environ(environ)
    settings = read_settings(path or claude_settings_path(env))
    values = {k: v for k, v in settings.env.items() if isinstance(v, str)}
    return Status(
        path=settings.path,
        exists=settings.raw is not None,
        match=identify(values, providers, env),
        token_set=bool(values.get(ENV_TOKEN, "").strip()),
        model_override=values.get("ANTHROPIC_MODEL") or None,
    )


# -- the event ---------------------------------------------------------------------------------
def publish_switch_event(provider: Provider) -> tuple[str | None, str | None]:
    """Queue the selection event for a switch (background mode): ``(event_id, problem)``.

    Never raises: a publish problem must not fail a switch that already happened.
    """
    try:
        from provider_events.integrations._sink import zero_config_sink
        from provider_events.publish._publisher import Publisher
        from provider_events.settings import load_settings

        publisher = Publisher(zero_config_sink(load_settings()))
        try:
            result = publisher.publish_sync(
                delivery="background",
                provider_name=provider.name,
                model_name=provider.sonnet_model,
                correlation_id=None,
                selection_reason=selection_reason(provider),
                selection_criteria=dict(provider.criteria),
            )
        finally:
            publisher.close()
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if not result.accepted:
        return None, f"{result.status.value}: {result.error}"
    return result.event_id, None


# -- adding a provider definition ------------------------------------------------------------------
def _toml_string(text: str) -> str:
    # A JSON string without \u escapes of surrogates is a valid TOML basic string.
    return json.dumps(text, ensure_ascii=False)


def _toml_table(name: str, spec: Mapping[str, Any]) -> str:
    lines = [f"[{_toml_string(name)}]"]
    for key, value in spec.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k} = {_toml_string(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        else:
            lines.append(f"{key} = {_toml_string(value)}")
    return "\n".join(lines) + "\n"


def add_provider(
    name: str, spec: Mapping[str, Any], *, environ: Mapping[str, str] | None = None
) -> tuple[Path, Provider]:
    """Add a provider definition to the user's providers file (created when missing).

    ``spec`` holds the file's fields (``base_url``, ``models``, ``api_key_env`` ...). The name
    must be new (built-in or already in the file: edit the file instead). The file is appended
    to (TOML, comments kept) or re-serialised (JSON), atomically, under the same lock as a
    switch; raises :class:`SwitchError` (bad input, nothing written) or a write error.
    """
    from provider_events.errors import ConfigError
    from provider_events.integrations._providers import (
        check_definition,
        check_name,
        default_providers_file,
        load_providers,
        providers_file,
    )

    env = process_environ(environ)
    path = providers_file(env) or default_providers_file(env)
    try:
        check_name(name, path)
        provider = check_definition(name, spec)
        existing = load_providers(env) if path.exists() else {}
    except ConfigError as exc:
        raise SwitchError(f"{exc}; nothing was written") from None
    if name in existing or name in _builtin_names():
        raise SwitchError(
            f"provider {name!r} already exists; edit {path} to change it (nothing was written)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _dir_lock(path.parent):
            try:
                raw: bytes | None = path.read_bytes()
                mode = os.stat(path).st_mode & 0o7777
            except FileNotFoundError:
                raw, mode = None, 0o644
            data = _with_definition(path, raw, name, dict(spec))
            _write_atomic(path.resolve() if path.is_symlink() else path, data, mode)
    except OSError as exc:
        raise _WriteError(f"cannot write {path}: {exc.strerror}; it was not changed") from None
    return path, provider


def _builtin_names() -> frozenset[str]:
    from provider_events.integrations._providers import BUILTIN_PROVIDERS

    return frozenset(BUILTIN_PROVIDERS)


def _with_definition(path: Path, raw: bytes | None, name: str, spec: dict[str, Any]) -> bytes:
    """The file's new bytes with ``name`` defined; checked to read back as ``spec``."""
    text = (raw or b"").decode("utf-8", "replace")
    if path.suffix.lower() == ".json":
        doc = json.loads(text) if text.strip() else {}
        holder = doc["providers"] if isinstance(doc.get("providers"), dict) else doc
        holder[name] = spec
        new = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        check = json.loads(new)
        check = check["providers"] if isinstance(check.get("providers"), dict) else check
    else:
        import tomllib

        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        new = text + sep + _toml_table(name, spec)
        check = tomllib.loads(new)
        check = check["providers"] if isinstance(check.get("providers"), dict) else check
    if check.get(name) != spec:
        raise SwitchError(
            f"{path}: the definition would not read back as given; nothing was written"
        )
    return new.encode("utf-8")
