"""``provider-events hook``: the Claude Code hook (input, provider detection, silence, exit 0,
one selection per turn from the transcript) and ``hook install``/``uninstall`` on settings.json.

Hook runs are real child processes fed hook JSON on stdin in the exact shapes Claude Code
2.1.197 sends (recorded from the real CLI into ``tests/fixtures/claude_code_2.1.197``, with its
transcripts); their events go to a temporary outbox with the relay's autostart off, so nothing
here needs a broker (see ``tests/integration/test_switch_hook.py`` and
``tests/integration/test_claude_code.py`` for delivery and the real CLI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from provider_events.cli import main
from provider_events.integrations._hook import (
    HOOK_CODE,
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
from tests.support import wait_hook_outcomes

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "claude_code_2.1.197"
#: The hook JSON Claude Code 2.1.197 sent for one `claude -p` run with a tool call and a
#: sub-agent, by event name (the last of each).
REAL = {
    doc["hook_event_name"]: doc
    for doc in map(json.loads, (FIXTURES / "hook_payloads.jsonl").read_text().splitlines())
}
SESSION = REAL["Stop"]["session_id"]
PROMPT_ID = REAL["Stop"]["prompt_id"]
PROMPT_JSON = {**REAL["UserPromptSubmit"], "prompt": "Refactor the relay please"}
START_JSON = REAL["SessionStart"]
STOP_JSON = REAL["Stop"]
#: The transcript's first assistant line, as Claude Code wrote it.
ASSISTANT_LINE = next(
    line
    for line in (FIXTURES / "transcript.jsonl").read_text().splitlines()
    if json.loads(line)["type"] == "assistant"
)
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
        if k not in ENV_KEYS
        and not k.startswith(("ANTHROPIC_", "CLAUDE_", "PROVIDER_EVENTS_", "KAFKA_"))
    }
    child.update(
        HOME=str(home),
        PROVIDER_EVENTS_STATE_DIR=str(tmp_path / "state"),
        PROVIDER_EVENTS_RELAY_AUTOSTART="false",
        # configured, so events go to the outbox whatever listens at the default address
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
        PYTHONPATH=str(ROOT / "src"),
    )
    return child


def _settings_path(env: dict[str, str]) -> Path:
    return Path(env["HOME"]) / ".claude" / "settings.json"


def _assistant(
    model: str, n: int = 1, sidechain: bool = False, stop_reason: str = "end_turn"
) -> str:
    """An assistant transcript line in Claude Code's shape, for ``model`` (the turn's final
    answer unless ``stop_reason`` says ``tool_use``)."""
    doc = json.loads(ASSISTANT_LINE)
    doc["message"]["model"] = model
    doc["message"]["stop_reason"] = stop_reason
    doc["message"]["id"] = f"msg_{model}_{n}"
    doc["requestId"] = f"req_{model}_{n}"
    doc["isSidechain"] = sidechain
    return json.dumps(doc, separators=(",", ":")) + "\n"


def _payload(doc: dict[str, Any], transcript: Path, **extra: Any) -> bytes:
    return json.dumps({**doc, "transcript_path": str(transcript), **extra}).encode()


def _turn(
    env: dict[str, str],
    transcript: Path,
    lines: list[str],
    *extra: str,
    prompt: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """UserPromptSubmit, ``lines`` appended to the transcript, then Stop; the queued events."""
    transcript.parent.mkdir(parents=True, exist_ok=True)
    with transcript.open("a") as fh:
        fh.write('{"type":"user","message":{"role":"user","content":"earlier"}}\n')
    for stdin in (_payload(prompt or PROMPT_JSON, transcript), None):
        if stdin is None:
            with transcript.open("a") as fh:
                fh.writelines(lines)
            stdin = _payload(STOP_JSON, transcript, cwd=(prompt or PROMPT_JSON)["cwd"])
        done, _ = _hook(env, stdin, *extra)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    return [event for _, event in _queued(env)]


def _hook(
    env: dict[str, str], stdin: bytes, *extra: str, wait: bool = True
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
    elapsed = time.perf_counter() - started
    # At Stop the lean hook publishes the turn's outcomes from a detached job: wait for it.
    if wait:
        wait_hook_outcomes(Path(env["PROVIDER_EVENTS_STATE_DIR"]))
    return done, elapsed


SELECTED = "omninode.agent.provider.selected.v1"
COMPLETED = "omninode.agent.provider.completed.v1"


def _queued(env: dict[str, str], event_type: str = SELECTED) -> list[tuple[bytes, dict[str, Any]]]:
    """The queued events of one type (at Stop the hook queues the turn's selection and, from
    the transcript's usage, its measured outcomes)."""
    path = Path(env["PROVIDER_EVENTS_STATE_DIR"]) / "outbox.sqlite3"
    if not path.exists():
        return []
    outbox = Outbox(path)
    try:
        rows = [(row.key, json.loads(row.value)) for row in outbox.batch()]
    finally:
        outbox.close()
    return [(key, event) for key, event in rows if event["event_type"] == event_type]


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
    assert prompt.prompt_id == PROMPT_ID
    start = parse_hook_input(json.dumps(START_JSON).encode())
    assert (start.event_name, start.source, start.cwd) == (
        "SessionStart",
        "startup",
        "/tmp/ccfx/proj",
    )
    stop = parse_hook_input(json.dumps(REAL["SubagentStop"]).encode())
    assert (stop.agent_type, stop.stop_hook_active) == ("general-purpose", False)
    assert stop.agent_transcript_path and stop.agent_transcript_path.endswith(".jsonl")


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
    """No override is claude; a foreign base URL is ``custom:`` and its host, with no criteria."""
    native = detect_selection({}, {}, BUILTIN_PROVIDERS)
    assert (native.provider_name, native.model_name) == ("claude", "claude-sonnet-4-5-20250929")
    foreign = detect_selection(
        {"ANTHROPIC_BASE_URL": "https://llm.corp.example/anthropic"}, {}, BUILTIN_PROVIDERS
    )
    assert (foreign.provider_name, foreign.criteria, foreign.exact) == (
        "custom:llm.corp.example",
        {},
        False,
    )


# -- the hook process ----------------------------------------------------------------------------
def test_a_turn_is_published_at_stop_with_the_transcripts_model(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Prompt then Stop: silent, exit 0, one event keyed by the session, with the model of the
    turn's API requests, the prompt's time, and the turn's details; nothing at the prompt."""
    path = _settings_path(env)
    zai = BUILTIN_PROVIDERS["zai"]
    path.write_bytes(_dump(apply_provider(SETTINGS, zai, "sk-zai-unit", zai.base_url)))
    transcript = tmp_path / "t.jsonl"
    transcript.write_text(_assistant("glm-4.5-air", 0))  # an earlier turn's request
    before = time.time()
    [event] = _turn(env, transcript, [_assistant("glm-4.6", 1), _assistant("glm-4.6", 2)])
    assert event["correlation_id"] == SESSION
    payload = event["payload"]
    assert (payload["provider_name"], payload["model_name"]) == ("zai", "glm-4.6")
    assert payload["selection_reason"] == "Claude Code turn: model from the transcript"
    details = {"turn": "main", "prompt_id": PROMPT_ID, "requests": 2, "model_source": "transcript"}
    assert payload["selection_criteria"] == {**zai.criteria, "claude_code": details}
    selected = datetime.fromisoformat(payload["selected_at"].replace("Z", "+00:00"))
    assert before - 1 <= selected.timestamp() <= time.time()
    assert selected < datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    text = json.dumps(event)
    assert "Refactor" not in text and "sk-zai-unit" not in text
    assert _log(env) == ""


def test_the_real_cli_run_publishes_its_turn_and_its_sub_agent(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The payloads and transcripts of a real run (tool call, sub-agent) replayed in order give
    one sub-agent event and one turn event, both with the model the API was asked for, and
    nothing for the other events."""
    main, sub = tmp_path / "main.jsonl", tmp_path / "sub.jsonl"
    main.write_bytes(b"")
    for line in (FIXTURES / "hook_payloads.jsonl").read_text().splitlines():
        doc = json.loads(line)
        if doc["hook_event_name"] in ("SubagentStop", "Stop", "SessionEnd"):
            main.write_bytes((FIXTURES / "transcript.jsonl").read_bytes())
            sub.write_bytes((FIXTURES / "subagent_transcript.jsonl").read_bytes())
        extra = {"agent_transcript_path": str(sub)} if "agent_transcript_path" in doc else {}
        done, _ = _hook(env, _payload(doc, main, **extra))
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    events = [event["payload"] for _, event in _queued(env)]
    assert [p["model_name"] for p in events] == ["claude-opus-4-8", "claude-opus-4-8"]
    assert [p["selection_criteria"]["claude_code"]["turn"] for p in events] == ["subagent", "main"]
    assert events[0]["selection_reason"] == (
        "Claude Code sub-agent turn (general-purpose): model from the transcript"
    )
    assert events[1]["selection_criteria"]["claude_code"]["requests"] == 3
    assert events[0]["provider_name"] == "claude"  # no base URL in this environment
    log = _log(env)
    for ignored in ("PreToolUse", "PostToolUse", "SessionEnd"):
        assert f"{ignored}: not an event this hook is registered for" in log


@pytest.mark.parametrize("event", ["PreToolUse", "PostToolUse", "Notification", "PreCompact"])
def test_unregistered_events_publish_nothing(event: str, env: dict[str, str]) -> None:
    """Any other hook event exits 0 silently, publishes nothing and says so in the log."""
    doc = {**REAL["PreToolUse"], "hook_event_name": event}
    done, _ = _hook(env, json.dumps(doc).encode())
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert _queued(env) == []
    assert f"{event}: not an event this hook is registered for" in _log(env)


def test_synthetic_lines_and_sidechains_do_not_name_the_turns_model(
    env: dict[str, str], tmp_path: Path
) -> None:
    """``<synthetic>`` lines and sub-agent lines are skipped; a turn that used two models lists
    both and is recorded with the last; a half-written last line is left alone."""
    transcript = tmp_path / "t.jsonl"
    lines = [
        _assistant("claude-opus-4-8", 1),
        _assistant("claude-haiku-4-5", 2, sidechain=True),
        _assistant("claude-sonnet-5", 3),
        _assistant("<synthetic>", 4),
        _assistant("half-written", 5)[:-40],
    ]
    [event] = _turn(env, transcript, lines)
    assert event["payload"]["model_name"] == "claude-sonnet-5"
    details = event["payload"]["selection_criteria"]["claude_code"]
    assert details["models"] == ["claude-opus-4-8", "claude-sonnet-5"]


def test_a_session_start_model_is_the_fallback_without_its_display_suffix(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A turn with no request in the transcript takes SessionStart's model, ``[1m]`` stripped."""
    transcript = tmp_path / "t.jsonl"
    start = {**START_JSON, "model": "claude-opus-4-8[1m]", "transcript_path": str(transcript)}
    assert _hook(env, json.dumps(start).encode())[0].returncode == 0
    [event] = _turn(env, transcript, [])
    payload = event["payload"]
    assert payload["model_name"] == "claude-opus-4-8"
    assert payload["selection_reason"] == "Claude Code turn: model from SessionStart"


@pytest.mark.parametrize(
    ("setup", "model", "source"),
    [
        ({"env": {"ANTHROPIC_MODEL": "opus"}}, "claude-opus-4-1-20250805", "ANTHROPIC_MODEL"),
        ({"project": "settings.local.json"}, "my-haiku", "settings (project settings.local.json)"),
        ({"project": "settings.json"}, "my-haiku", "settings (project settings.json)"),
        ({"user": True}, "my-haiku", "settings (user settings.json)"),
        ({}, "claude-sonnet-4-5-20250929", "default"),
    ],
)
def test_fallback_order_without_a_transcript(
    setup: dict[str, Any], model: str, source: str, env: dict[str, str], tmp_path: Path
) -> None:
    """ANTHROPIC_MODEL, then ``model`` in the project's and the user's settings (aliases
    resolved through ANTHROPIC_DEFAULT_*_MODEL), then the provider's default; the reason says
    which decided."""
    env = {**env, **setup.get("env", {}), "ANTHROPIC_DEFAULT_HAIKU_MODEL": "my-haiku"}
    project = tmp_path / "project"
    if "project" in setup:
        (project / ".claude").mkdir(parents=True)
        (project / ".claude" / setup["project"]).write_text('{"model": "haiku"}')
    if setup.get("user"):
        _settings_path(env).write_text('{"model": "haiku"}')
    prompt = {**PROMPT_JSON, "cwd": str(project)}
    [event] = _turn(env, tmp_path / "missing" / "t.jsonl", [], prompt=prompt)
    payload = event["payload"]
    assert payload["model_name"] == model
    assert payload["selection_criteria"]["claude_code"]["model_source"] == source


def test_an_interrupted_turn_is_published_at_the_next_prompt(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A prompt whose turn never reached Stop is recorded when the next prompt comes."""
    transcript = tmp_path / "t.jsonl"
    transcript.write_text("")
    assert _hook(env, _payload(PROMPT_JSON, transcript))[0].returncode == 0
    with transcript.open("a") as fh:
        fh.write(_assistant("claude-opus-4-8"))
    assert _hook(env, _payload(PROMPT_JSON, transcript, prompt_id="p-2"))[0].returncode == 0
    [(_, event)] = _queued(env)
    payload = event["payload"]
    assert payload["model_name"] == "claude-opus-4-8"
    assert (
        payload["selection_reason"] == "Claude Code turn (interrupted): model from the transcript"
    )


def test_a_continued_stop_is_not_a_second_turn(env: dict[str, str], tmp_path: Path) -> None:
    """A second Stop for the same turn (``stop_hook_active``) publishes nothing."""
    transcript = tmp_path / "t.jsonl"
    assert len(_turn(env, transcript, [_assistant("m1")])) == 1
    done, _ = _hook(env, _payload(STOP_JSON, transcript, stop_hook_active=True))
    assert done.returncode == 0 and len(_queued(env)) == 1
    assert "continuation of a recorded turn" in _log(env)


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


def test_a_large_pasted_prompt_is_still_recorded(env: dict[str, str], tmp_path: Path) -> None:
    """A 3 MiB prompt is read and its turn recorded like any other (the prompt is not kept)."""
    big = {**PROMPT_JSON, "prompt": "x" * (3 << 20)}
    [event] = _turn(env, tmp_path / "t.jsonl", [_assistant("m")], prompt=big)
    assert event["correlation_id"] == SESSION and "xxxx" not in json.dumps(event)


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


def test_bad_configuration_and_settings_still_exit_zero(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A broken publisher setting or settings.json is logged; the hook still exits 0 silently."""
    bad = {**env, "PROVIDER_EVENTS_DELIVERY_TIMEOUT": "soon"}
    done, _ = _hook(bad, json.dumps(STOP_JSON).encode())
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert "configuration problem" in _log(env) and "PROVIDER_EVENTS_DELIVERY_TIMEOUT" in _log(env)
    _settings_path(env).write_bytes(b"{not json")
    [event] = _turn(env, tmp_path / "t.jsonl", [_assistant("m")])
    assert "settings.json not used" in _log(env)
    assert event["payload"]["provider_name"] == "claude"


def test_unexpected_arguments_never_make_exit_two(env: dict[str, str], tmp_path: Path) -> None:
    """Exit 2 would block the prompt, so arguments ``hook claude`` does not know are ignored,
    wherever they are."""
    transcript = tmp_path / "t.jsonl"
    assert len(_turn(env, transcript, [_assistant("m")], "--some-future-flag", "x")) == 1
    for args in (["--setting", "x", "claude"], ["claude", "--settings"], ["-v", "claude", "y"]):
        done = subprocess.run(
            [sys.executable, "-m", "provider_events.cli", "hook", *args],
            input=_payload(STOP_JSON, transcript),
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b""), args


def test_hook_path_imports_stay_lean(env: dict[str, str], tmp_path: Path) -> None:
    """The hook never imports rich, confluent_kafka, asyncio, prometheus_client or psycopg;
    at a plain Stop it loads only the standard library and the lean enqueue (no msgspec, no
    Publisher, no dataclasses, re or pathlib): the turn's outcomes are priced by a detached
    job (``integrations/_outcomes_job.py``), which the test waits for."""
    transcript = tmp_path / "t.jsonl"
    imported: set[str] = set()
    for n in (1, 2):
        with transcript.open("a") as fh:
            fh.write(_assistant("m", n))
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "provider_events.cli", "hook", "claude"],
            input=_payload(STOP_JSON, transcript),
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
        wait_hook_outcomes(Path(env["PROVIDER_EVENTS_STATE_DIR"]))
    assert "provider_events.publish._enqueue" in imported
    heavy = {"rich", "confluent_kafka", "asyncio", "prometheus_client", "psycopg", "pydantic"}
    full = {"msgspec", "provider_events.publish._publisher", "dataclasses", "re", "pathlib"}
    assert (heavy | full).isdisjoint(imported), (heavy | full) & imported
    assert len(_queued(env)) == 2 and len(_queued(env, COMPLETED)) == 2


# -- install / uninstall ---------------------------------------------------------------------------
COMMAND = "/usr/bin/python3 -m provider_events.cli hook claude"
EVENTS = ("UserPromptSubmit", "SessionStart", "Stop", "SubagentStop")


def test_install_adds_ours_keeps_theirs_and_is_idempotent(tmp_path: Path) -> None:
    """Install appends one group per event, keeps user hooks and order, and a rerun is a no-op."""
    path = tmp_path / "settings.json"
    path.write_bytes(_dump(SETTINGS))
    first = install(COMMAND, path=path)
    assert first.changed and first.events == dict.fromkeys(EVENTS, "added")
    ours = {"type": "command", "command": COMMAND, "timeout": 10}
    expected = json.loads(json.dumps(SETTINGS))
    expected["hooks"]["UserPromptSubmit"].append({"matcher": "", "hooks": [ours]})
    for event in ("SessionStart", "Stop", "SubagentStop"):
        expected["hooks"][event] = [{"matcher": "", "hooks": [ours]}]
    assert _pairs(json.loads(path.read_text())) == _pairs(expected)
    after_first = path.read_bytes()
    again = install(COMMAND, path=path)
    assert not again.changed
    assert again.events == dict.fromkeys(EVENTS, "unchanged")
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
        assert edit.changed and set(edit.events) == set(EVENTS)
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
    assert all(f"{event}: added" in out for event in EVENTS)
    doc = json.loads(_settings_path(env).read_text())
    command = doc["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"]
    assert command == default_hook_command()
    assert main(["hook", "status"]) == 0
    assert f"UserPromptSubmit: {command}" in capsys.readouterr().out
    done = subprocess.run(
        ["sh", "-c", command],
        input=json.dumps(STOP_JSON).encode(),
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, b"")
    assert [key for key, _ in _queued(env)] == [SESSION.encode()]
    assert main(["hook", "uninstall"]) == 0
    assert "hooks" not in json.loads(_settings_path(env).read_text())


def test_default_command_is_this_interpreter_and_finds_this_package() -> None:
    """The registered command names this Python by its absolute, unresolved path (a venv's
    bin/python stays inside the venv), isolated and without site (``-I -S``), with this
    package's folder first on sys.path."""
    import shlex

    words = shlex.split(default_hook_command())
    assert words[0] == os.path.abspath(sys.executable)
    assert os.path.isabs(words[0])
    assert words[1:4] == ["-I", "-S", "-c"] and len(words) == 5
    folder = str(ROOT / "src")
    assert words[4] == f"import sys; sys.path.insert(0, {json.dumps(folder)}); {HOOK_CODE}"
    assert (Path(folder) / "provider_events" / "__init__.py").is_file()


def _registered_stop(
    env: dict[str, str], tmp_path: Path, model: str, cwd: Path | None = None
) -> str:
    """Run the registered command (as ``sh`` would split it) on a Stop whose transcript holds
    one response of ``model``: silent, exit 0; returns the model of the one queued event."""
    import shlex

    transcript = tmp_path / "t.jsonl"
    transcript.write_text(_assistant(model))
    done = subprocess.run(
        shlex.split(default_hook_command()),
        input=_payload(STOP_JSON, transcript),
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    [(_, event)] = _queued(env)
    return str(event["payload"]["model_name"])


def test_the_projects_own_modules_cannot_shadow_the_hooks(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Claude Code runs the hook in the project's folder: a ``json.py``, ``sqlite3.py`` or
    ``provider_events/`` lying there is never imported (``-I``), and the call still queues its
    event."""

    project = tmp_path / "project"
    (project / "provider_events").mkdir(parents=True)
    for name in ("json.py", "sqlite3.py", "_json.py", "provider_events/__init__.py"):
        (project / name).write_text("raise SystemExit('the project shadowed ' + __name__)\n")
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    assert _registered_stop(env, tmp_path, "shadow-model", cwd=project) == "shadow-model"


def test_a_call_the_lean_hook_hands_over_finds_the_full_hooks_packages(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Under ``-S`` the full hook (here: debug logging, which only it does) still imports
    msgspec and the rest from site-packages: the lean path adds them before handing over."""

    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    env["PROVIDER_EVENTS_HOOK_DEBUG"] = "1"
    assert _registered_stop(env, tmp_path, "full-path-model") == "full-path-model"
    log = (Path(env["PROVIDER_EVENTS_STATE_DIR"]) / "hook.log").read_text()
    assert "queued" in log and "ModuleNotFoundError" not in log


@pytest.mark.parametrize("order", ["before", "after"])
def test_install_options_in_any_order(
    env: dict[str, str],
    tmp_path: Path,
    order: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``hook install --settings X`` and ``hook --settings X install`` both edit X."""
    monkeypatch.setenv("HOME", env["HOME"])
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    target = tmp_path / "elsewhere" / "settings.json"
    options = ["--settings", str(target), "--command", "provider-events hook claude"]
    argv = ["hook", *options, "install"] if order == "before" else ["hook", "install", *options]
    assert main(argv) == 0
    doc = json.loads(target.read_text())
    assert doc["hooks"]["SessionStart"][0]["hooks"][0]["command"] == "provider-events hook claude"
    assert not _settings_path(env).exists()
    assert f"settings: {target}" in capsys.readouterr().out


def test_install_rejects_an_unknown_trailing_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["hook", "install", "--no-such-option"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--no-such-option" in err


def test_stop_publishes_the_turns_outcomes_once_priced_for_the_sessions_provider(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Stop: silent, exit 0; the transcript's new responses are queued as completion events
    keyed by the session, for the provider the hook sees (Z.AI here); a second Stop with
    nothing new queues nothing; SubagentStop reads the sub-agent file too."""
    from tests.transcripts import assistant_line, usage, write_lines

    path = _settings_path(env)
    zai = BUILTIN_PROVIDERS["zai"]
    path.write_bytes(_dump(apply_provider(SETTINGS, zai, "sk-zai-unit", zai.base_url)))
    transcript = tmp_path / "projects" / "-work" / f"{SESSION}.jsonl"
    line = assistant_line(
        SESSION, "/work", "2025-10-06T10:00:00Z", "g1", "q1", "glm-4.6", usage(1000, 10)
    )
    write_lines(transcript, [line, line])  # two content blocks of one response
    stop = {
        "session_id": SESSION,
        "transcript_path": str(transcript),
        "cwd": "/work",
        "hook_event_name": "Stop",
        "stop_hook_active": False,
    }
    done, _ = _hook(env, json.dumps(stop).encode())
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    [(key, event)] = _queued(env, COMPLETED)
    assert key == SESSION.encode()
    assert event["event_type"] == "omninode.agent.provider.completed.v1"
    p = event["payload"]
    assert (p["provider_name"], p["model_name"], p["input_tokens"]) == ("zai", "glm-4.6", 1000)
    assert p["cost_source"] == "calculated"
    assert p["cost_usd"] == pytest.approx((1000 * 0.6 + 10 * 2.2) / 1e6, abs=1e-12)
    done, _ = _hook(env, json.dumps(stop).encode())
    assert done.returncode == 0 and len(_queued(env, COMPLETED)) == 1
    sub = transcript.with_suffix("") / "subagents" / "agent-x.jsonl"
    write_lines(
        sub,
        [
            assistant_line(
                SESSION,
                "/work",
                "2025-10-06T10:01:00Z",
                "g2",
                "q2",
                "glm-4.6",
                usage(1, 1),
                sidechain=True,
            )
        ],
    )
    done, _ = _hook(env, json.dumps({**stop, "hook_event_name": "SubagentStop"}).encode())
    assert done.returncode == 0 and len(_queued(env, COMPLETED)) == 2
    assert _log(env) == ""


# -- options in any order ------------------------------------------------------------------------
def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provider_events.cli", "hook", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=env["HOME"],
    )


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "order",
    [
        ["install", "--settings", "{f}"],
        ["--settings", "{f}", "install"],
        ["install", "--settings={f}"],
        ["--command", COMMAND, "install", "--settings", "{f}"],
    ],
)
def test_install_and_uninstall_honour_settings_in_any_order(
    order: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    """``--settings F`` before or after the action edits F, and never ~/.claude/settings.json."""
    target = tmp_path / "elsewhere" / "settings.json"
    args = [a.replace("{f}", str(target)) for a in order]
    done = _cli(env, *args)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(target.read_text())["hooks"]) == set(EVENTS)
    assert not _settings_path(env).exists()
    for args in (["uninstall", "--settings", str(target)], ["--settings", str(target), "status"]):
        done = _cli(env, *args)
        assert done.returncode == 0, done.stderr
        assert str(target) in done.stdout
    assert "hooks" not in json.loads(target.read_text())
    assert not _settings_path(env).exists()


@pytest.mark.parametrize(
    "args",
    [
        ["install", "--help"],
        ["--help", "install"],
        ["uninstall", "-h"],
        ["claude", "--help"],
        ["install", "--settings", "{f}", "--help"],
    ],
)
def test_help_never_writes_anything(args: list[str], env: dict[str, str], tmp_path: Path) -> None:
    """``--help`` anywhere prints the usage and exits 0 with no file created or changed."""
    before = _files(Path(env["HOME"]))
    target = tmp_path / "f.json"
    done = _cli(env, *[a.replace("{f}", str(target)) for a in args])
    assert done.returncode == 0 and "usage: provider-events hook" in done.stdout
    assert _files(Path(env["HOME"])) == before and not target.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["install", "--setting", "{f}"],
        ["--setting", "{f}", "install"],
        ["uninstall", "--setings", "{f}"],
        ["install", "extra"],
        ["install", "--settings"],
        ["bogus"],
    ],
)
def test_unknown_options_exit_two_and_write_nothing(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    """A typo'd option (never taken as an abbreviation), a stray argument or a missing value:
    one line on stderr, exit 2, nothing written anywhere."""
    _settings_path(env).write_bytes(_dump(SETTINGS))
    before = _settings_path(env).read_bytes()
    target = tmp_path / "f.json"
    done = _cli(env, *[a.replace("{f}", str(target)) for a in args])
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "error" in done.stderr
    assert _settings_path(env).read_bytes() == before and not target.exists()
    assert _files(Path(env["HOME"])) == [".claude/settings.json"]


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "missing"])
def test_a_hostile_transcript_path_falls_back_at_once(
    kind: str, env: dict[str, str], tmp_path: Path
) -> None:
    """A FIFO, a device, a directory or a missing file as transcript: the turn is still
    published (with a fallback model), quickly, and the log says why."""
    path = {"device": Path("/dev/zero"), "directory": tmp_path}.get(kind, tmp_path / "t")
    if kind == "fifo":
        os.mkfifo(path)
    started = time.perf_counter()
    done, _ = _hook(env, _payload(STOP_JSON, path))
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert time.perf_counter() - started < 10
    [(_, event)] = _queued(env)
    assert event["payload"]["selection_criteria"]["claude_code"]["model_source"] == "default"
    assert "transcript not read" in _log(env)


@pytest.mark.parametrize("where", ["after", "before", "equals"])
def test_hook_claude_reads_the_settings_file_it_is_given(
    where: str, env: dict[str, str], tmp_path: Path
) -> None:
    """``hook claude --settings F`` (in any position) takes the provider from F's ``env``."""
    other = tmp_path / "other.json"
    zai = BUILTIN_PROVIDERS["zai"]
    other.write_bytes(_dump(apply_provider({}, zai, "sk-unit", zai.base_url)))
    args = {
        "after": ["claude", "--settings", str(other)],
        "before": ["--settings", str(other), "claude"],
        "equals": ["claude", f"--settings={other}"],
    }[where]
    transcript = tmp_path / "t.jsonl"
    transcript.write_text(_assistant("glm-4.6"))
    done = subprocess.run(
        [sys.executable, "-m", "provider_events.cli", "hook", *args],
        input=_payload(STOP_JSON, transcript),
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    [(_, event)] = _queued(env)
    assert (event["payload"]["provider_name"], event["payload"]["model_name"]) == (
        "zai",
        "glm-4.6",
    )


def test_stop_waits_briefly_for_a_response_line_written_late(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Claude Code can fire Stop just before it writes the turn's only response line: the hook
    reads the transcript again for a moment (bounded) rather than name a fallback model."""
    import threading

    transcript = tmp_path / "late.jsonl"
    transcript.write_text('{"type":"user","message":{"role":"user","content":"hi"}}\n')
    done, _ = _hook(env, _payload(PROMPT_JSON, transcript))
    assert done.returncode == 0
    late = threading.Timer(0.15, lambda: transcript.open("a").write(_assistant("late-model")))
    late.start()
    try:
        done, _ = _hook(env, _payload(STOP_JSON, transcript))
    finally:
        late.join()
    assert done.returncode == 0
    [(_, event)] = _queued(env)
    assert event["payload"]["model_name"] == "late-model"
    assert event["payload"]["selection_reason"] == "Claude Code turn: model from the transcript"


def test_stop_waits_briefly_for_a_transcript_created_late(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Under load Claude Code fired Stop before the session's transcript file existed (seen in
    CI with the real CLI): the hook waits for the file (bounded) instead of logging it missing
    and naming a fallback model."""
    import threading

    transcript = tmp_path / "created-late.jsonl"
    done, _ = _hook(env, _payload(PROMPT_JSON, transcript))
    assert done.returncode == 0
    line = _assistant("late-file-model")
    late = threading.Timer(0.3, lambda: transcript.write_text(line))
    late.start()
    try:
        done, _ = _hook(env, _payload(STOP_JSON, transcript))
    finally:
        late.join()
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    [(_, event)] = _queued(env)
    assert event["payload"]["model_name"] == "late-file-model"
    assert "transcript not read" not in _log(env)


def test_a_session_without_transcripts_waits_for_one_once(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Claude Code writes no transcript with ``cleanupPeriodDays: 0``: the first Stop waits
    for it (bounded), remembers in the session's state that none came, and the next Stops of
    that session publish at once with the fallback model."""
    from provider_events.integrations._claude_state import session_path

    missing = tmp_path / "never-written.jsonl"
    state = session_path(Path(env["PROVIDER_EVENTS_STATE_DIR"]), SESSION)
    times = []
    for _ in range(2):
        started = time.perf_counter()
        done, _ = _hook(env, _payload(STOP_JSON, missing))
        times.append(time.perf_counter() - started)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
        assert json.loads(state.read_text())["no_transcript"] is True
    events = _queued(env)
    assert len(events) == 2
    assert {
        e["payload"]["selection_criteria"]["claude_code"]["model_source"] for _, e in events
    } == {"default"}
    assert times[0] >= 1.4  # the one bounded wait (1.5 s)


def test_stop_waits_briefly_for_the_answer_after_a_tool_call(
    env: dict[str, str], tmp_path: Path
) -> None:
    """At Stop the transcript's last response asked for a tool (``stop_reason: tool_use``): the
    turn's final answer is still to be written, so the hook reads again for a moment and counts
    both requests (seen with the real CLI: 2 requests counted of 3)."""
    import threading

    transcript = tmp_path / "tool.jsonl"
    transcript.write_text('{"type":"user","message":{"role":"user","content":"hi"}}\n')
    done, _ = _hook(env, _payload(PROMPT_JSON, transcript))
    assert done.returncode == 0
    transcript.open("a").write(_assistant("m-tool", 1, stop_reason="tool_use"))
    answer = _assistant("m-tool", 2)
    late = threading.Timer(0.15, lambda: transcript.open("a").write(answer))
    late.start()
    try:
        done, _ = _hook(env, _payload(STOP_JSON, transcript))
    finally:
        late.join()
    assert done.returncode == 0
    [(_, event)] = _queued(env)
    assert event["payload"]["selection_criteria"]["claude_code"]["requests"] == 2


def test_default_command_replaces_an_entry_of_the_older_m_form(tmp_path: Path) -> None:
    """Entries registered before (``python -m provider_events.cli hook claude``) are ours: an
    install with the current default updates them in place, an uninstall removes both forms."""
    from provider_events.integrations._hook import install, is_our_command, uninstall

    command = default_hook_command()
    assert is_our_command(command) and is_our_command(COMMAND)
    assert not is_our_command("python -c 'from provider_events.cli import main; main()'")
    target = tmp_path / "settings.json"
    old_entry = {"type": "command", "command": COMMAND, "timeout": 10}
    target.write_text(json.dumps({"hooks": {"Stop": [{"hooks": [old_entry]}]}}))
    edit = install(command, path=target)
    assert edit.events["Stop"] == "updated"
    hooks = json.loads(target.read_text())["hooks"]
    assert [h["command"] for g in hooks["Stop"] for h in g["hooks"]] == [command]
    assert set(uninstall(path=target).events.values()) == {"removed"}


def test_an_outcomes_job_that_never_ended_is_started_again(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A Stop's detached outcomes job that died (its marker still in the session state, older
    than the retry delay) is started again by the session's next call; the outcomes arrive once
    and the marker is cleared. A fresh marker (a job still running) is left alone."""
    from provider_events.integrations._claude_state import open_session
    from tests.transcripts import assistant_line, usage, write_lines

    state_dir = Path(env["PROVIDER_EVENTS_STATE_DIR"])
    transcript = tmp_path / "projects" / "-work" / f"{SESSION}.jsonl"
    write_lines(
        transcript,
        [
            assistant_line(
                SESSION, "/work", "2025-10-06T10:00:00Z", "m1", "q1", "glm-4.6", usage(5, 6)
            )
        ],
    )
    start = json.dumps({**START_JSON, "transcript_path": str(transcript)}).encode()
    fresh = {"event": "Stop", "transcript_path": str(transcript), "at": time.time()}
    with open_session(state_dir, SESSION) as state:
        state["outcomes_pending"] = fresh
    done, _ = _hook(env, start, wait=False)
    assert done.returncode == 0
    with open_session(state_dir, SESSION) as state:
        assert state["outcomes_pending"] == fresh  # not retried: its job may still be running
        state["outcomes_pending"] = {**fresh, "at": time.time() - 120}  # that job died
    assert _queued(env, COMPLETED) == []
    done, _ = _hook(env, start)  # waits for the job it starts
    assert done.returncode == 0
    [(key, event)] = _queued(env, COMPLETED)
    assert key == SESSION.encode() and event["payload"]["output_tokens"] == 6
    with open_session(state_dir, SESSION) as state:
        assert "outcomes_pending" not in state
    _hook(env, start)
    assert len(_queued(env, COMPLETED)) == 1


def test_calls_that_publish_nothing_load_no_sqlite(env: dict[str, str], tmp_path: Path) -> None:
    """SessionStart and a fresh UserPromptSubmit (the common prompt) only touch the session
    state: not even the SQLite extension is loaded."""
    transcript = tmp_path / "t.jsonl"
    for doc in (START_JSON, PROMPT_JSON):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", HOOK_CODE],
            input=_payload(doc, transcript),
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
        assert "provider_events.integrations._hook_lean" in imported
        assert {"_sqlite3", "sqlite3", "json", "re", "runpy"}.isdisjoint(imported), imported
