"""``provider-events hook``: the Claude Code hook (input, provider detection, silence, exit 0)
and ``hook install``/``uninstall`` on settings.json.

Hook runs are real child processes fed real hook JSON on stdin; their events go to a temporary
outbox with the relay's autostart off, so nothing here needs a broker (see
``tests/integration/test_switch_hook.py`` for delivery).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from provider_events.cli import main
from provider_events.integrations._hook import (
    HookInputError,
    default_hook_command,
    detect_selection,
    install,
    parse_hook_input,
    uninstall,
)
from provider_events.integrations._providers import BUILTIN_PROVIDERS, ENV_KEYS
from provider_events.integrations._switch import SettingsFileError, apply_provider
from provider_events.publish._outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]
SESSION = "9f2c3e4a-1b2d-4c5e-8f90-a1b2c3d4e5f6"
PROMPT_JSON = {
    "session_id": SESSION,
    "transcript_path": f"/home/u/.claude/projects/-work/{SESSION}.jsonl",
    "cwd": "/work",
    "permission_mode": "default",
    "hook_event_name": "UserPromptSubmit",
    "prompt": "Refactor the relay please",
}
START_JSON = {
    "session_id": SESSION,
    "transcript_path": f"/home/u/.claude/projects/-work/{SESSION}.jsonl",
    "cwd": "/work",
    "hook_event_name": "SessionStart",
    "source": "startup",
}
USER_HOOKS: dict[str, Any] = {
    "UserPromptSubmit": [{"hooks": [{"type": "command", "command": "~/bin/log-prompt.sh"}]}],
    "PostToolUse": [
        {"matcher": "Edit|Write", "hooks": [{"type": "command", "command": "ruff format ."}]}
    ],
}
SETTINGS: dict[str, Any] = {
    "model": "sonnet",
    "hooks": USER_HOOKS,
    "env": {"DISABLE_TELEMETRY": "1"},
    "theme": "dark",
}


def _dump(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def _pairs(value: Any) -> Any:
    return json.loads(json.dumps(value), object_pairs_hook=list)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Environment of a hook child: temporary HOME and outbox, no Anthropic variables."""
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    child = {
        k: v
        for k, v in os.environ.items()
        if k not in ENV_KEYS and not k.startswith(("ANTHROPIC_", "CLAUDE_", "PROVIDER_EVENTS_"))
    }
    child.update(
        HOME=str(home),
        PROVIDER_EVENTS_STATE_DIR=str(tmp_path / "state"),
        PROVIDER_EVENTS_RELAY_AUTOSTART="false",
        PYTHONPATH=str(ROOT / "src"),
    )
    return child


def _settings_path(env: dict[str, str]) -> Path:
    return Path(env["HOME"]) / ".claude" / "settings.json"


def _hook(
    env: dict[str, str], stdin: bytes, *extra: str
) -> tuple[subprocess.CompletedProcess[bytes], float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "provider_events.cli", "hook", "claude", *extra],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=60,
        cwd=env["HOME"],
    )
    return done, time.perf_counter() - started


def _queued(env: dict[str, str]) -> list[tuple[bytes, dict[str, Any]]]:
    path = Path(env["PROVIDER_EVENTS_STATE_DIR"]) / "outbox.sqlite3"
    if not path.exists():
        return []
    outbox = Outbox(path)
    try:
        return [(row.key, json.loads(row.value)) for row in outbox.batch()]
    finally:
        outbox.close()


def _log(env: dict[str, str]) -> str:
    path = Path(env["PROVIDER_EVENTS_STATE_DIR"]) / "hook.log"
    return path.read_text() if path.exists() else ""


# -- input ---------------------------------------------------------------------------------------
def test_parse_user_prompt_submit_and_session_start() -> None:
    """The fields the hook uses come out of both events' JSON; the prompt is not kept."""
    prompt = parse_hook_input(json.dumps(PROMPT_JSON).encode())
    assert (prompt.event_name, prompt.session_id, prompt.source) == (
        "UserPromptSubmit",
        SESSION,
        None,
    )
    assert "Refactor" not in repr(prompt)
    start = parse_hook_input(json.dumps(START_JSON).encode())
    assert (start.event_name, start.source, start.cwd) == ("SessionStart", "startup", "/work")


@pytest.mark.parametrize(
    "data", [b"", b"  \n", b"garbage{", b"[1, 2]", b"\xff\xfe\x00", b'"text"', b"null"]
)
def test_parse_rejects_garbage(data: bytes) -> None:
    """Anything but a JSON object is a HookInputError with a reason."""
    with pytest.raises(HookInputError):
        parse_hook_input(data)


# -- detection -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(BUILTIN_PROVIDERS))
def test_detects_every_provider_from_settings(name: str) -> None:
    """After a switch, settings.json's env alone names the provider and its sonnet model."""
    p = BUILTIN_PROVIDERS[name]
    doc = apply_provider({"env": {"X": "1"}}, p, None if p.native else "k", p.resolved_base_url({}))
    selection = detect_selection(doc["env"], {}, BUILTIN_PROVIDERS)
    assert (selection.provider_name, selection.model_name) == (name, p.models["sonnet"])
    assert selection.exact and selection.criteria == dict(p.criteria)


def test_process_environment_wins_over_settings() -> None:
    """The hook's environment describes the running session; settings.json is the fallback."""
    zai = apply_provider({}, BUILTIN_PROVIDERS["zai"], "k", BUILTIN_PROVIDERS["zai"].base_url)
    orouter = BUILTIN_PROVIDERS["openrouter"]
    environ = {
        "ANTHROPIC_BASE_URL": orouter.base_url or "",
        **{f"ANTHROPIC_DEFAULT_{t.upper()}_MODEL": orouter.models[t] for t in orouter.models},
    }
    selection = detect_selection(zai["env"], environ, BUILTIN_PROVIDERS)
    assert (selection.provider_name, selection.model_name) == (
        "openrouter",
        "anthropic/claude-sonnet-4.5",
    )


def test_model_choice_order() -> None:
    """Hook JSON model, then ANTHROPIC_MODEL (tier aliases resolved), then the sonnet tier."""
    zai = apply_provider({}, BUILTIN_PROVIDERS["zai"], "k", BUILTIN_PROVIDERS["zai"].base_url)
    settings_env = zai["env"]
    assert detect_selection(settings_env, {}, BUILTIN_PROVIDERS).model_name == "glm-4.6"
    aliased = detect_selection(settings_env, {"ANTHROPIC_MODEL": "haiku"}, BUILTIN_PROVIDERS)
    assert aliased.model_name == "glm-4.5-air"
    literal = detect_selection(settings_env, {"ANTHROPIC_MODEL": "glm-4-32b"}, BUILTIN_PROVIDERS)
    assert literal.model_name == "glm-4-32b"
    assert detect_selection(settings_env, {}, BUILTIN_PROVIDERS, "glm-x").model_name == "glm-x"


def test_native_and_foreign_setups() -> None:
    """No override is claude; a foreign base URL is named by its host, with no criteria."""
    native = detect_selection({}, {}, BUILTIN_PROVIDERS)
    assert (native.provider_name, native.model_name) == ("claude", "claude-sonnet-4-5-20250929")
    foreign = detect_selection(
        {"ANTHROPIC_BASE_URL": "https://llm.corp.example/anthropic"}, {}, BUILTIN_PROVIDERS
    )
    assert (foreign.provider_name, foreign.criteria, foreign.exact) == (
        "llm.corp.example",
        {},
        False,
    )


# -- the hook process ----------------------------------------------------------------------------
def test_hook_is_silent_exits_zero_and_queues_the_event(env: dict[str, str]) -> None:
    """UserPromptSubmit: no output at all, exit 0, one event keyed by the session id."""
    path = _settings_path(env)
    zai = BUILTIN_PROVIDERS["zai"]
    path.write_bytes(_dump(apply_provider(SETTINGS, zai, "sk-zai-unit", zai.base_url)))
    done, seconds = _hook(env, json.dumps(PROMPT_JSON).encode())
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert seconds < 5
    [(key, event)] = _queued(env)
    assert key == SESSION.encode()
    assert event["correlation_id"] == SESSION
    payload = event["payload"]
    assert (payload["provider_name"], payload["model_name"]) == ("zai", "glm-4.6")
    assert payload["selection_reason"] == "Claude Code UserPromptSubmit"
    assert payload["selection_criteria"] == dict(zai.criteria)
    assert "Refactor" not in json.dumps(event) and "sk-zai-unit" not in json.dumps(event)
    assert _log(env) == ""


def test_session_start_names_its_source(env: dict[str, str]) -> None:
    """SessionStart's reason carries the source; with no settings file the provider is claude."""
    done, _ = _hook(env, json.dumps(START_JSON).encode())
    assert (done.returncode, done.stdout) == (0, b"")
    [(_, event)] = _queued(env)
    assert event["payload"]["selection_reason"] == "Claude Code SessionStart (startup)"
    assert event["payload"]["provider_name"] == "claude"


@pytest.mark.parametrize(
    ("stdin", "why"),
    [
        (b"garbage{", "stdin is not JSON"),
        (b"", "stdin was empty"),
        (b"[1, 2, 3]", "JSON list, not an object"),
        (b"\xff\xfe\x00\x01", "stdin is not JSON"),
    ],
)
def test_garbage_stdin_exits_zero_and_logs_why(stdin: bytes, why: str, env: dict[str, str]) -> None:
    """Bad input: still exit 0 and silent, nothing queued, one log line with the reason."""
    done, _ = _hook(env, stdin)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert _queued(env) == []
    log = _log(env)
    assert log.count("\n") == 1 and why in log and "event not published" in log


def test_a_large_pasted_prompt_is_still_recorded(env: dict[str, str]) -> None:
    """A 3 MiB prompt is read and recorded like any other (the prompt itself is not kept)."""
    big = {**PROMPT_JSON, "prompt": "x" * (3 << 20)}
    done, _ = _hook(env, json.dumps(big).encode())
    assert (done.returncode, done.stdout) == (0, b"")
    [(key, event)] = _queued(env)
    assert key == SESSION.encode() and "xxxx" not in json.dumps(event)


def test_stdin_is_read_within_a_size_bound() -> None:
    """More than the bound is refused with a reason rather than read without end."""
    from provider_events.integrations._hook import read_stdin

    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"{" + b" " * 5000 + b"}")
        os.close(write_fd)
        with pytest.raises(HookInputError, match="larger than 4096 bytes"):
            read_stdin(read_fd, limit=4096)
    finally:
        os.close(read_fd)


def test_stdin_left_open_cannot_block(env: dict[str, str]) -> None:
    """With stdin never closed the watchdog ends the hook with exit 0, and says so in the log."""
    env = {**env, "PROVIDER_EVENTS_HOOK_TIMEOUT": "0.5"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "provider_events.cli", "hook", "claude"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.wait(timeout=10) == 0
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.stdout is not None
        assert proc.stdout.read() == b""
        proc.stdout.close()
    assert time.perf_counter() - started < 5
    assert "gave up after 0.5s" in _log(env)


def test_bad_configuration_and_settings_still_exit_zero(env: dict[str, str]) -> None:
    """A broken publisher setting or settings.json is logged; the hook still exits 0 silently."""
    bad = {**env, "PROVIDER_EVENTS_DELIVERY_TIMEOUT": "soon"}
    done, _ = _hook(bad, json.dumps(PROMPT_JSON).encode())
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert "configuration problem" in _log(env) and "PROVIDER_EVENTS_DELIVERY_TIMEOUT" in _log(env)
    _settings_path(env).write_bytes(b"{not json")
    done, _ = _hook(env, json.dumps(PROMPT_JSON).encode())
    assert (done.returncode, done.stdout) == (0, b"")
    assert "settings.json not used" in _log(env)
    assert [e["payload"]["provider_name"] for _, e in _queued(env)] == ["claude"]


def test_unexpected_arguments_never_make_exit_two(env: dict[str, str]) -> None:
    """Exit 2 would block the prompt, so stray arguments after ``claude`` are ignored."""
    done, _ = _hook(env, json.dumps(PROMPT_JSON).encode(), "--some-future-flag", "x")
    assert (done.returncode, done.stdout) == (0, b"")
    assert len(_queued(env)) == 1


def test_hook_path_imports_stay_lean(env: dict[str, str]) -> None:
    """The hook never imports rich, confluent_kafka, asyncio, prometheus_client or psycopg."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "provider_events.cli", "hook", "claude"],
        input=json.dumps(PROMPT_JSON).encode(),
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.decode().splitlines()
        if line.startswith("import time:")
    }
    assert "provider_events.publish._enqueue" in imported  # the lean enqueue queued it
    heavy = {"rich", "confluent_kafka", "asyncio", "prometheus_client", "psycopg"}
    assert heavy.isdisjoint(imported)
    assert len(_queued(env)) == 1


# -- install / uninstall ---------------------------------------------------------------------------
COMMAND = "/usr/bin/python3 -m provider_events.cli hook claude"


def test_install_adds_ours_keeps_theirs_and_is_idempotent(tmp_path: Path) -> None:
    """Install appends one group per event, keeps user hooks and order, and a rerun is a no-op."""
    path = tmp_path / "settings.json"
    path.write_bytes(_dump(SETTINGS))
    first = install(COMMAND, path=path)
    assert first.changed and first.events == {"UserPromptSubmit": "added", "SessionStart": "added"}
    ours = {"type": "command", "command": COMMAND, "timeout": 10}
    expected = json.loads(json.dumps(SETTINGS))
    expected["hooks"]["UserPromptSubmit"].append({"hooks": [ours]})
    expected["hooks"]["SessionStart"] = [{"hooks": [ours]}]
    assert _pairs(json.loads(path.read_text())) == _pairs(expected)
    after_first = path.read_bytes()
    again = install(COMMAND, path=path)
    assert not again.changed
    assert again.events == {"UserPromptSubmit": "unchanged", "SessionStart": "unchanged"}
    assert path.read_bytes() == after_first


def test_install_updates_our_command_and_drops_duplicates(tmp_path: Path) -> None:
    """A changed command replaces ours in place; duplicates of ours collapse to one."""
    path = tmp_path / "settings.json"
    old = {"type": "command", "command": "provider-events hook claude"}
    doc = {"hooks": {"UserPromptSubmit": [{"hooks": [old]}, {"hooks": [dict(old)]}]}}
    path.write_bytes(_dump(doc))
    edit = install(COMMAND, path=path)
    assert edit.events["UserPromptSubmit"] == "updated"
    hooks = json.loads(path.read_text())["hooks"]["UserPromptSubmit"]
    assert hooks == [{"hooks": [{"type": "command", "command": COMMAND, "timeout": 10}]}]


def test_uninstall_restores_the_file_byte_for_byte(tmp_path: Path) -> None:
    """Uninstall after install gives back the original bytes; a second uninstall is a no-op."""
    path = tmp_path / "settings.json"
    for original in (SETTINGS, {"theme": "dark"}):
        path.write_bytes(_dump(original))
        install(COMMAND, path=path)
        edit = uninstall(path=path)
        assert edit.changed and set(edit.events) == {"UserPromptSubmit", "SessionStart"}
        assert path.read_bytes() == _dump(original)
        assert not uninstall(path=path).changed
        assert path.read_bytes() == _dump(original)


def test_install_refuses_a_foreign_hooks_shape(tmp_path: Path) -> None:
    """A hooks block that is not Claude Code's shape is reported and left as it is."""
    path = tmp_path / "settings.json"
    raw = _dump({"hooks": {"UserPromptSubmit": "echo hi"}})
    path.write_bytes(raw)
    with pytest.raises(SettingsFileError, match=r"hooks\.UserPromptSubmit"):
        install(COMMAND, path=path)
    assert path.read_bytes() == raw


def test_installed_command_runs_as_claude_code_would(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default ``hook install`` command, run via ``sh -c`` with hook JSON, queues the event."""
    monkeypatch.setenv("HOME", env["HOME"])
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    assert main(["hook", "install"]) == 0
    out = capsys.readouterr().out
    assert "UserPromptSubmit: added" in out and "SessionStart: added" in out
    doc = json.loads(_settings_path(env).read_text())
    command = doc["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"]
    assert command == default_hook_command()
    assert main(["hook", "status"]) == 0
    assert f"UserPromptSubmit: {command}" in capsys.readouterr().out
    done = subprocess.run(
        ["sh", "-c", command],
        input=json.dumps(PROMPT_JSON).encode(),
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, b"")
    assert [key for key, _ in _queued(env)] == [SESSION.encode()]
    assert main(["hook", "uninstall"]) == 0
    assert "hooks" not in json.loads(_settings_path(env).read_text())
