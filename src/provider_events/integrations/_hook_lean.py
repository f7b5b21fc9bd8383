"""The Claude Code hook's lean path: the common calls in the standard library only.

``provider-events hook claude`` runs on every prompt and at every turn's end; the full hook
(:mod:`._hook`, :mod:`._turns`) loads dataclasses, ``re``, ``pathlib``, msgspec, the settings
and the Publisher, tens of milliseconds before its first write. This module does what the full
hook does for ``SessionStart``, ``UserPromptSubmit``, ``Stop`` and ``SubagentStop`` with ``os``,
``time``, the C JSON scanner (:mod:`_json`: ``json`` itself imports ``re``) and the lean enqueue
(:mod:`provider_events.publish._enqueue`), and hands everything else to the full path, which
decides and logs as it always did:

* a call it cannot read plainly (not JSON, not an object, another event,
  ``PROVIDER_EVENTS_HOOK_DEBUG``), settings only ``load_settings`` can parse (``.env``, SASL,
  malformed values), no Kafka configured (the embedded store sink decides), a providers file,
  a settings file that is not plain JSON, a base URL no provider knows, transcript lines that
  are not plain JSON objects, values the lean builder does not certainly accept: the full
  path, from the start when nothing was done yet, else from the step reached (the session
  state is already updated: the turn is then published by :func:`._turns.publish_turn`,
  which is idempotent on that state; a ``SubagentStop`` writes nothing before its event is
  committed, so the full hook then does the whole call);
* the turn's measured outcomes (``Stop``, ``SubagentStop``) are built by a detached process
  (:mod:`._outcomes_job`) running the full path's ``_publish_outcomes``: it reads the
  transcript incrementally from the import state, so a job that never ran is made up by the
  next one; a marker in the session state, cleared by the job, has the next call of that
  session start it again.

The events are the full path's, field for field (``tests/property/test_hook_lean.py``
compares both paths). Never raises: the caller (``cli/_hook_fast.py``) ignores everything.
"""

from __future__ import annotations

import _json
import os
import stat
import sys
import time

from provider_events.publish import _enqueue

try:
    from _sha256 import sha256  # type: ignore[import-not-found, unused-ignore]  # hashlib: OpenSSL
except ImportError:  # pragma: no cover - other builds
    from hashlib import sha256

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["PROVIDERS", "loads", "run"]

LEAN_EVENTS = ("SessionStart", "UserPromptSubmit", "Stop", "SubagentStop")
MAX_STDIN = 32 << 20  # _hook.MAX_STDIN
STDIN_DEADLINE = 1.0
LOG_MAX_BYTES = 256 * 1024
KEEP_DAYS = 7
MAX_STATE_BYTES = 64 * 1024
MAX_AGENTS = 64
_PRUNE_SCAN = 500
MAX_SETTINGS_BYTES = 16 * 1024 * 1024
TAIL_BYTES = 4 << 20  # a turn without a recorded prompt: the transcript's last 4 MiB
MAX_LEAN_READ = 4 << 20  # more new transcript than this: the full reader (bounded in time)
PROBE_TTL = 60.0
#: A pending outcomes job older than this (seconds) is started again by the session's next call.
OUTCOMES_RETRY = 30.0
SYNTHETIC_MODEL = "<synthetic>"

# -- the built-in providers (``_providers.BUILTIN_PROVIDERS``; a test keeps them equal) --------
_GEMINI_PROXY = "http://127.0.0.1:4000"
PROVIDERS: dict[str, dict[str, Any]] = {
    "claude": {
        "base_url": None,
        "base_url_env": None,
        "models": {
            "haiku": "claude-haiku-4-5-20251001",
            "sonnet": "claude-sonnet-4-5-20250929",
            "opus": "claude-opus-4-1-20250805",
        },
        "criteria": {"quality_score": 0.95, "cost_per_token": 0.000003},
    },
    "zai": {
        "base_url": "https://api.z.ai/api/anthropic",
        "base_url_env": None,
        "models": {"haiku": "glm-4.5-air", "sonnet": "glm-4.6", "opus": "glm-4.6"},
        "criteria": {"cost_per_token": 0.0000006, "latency_ms": 400, "quality_score": 0.85},
    },
    "together": {
        "base_url": "https://api.together.xyz",
        "base_url_env": None,
        "models": {
            "haiku": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "sonnet": "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8",
            "opus": "deepseek-ai/DeepSeek-V3.1",
        },
        "criteria": {"cost_per_token": 0.000002, "latency_ms": 300, "quality_score": 0.8},
    },
    "openrouter": {
        "base_url": "https://openrouter.ai/api",
        "base_url_env": None,
        "models": {
            "haiku": "anthropic/claude-haiku-4.5",
            "sonnet": "anthropic/claude-sonnet-4.5",
            "opus": "anthropic/claude-opus-4.1",
        },
        "criteria": {"cost_per_token": 0.000003, "latency_ms": 250, "quality_score": 0.95},
    },
    "gemini-pro": {
        "base_url": _GEMINI_PROXY,
        "base_url_env": "GEMINI_ANTHROPIC_BASE_URL",
        "models": {
            "haiku": "gemini-1.5-flash-002",
            "sonnet": "gemini-1.5-pro-002",
            "opus": "gemini-1.5-pro-002",
        },
        "criteria": {"cost_per_token": 0.00000125, "latency_ms": 200, "quality_score": 0.9},
    },
    "gemini-flash": {
        "base_url": _GEMINI_PROXY,
        "base_url_env": "GEMINI_ANTHROPIC_BASE_URL",
        "models": {
            "haiku": "gemini-1.5-flash-002",
            "sonnet": "gemini-1.5-flash-002",
            "opus": "gemini-1.5-flash-002",
        },
        "criteria": {"cost_per_token": 0.000001, "latency_ms": 50, "quality_score": 0.85},
    },
    "gemini-2.5-flash": {
        "base_url": _GEMINI_PROXY,
        "base_url_env": "GEMINI_ANTHROPIC_BASE_URL",
        "models": {
            "haiku": "gemini-2.5-flash",
            "sonnet": "gemini-2.5-flash",
            "opus": "gemini-2.5-flash",
        },
        "criteria": {"cost_per_token": 0.0000003, "latency_ms": 80, "quality_score": 0.88},
    },
}
TIERS = ("haiku", "sonnet", "opus")
ENV_BASE_URL = "ANTHROPIC_BASE_URL"
ENV_MODEL_KEYS = {
    "haiku": "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "sonnet": "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "opus": "ANTHROPIC_DEFAULT_OPUS_MODEL",
}
_ALIASES = {"haiku": "haiku", "sonnet": "sonnet", "opus": "opus", "opusplan": "sonnet"}
_ALIASES["default"] = "sonnet"
PROJECT_SETTINGS = (".claude/settings.local.json", ".claude/settings.json")
_SOURCES = {
    "transcript": "the transcript",
    "session": "SessionStart",
    "default": "the provider's default (sonnet tier)",
}


class _Unsure(Exception):
    """Only the full path can decide this call (nothing done yet, or the step named)."""


# -- JSON without ``json`` (which imports ``re``): the same C scanner and encoder ---------------
class _Decoding:
    """What ``json.JSONDecoder`` hands the C scanner (``strict=True``, no hooks)."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook: Any = _pairs if strict else None
        self.parse_float = float
        self.parse_int = int
        self.parse_constant: Any = _no_constant if strict else _CONSTANTS.__getitem__
        self.memo: dict[str, str] = {}


_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``_switch._pairs``: settings files refuse duplicate keys."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_scan = _json.make_scanner(_Decoding())  # type: ignore[arg-type]
#: ``_switch._parse``'s reading of settings files: no duplicate keys, no NaN/Infinity.
_scan_strict = _json.make_scanner(_Decoding(strict=True))  # type: ignore[arg-type]
_WS = " \t\n\r"


def loads(text: str, strict: bool = False) -> Any:
    """``json.loads(text)`` for a ``str`` (``ValueError`` where it raises one)."""
    scan = _scan_strict if strict else _scan
    start = len(text) - len(text.lstrip(_WS))
    try:
        try:
            value, end = scan(text, start)
        except SystemError:
            # The scanner words its errors with json.decoder.JSONDecodeError, looked up only
            # in sys.modules: on this (rare) path, load it and scan again for the real error.
            import json.decoder  # noqa: F401

            value, end = scan(text, start)
    except StopIteration:
        raise ValueError("Expecting value") from None
    if text[end:].strip(_WS):
        raise ValueError("Extra data")
    return value


def _default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps_sorted(value: Any) -> str:
    """``json.dumps(value, sort_keys=True)``."""
    encode = _json.make_encoder(
        {}, _default, _json.encode_basestring_ascii, None, ": ", ", ", True, False, True
    )
    return "".join(encode(value, 0))


# -- the log, the watchdog -----------------------------------------------------------------------
class _Log:
    """``_hook.HookLog`` for the fixed messages of this module (they hold no setting)."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, "hook.log")

    def write(self, message: str) -> None:
        line = " ".join(message.split())
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        data = f"{stamp} pid={os.getpid()} {line}\n".encode("utf-8", "replace")
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            try:
                if os.stat(self.path).st_size > LOG_MAX_BYTES:
                    os.replace(self.path, self.path + ".1")
            except FileNotFoundError:
                pass
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError:
            pass


def _timeout(env: Mapping[str, str]) -> float:
    """``settings.hook_timeout``."""
    try:
        value = float(env.get("PROVIDER_EVENTS_HOOK_TIMEOUT", 3.0))
    except ValueError:
        return 3.0
    return value if 0 < value <= 60 else 3.0


def _watchdog(seconds: float, log: _Log) -> None:
    """``_hook._watchdog`` without ``threading`` (a daemon-like ``_thread``)."""
    import _thread

    def expire() -> None:
        time.sleep(seconds)
        log.write(f"gave up after {seconds:g}s (PROVIDER_EVENTS_HOOK_TIMEOUT); exiting 0")
        os._exit(0)

    _thread.start_new_thread(expire, ())


# -- reading the call ----------------------------------------------------------------------------
class _StdinProblem(Exception):
    pass


def read_stdin(fd: int = 0, deadline: float = STDIN_DEADLINE, limit: int = MAX_STDIN) -> bytes:
    """``_hook.read_stdin``."""
    import select

    if os.isatty(fd):
        return b""
    chunks: list[bytes] = []
    size = 0
    end = time.monotonic() + deadline
    while size < limit:
        left = end - time.monotonic()
        if left <= 0:
            raise _StdinProblem(f"stdin was not closed within {deadline:g}s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    else:
        raise _StdinProblem(f"stdin is larger than {limit} bytes")
    return b"".join(chunks)


def _opt_text(doc: Mapping[str, Any], key: str, limit: int = 128) -> str | None:
    value = doc.get(key)
    if isinstance(value, str):
        value = value.strip()
        if value and len(value) <= limit and not any(ord(c) < 32 for c in value):
            return value
    return None


def parse_call(data: bytes) -> dict[str, Any] | None:
    """``_hook.parse_hook_input``'s fields as a dict; ``None`` when it would raise."""
    if not data.strip():
        return None
    try:
        text = data.decode("utf-8")
        if text.startswith("\ufeff"):
            return None
        doc = loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    model = doc.get("model")
    if isinstance(model, dict):
        model = model.get("id")
    return {
        "event_name": _opt_text(doc, "hook_event_name", 64) or "hook",
        "session_id": _opt_text(doc, "session_id"),
        "source": _opt_text(doc, "source", 64),
        "cwd": _opt_text(doc, "cwd", 4096),
        "model": _opt_text({"model": model}, "model", 200),
        "transcript_path": _opt_text(doc, "transcript_path", 4096),
        "prompt_id": _opt_text(doc, "prompt_id"),
        "agent_id": _opt_text(doc, "agent_id"),
        "agent_type": _opt_text(doc, "agent_type"),
        "agent_transcript_path": _opt_text(doc, "agent_transcript_path", 4096),
        "stop_hook_active": doc.get("stop_hook_active") is True,
    }


# -- the session state (``_claude_state``) -------------------------------------------------------
def session_path(state_dir: str, session_id: str) -> str:
    digest = sha256(session_id.encode("utf-8", "replace")).hexdigest()[:32]
    return os.path.join(state_dir, "claude-sessions", f"{digest}.json")


def update_session(state_dir: str, session_id: str, change: Callable[[dict[str, Any]], Any]) -> Any:
    """``_claude_state.open_session`` with ``change(state)`` as the block; returns its result."""
    path = session_path(state_dir, session_id)
    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.read(fd, MAX_STATE_BYTES + 1)
        state: dict[str, Any] = {}
        if raw and len(raw) <= MAX_STATE_BYTES:
            try:
                doc = loads(raw.decode("utf-8", "surrogatepass"))
            except (ValueError, RecursionError):
                doc = None
            if isinstance(doc, dict):
                state = doc
        before = dumps_sorted(state)
        result = change(state)
        agents = state.get("agents")
        if isinstance(agents, dict) and len(agents) > MAX_AGENTS:
            state["agents"] = dict(list(agents.items())[-MAX_AGENTS:])
        after = dumps_sorted(state)
        if after != before:
            data = after.encode()
            # The full path truncates to 0 and writes; the same bytes, without freeing the
            # file's blocks first (a few milliseconds on some file systems).
            os.pwrite(fd, data, 0)
            if len(data) < len(raw) or len(raw) > MAX_STATE_BYTES:  # or it may hold more
                os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
    return result


def prune_sessions(state_dir: str, keep_days: float = KEEP_DAYS) -> int:
    """``_claude_state.prune_sessions``."""
    folder = os.path.join(state_dir, "claude-sessions")
    cutoff = time.time() - keep_days * 86400
    removed = 0
    try:
        entries = os.scandir(folder)
    except OSError:
        return 0
    with entries:
        for i, entry in enumerate(entries):
            if i >= _PRUNE_SCAN:
                break
            try:
                if entry.name.endswith(".json") and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
    return removed


def transcript_size(path: str | None) -> int | None:
    if not path:
        return None
    try:
        return os.stat(path).st_size
    except (OSError, ValueError):
        return None


def now_text() -> str:
    """``_turns.now()``: UTC, RFC 3339 with microseconds."""
    return _enqueue._timestamps(time.time_ns())[1]


# -- the transcript ------------------------------------------------------------------------------
def _short(value: Any, limit: int = 200) -> str | None:
    if isinstance(value, str) and value and len(value) <= limit:
        return value
    return None


def read_records(
    path: str, offset: int
) -> tuple[list[tuple[str, str | None, str | None, bool, str | None]], int, str | None]:
    """``_transcript.read_assistant_records(path, offset)``'s (model, message id, request id,
    sidechain, stop reason), next offset and first timestamp, for a regular file whose new part is plain
    JSON objects. Raises ``OSError`` as the full reader does; :class:`_Unsure` otherwise."""
    import errno

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        size = info.st_size
        if offset < 0 or offset > size:
            offset = 0
        if size - offset > MAX_LEAN_READ:
            raise _Unsure("a long transcript read")
        chunks = []
        left = size - offset
        pos = offset
        while left > 0:
            chunk = os.pread(fd, min(left, 1 << 20), pos)
            if not chunk:
                break
            chunks.append(chunk)
            pos += len(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    last = data.rfind(b"\n")
    records = []
    first: str | None = None
    for line in data[: last + 1].split(b"\n") if last >= 0 else ():
        if not line.strip():
            continue
        if line.startswith(b"\xef\xbb\xbf") or b"\x00" in line[:4]:
            raise _Unsure("a transcript line json.loads would decode otherwise")
        try:
            doc = loads(line.decode("utf-8", "surrogatepass"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _Unsure("a transcript line that is not JSON") from None
        if not isinstance(doc, dict):
            raise _Unsure("a transcript line that is not an object")
        if first is None:
            first = _short(doc.get("timestamp"), 64)
        if doc.get("type") != "assistant":
            continue
        message = doc.get("message")
        if not isinstance(message, dict):
            continue
        model = message.get("model")
        if not isinstance(model, str) or not model.strip() or model == SYNTHETIC_MODEL:
            continue
        model = model.strip()
        if len(model) > 200 or any(ord(c) < 32 for c in model):
            continue
        records.append(
            (
                model,
                _short(message.get("id")),
                _short(doc.get("requestId")),
                doc.get("isSidechain") is True,
                _short(message.get("stop_reason"), 64),
            )
        )
    return records, offset + last + 1, first


# -- settings files, providers, the model --------------------------------------------------------
def read_settings_doc(path: str) -> dict[str, Any]:
    """``_switch.read_settings(path).doc`` when that reads it plainly (a missing file is
    ``{}``); :class:`_Unsure` where it would raise or decide otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise _Unsure("an unreadable settings file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SETTINGS_BYTES:
            raise _Unsure("not a settings file")
        raw = os.read(fd, MAX_SETTINGS_BYTES + 1)
        while len(raw) <= MAX_SETTINGS_BYTES:
            more = os.read(fd, MAX_SETTINGS_BYTES + 1 - len(raw))
            if not more:
                break
            raw += more
    finally:
        os.close(fd)
    if len(raw) > MAX_SETTINGS_BYTES or raw.startswith(b"\xef\xbb\xbf"):
        raise _Unsure("a large settings file, or one with a BOM")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Unsure("a settings file that is not UTF-8") from None
    if not text.strip():
        return {}
    try:
        doc = loads(text, strict=True)
    except (ValueError, RecursionError):
        raise _Unsure("a settings file that is not plain JSON") from None
    if not isinstance(doc, dict) or ("env" in doc and not isinstance(doc["env"], dict)):
        raise _Unsure("a settings file of another shape")
    return doc


def user_settings_path(env: Mapping[str, str]) -> str:
    """``_switch.claude_settings_path``."""
    folder = env.get("CLAUDE_CONFIG_DIR", "").strip()
    if folder:
        return os.path.join(os.path.expanduser(folder), "settings.json")
    home = env.get("HOME", "").strip()
    if not home:
        raise _Unsure("no HOME")
    return os.path.join(home, ".claude", "settings.json")


def _no_providers_file(env: Mapping[str, str]) -> None:
    """``_providers.providers_file`` is ``None``, or :class:`_Unsure`."""
    if env.get("PROVIDER_EVENTS_PROVIDERS_FILE", "").strip():
        raise _Unsure("a providers file")
    base = env.get("XDG_CONFIG_HOME", "").strip() or os.path.join(env.get("HOME", "~"), ".config")
    folder = os.path.join(os.path.expanduser(base), "provider-events")
    for name in ("providers.toml", "providers.json"):
        if os.path.isfile(os.path.join(folder, name)):
            raise _Unsure("a providers file")


def _norm(url: str | None) -> str | None:
    return url.strip().rstrip("/").lower() if url and url.strip() else None


def _base_url(p: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """``Provider.resolved_base_url``."""
    if p["base_url"] is None:
        return None
    var = p["base_url_env"]
    if var and env.get(var, "").strip():
        return env[var].strip()
    return str(p["base_url"])


def identify(merged: Mapping[str, str], env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """``_providers.identify(merged, BUILTIN_PROVIDERS, env)``: (match name, the provider or
    the closest); :class:`_Unsure` when no provider comes close (a ``custom:`` name)."""
    base_url = _norm(merged.get(ENV_BASE_URL))
    models = {tier: (merged.get(key) or None) for tier, key in ENV_MODEL_KEYS.items()}
    if base_url is None:
        native = PROVIDERS["claude"]
        return "claude", native
    same_url = [
        (name, p)
        for name, p in PROVIDERS.items()
        if p["base_url"] is not None
        and (_norm(_base_url(p, env)) == base_url or _norm(p["base_url"]) == base_url)
    ]
    for name, p in same_url:
        if all(models[t] == p["models"][t] for t in TIERS):
            return name, p
    for name, p in PROVIDERS.items():
        if p["base_url_env"] and all(models[t] == p["models"][t] for t in TIERS):
            return name, p
    closest = next(((n, p) for n, p in same_url if models["sonnet"] == p["models"]["sonnet"]), None)
    if closest is None:
        closest = next(iter(same_url), None)
    if closest is None:
        raise _Unsure("a base URL no provider knows")
    return closest


def strip_display_suffix(model: str) -> str:
    """``_claude_model.strip_display_suffix`` (``\\s*\\[[^\\[\\]]{0,32}\\]$``) without ``re``."""
    text = model.strip()
    if text.endswith("]"):
        start = text.rfind("[", 0, len(text) - 1)
        inner = text[start + 1 : -1]
        if start >= 0 and len(inner) <= 32 and "]" not in inner:
            text = text[:start].rstrip()
            # ``\s`` is str.isspace(); rstrip() strips exactly those characters
    return text.strip()


def resolve_alias(model: str, tiers: Mapping[str, str | None]) -> str:
    bare = strip_display_suffix(model)
    tier = _ALIASES.get(bare.lower())
    if tier is None:
        return bare
    return tiers.get(tier) or bare


def selection(
    env: Mapping[str, str],
) -> tuple[str, dict[str, Any], dict[str, str | None], str | None, str]:
    """``_turns.session_selection``: (provider name, criteria, tiers, ``ANTHROPIC_MODEL``,
    the user settings file)."""
    _no_providers_file(env)
    user_settings = user_settings_path(env)
    settings_env = read_settings_doc(user_settings).get("env") or {}
    merged: dict[str, str] = {}
    for key in (ENV_BASE_URL, *ENV_MODEL_KEYS.values(), "ANTHROPIC_MODEL"):
        value = env.get(key) or settings_env.get(key)
        if isinstance(value, str) and value.strip():
            merged[key] = value.strip()
    name, provider = identify(merged, env)
    tiers = {t: merged.get(ENV_MODEL_KEYS[t]) or provider["models"][t] for t in TIERS}
    criteria = dict(provider["criteria"])
    return name, criteria, tiers, merged.get("ANTHROPIC_MODEL"), user_settings


def _settings_model(path: str) -> str | None:
    value = read_settings_doc(path).get("model")
    if isinstance(value, str) and value.strip() and len(value) <= 200:
        return value.strip()
    return None


def fallback_model(
    session_model: str | None,
    anthropic_model: str | None,
    project_dir: str | None,
    user_settings: str,
    tiers: Mapping[str, str | None],
) -> tuple[str, str]:
    """``_claude_model.fallback_model``."""
    if session_model and strip_display_suffix(session_model):
        return resolve_alias(session_model, tiers), "session"
    if anthropic_model and anthropic_model.strip():
        return resolve_alias(anthropic_model, tiers), "ANTHROPIC_MODEL"
    if project_dir:
        for name in PROJECT_SETTINGS:
            model = _settings_model(os.path.join(project_dir, name))
            if model:
                return resolve_alias(model, tiers), f"settings (project {os.path.basename(name)})"
    model = _settings_model(user_settings)
    if model:
        return resolve_alias(model, tiers), "settings (user settings.json)"
    return tiers.get("sonnet") or "unknown", "default"


def _kafka_sink(s: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """``_sink.zero_config_sink`` keeps Kafka, or :class:`_Unsure` (it probes, or decides on
    the embedded store)."""
    if "KAFKA_BOOTSTRAP_SERVERS" in env or "PROVIDER_EVENTS_SINK" in env:
        return
    try:
        fd = os.open(os.path.join(str(s["state_dir"]), "kafka-probe.json"), os.O_RDONLY)
        try:
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
        doc = loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        raise _Unsure("the default broker not probed lately") from None
    if (
        isinstance(doc, dict)
        and doc.get("servers") == s["servers"]
        and isinstance(doc.get("at"), (int, float))
        and 0 <= time.time() - doc["at"] < PROBE_TTL
        and doc.get("listening")
    ):
        return
    raise _Unsure("the default broker not listening (the embedded store decides)")


# -- one hook call -------------------------------------------------------------------------------
class _Call:
    def __init__(
        self, data: bytes, hook: dict[str, Any], env: Mapping[str, str], s: dict[str, Any]
    ) -> None:
        self.data = data
        self.hook = hook
        self.env = env
        self.s = s
        self.state_dir = str(s["state_dir"])
        self.session = str(hook["session_id"])
        self.log = _Log(self.state_dir)

    def full_turn(
        self, turn: Mapping[str, Any] | None, *, interrupted: bool, outcomes: bool
    ) -> None:
        """The full path from here: the session state is already up to date."""
        resume_claude_hook = _full_hook().resume_claude_hook

        resume_claude_hook(
            self.data, turn, interrupted=interrupted, outcomes=outcomes, environ=self.env
        )

    def publish_turn(self, turn: Mapping[str, Any], *, interrupted: bool) -> None:
        """``_turns.publish_turn``, or the full one."""
        try:
            self._publish_turn(turn, interrupted=interrupted)
        except _Unsure:
            self.full_turn(turn, interrupted=interrupted, outcomes=False)

    def _wait_for_transcript(self, path: str) -> None:
        """``_turns._wait_for_transcript``: wait for a missing transcript once per session."""
        if _peek(self.state_dir, self.session).get("no_transcript") is True:
            return
        if not _wait_for_file(path, TRANSCRIPT_WAIT):
            update_session(
                self.state_dir, self.session, lambda st: st.__setitem__("no_transcript", True)
            )

    def _publish_turn(self, turn: Mapping[str, Any], *, interrupted: bool) -> None:
        hook, env = self.hook, self.env
        _kafka_sink(self.s, env)
        chosen = selection(env)
        path = hook["transcript_path"]
        offset = turn.get("offset")
        if not isinstance(offset, int):
            size = transcript_size(path)
            offset = max(0, size - TAIL_BYTES) if size is not None else 0
        read: tuple[list[Any], int, str | None] | None = None
        problem = None
        if path:
            if not interrupted and not os.path.lexists(path):
                self._wait_for_transcript(path)
            try:
                read = read_records(path, offset if offset >= 0 else 0)
            except OSError as exc:
                problem = self._not_read(exc)
        records = [r for r in read[0] if not r[3]] if read is not None else []
        if _unfinished(records) and read is not None and not interrupted and path:
            read, records = _wait_for_turn(path, offset, read)
        prompt_id = turn.get("prompt_id") if isinstance(turn.get("prompt_id"), str) else None
        details: dict[str, Any] = {"turn": "interrupted" if interrupted else "main"}
        if prompt_id:
            details["prompt_id"] = prompt_id
        label = "Claude Code turn" + (" (interrupted)" if interrupted else "")
        at = turn.get("at")
        event = self._event(chosen, records, details, label, at if isinstance(at, str) else None)
        if problem:
            self.log.write(problem)
        if read is not None:
            new_offset = read[1]
            update_session(
                self.state_dir, self.session, lambda st: st.__setitem__("offset", new_offset)
            )
        if _enqueue.enqueue_built(self.s, env, event) is None:
            raise _Unsure("the outbox refused it (full, or not writable): the full path reports it")

    def _not_read(self, exc: OSError) -> str:
        return (
            f"{self.hook['event_name']}: transcript not read ({type(exc).__name__}: {exc.strerror})"
        )

    def _event(
        self,
        chosen: tuple[str, dict[str, Any], dict[str, str | None], str | None, str],
        records: list[Any],
        details: dict[str, Any],
        label: str,
        at: str | None,
    ) -> Any:
        """``_turns._publish_selection``'s event, built (:class:`_Unsure` if not certain)."""
        name, criteria, tiers, anthropic_model, user_settings = chosen
        if records:
            models = list(dict.fromkeys(r[0] for r in records))
            model, source = records[-1][0], "transcript"
            details["requests"] = len({r[2] or r[1] or i for i, r in enumerate(records)})
            if len(models) > 1:
                details["models"] = models
        else:
            session_model = _peek(self.state_dir, self.session).get("session_model")
            model, source = fallback_model(
                session_model if isinstance(session_model, str) else None,
                anthropic_model,
                self.env.get("CLAUDE_PROJECT_DIR") or self.hook["cwd"],
                user_settings,
                tiers,
            )
        details["model_source"] = source
        event = _enqueue.build(
            self.s,
            provider_name=name,
            model_name=model,
            correlation_id=self.session,
            selection_reason=f"{label}: model from {_SOURCES.get(source, source)}",
            selection_criteria={**criteria, "claude_code": details},
            selected_at=at,
        )
        if event is None:
            raise _Unsure("an event the lean builder does not certainly accept")
        return event

    def publish_subagent(self) -> None:
        """``_turns.publish_subagent``; :class:`_Unsure` before anything is written (the
        sub-agent's offset is written once its event is committed)."""
        hook, env = self.hook, self.env
        _kafka_sink(self.s, env)
        chosen = selection(env)
        key = hook["agent_id"] or hook["agent_transcript_path"] or "sidechain"
        state = _peek(self.state_dir, self.session)
        agents = _dict(state.get("agents"))
        offset = agents.get(key)
        turn = _dict(state.get("turn"))
        agent_path = hook["agent_transcript_path"]
        read: tuple[list[Any], int, str | None] | None = None
        problem = None
        if _wait_for_records(agent_path, offset, AGENT_FILE_WAIT):
            start = offset if isinstance(offset, int) and offset >= 0 else 0
            try:
                read = read_records(agent_path, start)
            except OSError as exc:
                problem = self._not_read(exc)
            records = list(read[0]) if read is not None else []
        else:
            if key != "sidechain":
                key = "sidechain"
                offset = agents.get(key)
            begin = offset if isinstance(offset, int) else turn.get("offset")
            path = hook["transcript_path"]
            if path:
                try:
                    read = read_records(path, begin if isinstance(begin, int) and begin >= 0 else 0)
                except OSError as exc:
                    problem = self._not_read(exc)
            records = [r for r in read[0] if r[3]] if read is not None else []
        details: dict[str, Any] = {"turn": "subagent"}
        if hook["agent_type"]:
            details["agent_type"] = hook["agent_type"]
        if hook["agent_id"]:
            details["agent_id"] = hook["agent_id"]
        prompt_id = hook["prompt_id"] or turn.get("prompt_id")
        if isinstance(prompt_id, str):
            details["prompt_id"] = prompt_id
        label = "Claude Code sub-agent turn" + (
            f" ({hook['agent_type']})" if hook["agent_type"] else ""
        )
        at = _canonical_time(read[2]) if read is not None and read[2] is not None else None
        if read is not None and read[2] is not None and at is None:
            raise _Unsure("a transcript timestamp of another form")
        event = self._event(chosen, records, details, label, at)
        if _enqueue.enqueue_built(self.s, env, event) is None:
            raise _Unsure("the outbox refused it (full, or not writable): the full path reports it")
        if problem:
            self.log.write(problem)
        if read is not None:
            new_offset, agent_key = read[1], key

            def advance(st: dict[str, Any]) -> None:
                known = _dict(st.get("agents"))
                known[agent_key] = new_offset
                st["agents"] = known

            update_session(self.state_dir, self.session, advance)

    def outcomes(self, marker: Mapping[str, Any]) -> None:
        """``_hook._publish_outcomes``, in a detached process (see the module doc); the
        session state holds ``marker`` until that process has published them."""
        hook = self.hook
        if hook["transcript_path"] is None:
            self.log.write(f"{hook['event_name']}: no transcript_path; no outcomes published")
            return
        if not spawn_outcomes(self.env, self.session, marker):
            self.full_turn(None, interrupted=False, outcomes=True)
            update_session(self.state_dir, self.session, _clear(marker))

    def resume_pending(self, state: Mapping[str, Any]) -> None:
        """A pending outcomes job of this session that never finished: start it again."""
        marker = state.get("outcomes_pending")
        if (
            isinstance(marker, dict)
            and isinstance(marker.get("at"), float)
            and isinstance(marker.get("transcript_path"), str)
            and isinstance(marker.get("event"), str)
            and not 0 <= time.time() - marker["at"] < OUTCOMES_RETRY
        ):
            spawn_outcomes(self.env, self.session, marker)


#: ``_turns.AGENT_FILE_WAIT``.
AGENT_FILE_WAIT = 1.5


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _wait_for_records(path: str | None, offset: Any, limit: float) -> bool:
    """``_turns._wait_for_records``."""
    if not path:
        return False
    start = offset if isinstance(offset, int) and offset >= 0 else 0
    deadline = time.monotonic() + limit
    while True:
        if os.path.isfile(path):
            try:
                if read_records(path, start)[0]:
                    return True
            except OSError:
                pass
        if time.monotonic() >= deadline:
            return os.path.isfile(path)
        time.sleep(0.05)


def _canonical_time(text: str) -> str | None:
    """A transcript ``timestamp`` (``...SSZ``, ``...SS.fffZ`` or ``...SS.ffffffZ``) in the
    form the lean builder takes (``_turns._when`` reads the same moment); else ``None``."""
    if len(text) == 20 and text[19] == "Z":
        return text[:19] + ".000000Z"
    if len(text) == 24 and text[19] == "." and text[23] == "Z":
        return text[:23] + "000Z"
    if len(text) == 27 and text[19] == "." and text[26] == "Z":
        return text
    return None


def _mark(marker: Mapping[str, Any]) -> Callable[[dict[str, Any]], None]:
    def mark(state: dict[str, Any]) -> None:
        state["outcomes_pending"] = marker

    return mark


def _clear(marker: Mapping[str, Any]) -> Callable[[dict[str, Any]], None]:
    def clear(state: dict[str, Any]) -> None:
        if state.get("outcomes_pending") == marker:
            del state["outcomes_pending"]

    return clear


STOP_WAIT = 0.5  # _turns.STOP_WAIT
TRANSCRIPT_WAIT = 1.5  # _turns.TRANSCRIPT_WAIT


def _wait_for_file(path: str, limit: float) -> bool:
    """``_turns._wait_for_file``: poll until the transcript exists (bounded); whether it does."""
    deadline = time.monotonic() + limit
    while not os.path.lexists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _unfinished(records: list[Any]) -> bool:
    """``_turns._unfinished``: no response yet, or the last one asked for a tool."""
    return not records or records[-1][4] == "tool_use"


def _wait_for_turn(path: str, offset: int, read: Any) -> tuple[Any, list[Any]]:
    """``_turns._wait_for_turn``: read again until the main-conversation responses look
    finished."""
    deadline = time.monotonic() + STOP_WAIT
    records: list[Any] = [r for r in read[0] if not r[3]]
    while _unfinished(records) and time.monotonic() < deadline:
        time.sleep(0.02)
        try:
            read = read_records(path, offset if offset >= 0 else 0)
        except OSError:
            break
        records = [r for r in read[0] if not r[3]]
    return read, records


def _peek(state_dir: str, session: str) -> dict[str, Any]:
    box: list[dict[str, Any]] = []
    update_session(state_dir, session, lambda st: box.append(dict(st)))
    return box[0]


def spawn_outcomes(env: Mapping[str, str], session: str, marker: Mapping[str, Any]) -> bool:
    """Start ``python -m provider_events.integrations._outcomes_job`` detached; False if not."""
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.dirname(os.path.dirname(here))
    child_env = dict(env)
    old = child_env.get("PYTHONPATH")
    child_env["PYTHONPATH"] = src + (os.pathsep + old if old else "")
    argv = [
        sys.executable,
        "-m",
        "provider_events.integrations._outcomes_job",
        str(marker["event"]),
        session,
        str(marker["transcript_path"]),
        repr(marker["at"]),
    ]
    try:
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            pid = os.posix_spawn(
                sys.executable,
                argv,
                child_env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0),
                    (os.POSIX_SPAWN_DUP2, devnull, 1),
                    (os.POSIX_SPAWN_DUP2, devnull, 2),
                ],
                setsid=True,
            )
        finally:
            os.close(devnull)
    except OSError:
        return False
    # Background work: it yields the CPU to Claude Code and to this hook's own exit.
    try:  # noqa: SIM105 - contextlib is not loaded on this path
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10))
    except OSError:
        pass
    return True


def _full_hook() -> Any:
    """The full hook module. The registered command runs Python with ``-S`` (no site-packages:
    this module needs only the standard library); the full hook needs msgspec and the rest,
    so the site directories are added first, as ``site`` would have at start-up."""
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()
    from provider_events.integrations import _hook

    return _hook


def run(fd: int = 0, environ: Mapping[str, str] | None = None) -> None:
    """One ``hook claude`` call (see the module doc); never raises."""
    env = _enqueue.process_environ() if environ is None else environ
    full = None  # what the full path gets when this one cannot decide from the start
    try:
        if env.get("PROVIDER_EVENTS_HOOK_DEBUG"):
            raise _Unsure("debug logging is the full path's")
        s = _enqueue.lean_settings(env, os.getcwd())  # type: ignore[arg-type]
        if s is None or s["state_dir"] is None:
            raise _Unsure("settings only load_settings can parse")
        log = _Log(str(s["state_dir"]))
        _watchdog(_timeout(env), log)
        try:
            full = read_stdin(fd)
        except (_StdinProblem, OSError) as exc:
            log.write(f"ignored hook call, event not published: {exc}")
            return
        hook = parse_call(full)
        if hook is None or hook["event_name"] not in LEAN_EVENTS or hook["session_id"] is None:
            raise _Unsure("a call the full path words")
        call = _Call(full, hook, env, s)
    except Exception:
        run_claude_hook = _full_hook().run_claude_hook

        run_claude_hook(fd, env, data=full)
        return
    try:
        _run(call)
    except Exception as exc:
        # a message of unknown content: the full log, which redacts DSN passwords
        from pathlib import Path

        HookLog = _full_hook().HookLog

        HookLog(Path(call.state_dir)).write(f"unexpected {type(exc).__name__}: {exc}")


def _run(call: _Call) -> None:
    hook = call.hook
    event = hook["event_name"]
    if event == "SessionStart":

        def start(state: dict[str, Any]) -> dict[str, Any]:
            if hook["model"]:
                state["session_model"] = hook["model"]
            return dict(state)

        state = update_session(call.state_dir, call.session, start)
        prune_sessions(call.state_dir)
        call.resume_pending(state)
        return
    if event == "UserPromptSubmit":
        turn = {
            "prompt_id": hook["prompt_id"],
            "at": now_text(),
            "offset": transcript_size(hook["transcript_path"]),
        }

        def prompt(state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            previous = state.get("turn")
            state["turn"] = turn
            return previous, dict(state)

        previous, state = update_session(call.state_dir, call.session, prompt)
        if isinstance(previous, dict):
            call.publish_turn(previous, interrupted=True)
        call.resume_pending(state)
        return
    marker = {"event": event, "transcript_path": hook["transcript_path"], "at": time.time()}
    if event == "SubagentStop":
        try:
            call.publish_subagent()
        except _Unsure:  # nothing written yet: the full hook does the whole call
            run_claude_hook = _full_hook().run_claude_hook

            run_claude_hook(0, call.env, data=call.data)
            return
        if hook["transcript_path"] is not None:
            update_session(call.state_dir, call.session, _mark(marker))
        call.outcomes(marker)
        return
    # Stop: the outcomes job's marker goes in with the same write (see Call.outcomes)

    def stop(state: dict[str, Any]) -> tuple[Any, Any]:
        if hook["transcript_path"] is not None:
            state["outcomes_pending"] = marker
        return state.pop("turn", None), state.get("offset")

    turn, read_up_to = update_session(call.state_dir, call.session, stop)
    if not isinstance(turn, dict):
        if hook["stop_hook_active"]:
            call.log.write("Stop: continuation of a recorded turn; no selection published")
            call.outcomes(marker)
            return
        turn = {"prompt_id": hook["prompt_id"], "at": None, "offset": read_up_to}
    call.publish_turn(turn, interrupted=False)
    call.outcomes(marker)
