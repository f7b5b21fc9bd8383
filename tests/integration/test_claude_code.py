"""The real Claude Code CLI, offline, with the hook installed: every turn's event names the model
Claude Code asked the API for.

``dev/install-claude-code.sh`` installs ``@anthropic-ai/claude-code`` (2.1.197) from npm into
``.dev/claude-code``; :mod:`tests.claude_mock` plays the Messages API on 127.0.0.1 (streaming
SSE, ``request-id`` headers, tool calls and a sub-agent). Each run has a temporary HOME with
``provider-events hook install`` applied, ``ANTHROPIC_BASE_URL`` at the mock, a dummy key and
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``, and ``claude -p`` with one model setting. The
hook queues its events (relay autostart off, so no relay outlives the test); one
``provider-events relay`` then delivers them to the real broker, where they are read back with
kcat and compared with the requests the mock received.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.claude_mock import MockAnthropic, mock_anthropic
from tests.support import IN_CI, Kcat

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "dev" / "install-claude-code.sh"
MOCK_PORTS = range(38700, 38800)


@dataclass(frozen=True)
class Run:
    """One ``claude -p`` run: its arguments, extra environment and project settings."""

    name: str
    args: tuple[str, ...] = ("-p", "Say hi.")
    env: dict[str, str] = field(default_factory=dict)
    project_settings: dict[str, str] | None = None
    subagent: bool = False


RUNS = [
    Run("default"),
    Run("flag-opus", args=("-p", "Say hi.", "--model", "opus")),
    Run("settings-haiku", project_settings={"model": "haiku"}),
    Run("env-model", env={"ANTHROPIC_MODEL": "glm-4.6"}),
    # Claude Code remaps this one (to the latest Opus): the event must name what it requested.
    Run("env-remapped", env={"ANTHROPIC_MODEL": "claude-opus-4-1-20250805"}),
    Run(
        "tier-override",
        args=("-p", "Hi", "--model", "opus"),
        env={"ANTHROPIC_DEFAULT_OPUS_MODEL": "my-opus"},
    ),
    Run("tool-call", args=("-p", "MOCK_TOOL please", "--allowedTools", "Bash")),
    Run(
        "sub-agent",
        args=("-p", "MOCK_AGENT please", "--allowedTools", "Agent", "Task"),
        subagent=True,
    ),
]
#: The one run the quick variant makes (a tool call and a sub-agent in one turn).
QUICK = Run(
    "quick",
    args=("-p", "MOCK_TOOL then MOCK_AGENT", "--allowedTools", "Bash", "Agent", "Task"),
    env={"ANTHROPIC_DEFAULT_SONNET_MODEL": "my-sonnet"},
    subagent=True,
)


@pytest.fixture(scope="module")
def claude() -> str:
    """The Claude Code binary (installed by ``dev/install-claude-code.sh`` when missing)."""
    if shutil.which("npm") is None and not (ROOT / ".dev" / "claude-code").exists():
        message = "npm is not installed: Claude Code cannot be installed"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    done = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        pytest.fail(f"dev/install-claude-code.sh failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


SELECTED = "omninode.agent.provider.selected.v1"
COMPLETED = "omninode.agent.provider.completed.v1"


def _port() -> int:
    for port in MOCK_PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return 0


@pytest.fixture
def mock() -> Iterator[MockAnthropic]:
    with mock_anthropic(_port()) as server:
        yield server


def _env(kafka_env: dict[str, str], home: Path, mock: MockAnthropic) -> dict[str, str]:
    env = {
        k: v
        for k, v in kafka_env.items()
        if not k.startswith(("ANTHROPIC_", "CLAUDE_", "PROVIDER_EVENTS_HOOK"))
    }
    env.update(
        HOME=str(home),
        ANTHROPIC_BASE_URL=mock.base_url,
        ANTHROPIC_API_KEY="dummy",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        PROVIDER_EVENTS_RELAY_AUTOSTART="false",
        PYTHONPATH=str(ROOT / "src"),
    )
    return env


def _install_hook(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "provider_events.cli", "hook", "install"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def _claude(claude: str, run: Run, env: dict[str, str], project: Path) -> str:
    """Run ``claude`` once in ``project``; returns its session id."""
    project.mkdir(parents=True)
    if run.project_settings is not None:
        (project / ".claude").mkdir()
        (project / ".claude" / "settings.json").write_text(json.dumps(run.project_settings))
    session = str(uuid.uuid4())
    done = subprocess.run(
        [claude, *run.args, "--session-id", session],
        env={**env, **run.env},
        cwd=project,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"{run.name}: {done.stdout[-500:]} {done.stderr[-500:]}"
    return session


def _check(
    runs: list[tuple[Run, str, list[str], list[str]]], kcat: Kcat, topic: str, env: dict[str, str]
) -> list[str]:
    """Deliver the queued events, read them back, and compare each run's events with the models
    the mock was asked for. Returns one summary line per run."""
    relay = subprocess.run(
        [sys.executable, "-m", "provider_events.cli", "relay"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert relay.returncode == 0, relay.stderr
    everything = kcat.consume(topic)
    assert all(m.envelope["payload"]["model_name"] != "unknown" for m in everything)
    # At Stop the hook also publishes the turn's measured outcomes (completion events).
    messages = [m for m in everything if m.envelope["event_type"] == SELECTED]
    outcomes = [m for m in everything if m.envelope["event_type"] == COMPLETED]
    lines = []
    for run, session, main_models, sub_models in runs:
        events = sorted((m for m in messages if m.key == session), key=lambda m: m.offset)
        payloads = [m.envelope["payload"] for m in events]
        measured = [m.envelope["payload"] for m in outcomes if m.key == session]
        assert measured, f"{run.name}: no outcome published at Stop"
        assert {o["model_name"] for o in measured} <= set(main_models) | set(sub_models)
        assert all(o["output_tokens"] > 0 for o in measured), run.name
        turns = [p["selection_criteria"]["claude_code"]["turn"] for p in payloads]
        assert turns == (["subagent", "main"] if run.subagent else ["main"]), run.name
        assert len(set(main_models)) == 1, f"{run.name}: the mock saw {main_models}"
        main = payloads[-1]
        assert main["model_name"] == main_models[0], run.name
        assert main["selection_reason"] == "Claude Code turn: model from the transcript"
        assert (
            main["provider_name"]
            == f"custom:127.0.0.1:{env['ANTHROPIC_BASE_URL'].rsplit(':', 1)[1]}"
        )
        if run.subagent:
            assert payloads[0]["model_name"] == sub_models[0], run.name
            assert payloads[0]["selection_criteria"]["claude_code"]["agent_type"]
        requests = main["selection_criteria"]["claude_code"]["requests"]
        # Claude Code may still be writing the turn's last transcript line when Stop fires (seen
        # on a loaded machine): the turn's model is already known from the lines before it, and
        # the late line's outcome is published at the next Stop, so count at least one request.
        assert 1 <= requests <= len(main_models), run.name
        lines.append(
            f"{run.name}: {len(events)} event(s), model {main['model_name']}"
            + (f", sub-agent {payloads[0]['model_name']}" if run.subagent else "")
            + f", {requests} request(s), {len(measured)} outcome(s)"
        )
    return lines


def _play(
    claude: str,
    runs: list[Run],
    kafka_env: dict[str, str],
    mock: MockAnthropic,
    tmp_path: Path,
) -> tuple[list[tuple[Run, str, list[str], list[str]]], dict[str, str]]:
    home = tmp_path / "home"
    home.mkdir()
    env = _env(kafka_env, home, mock)
    _install_hook(env)
    played = []
    for run in runs:
        seen = len(mock.requests)
        session = _claude(claude, run, env, tmp_path / run.name)
        new = [r for r in mock.requests[seen:] if r.conversation]
        main = [r.model for r in new if not r.subagent]
        sub = [r.model for r in new if r.subagent]
        played.append((run, session, main, sub))
    log = Path(env["PROVIDER_EVENTS_STATE_DIR"]) / "hook.log"
    problems = [
        line
        for line in (log.read_text().splitlines() if log.exists() else [])
        if "not an event this hook is registered for" not in line
    ]
    assert problems == []
    return played, env


def test_each_turn_of_the_real_cli_names_the_model_it_requested(
    claude: str,
    kafka_env: dict[str, str],
    kcat: Kcat,
    topic: str,
    mock: MockAnthropic,
    tmp_path: Path,
) -> None:
    """Default, --model, project settings, ANTHROPIC_MODEL (plain and remapped), a tier override,
    a tool call and a sub-agent: each turn is one event with the model the mock was asked for."""
    played, env = _play(claude, RUNS, kafka_env, mock, tmp_path)
    lines = _check(played, kcat, topic, env)
    print("\n" + "\n".join(lines))
    models = {run.name: main[0] for run, _, main, _ in played}
    assert models["env-model"] == "glm-4.6" and models["tier-override"] == "my-opus"
    assert models["settings-haiku"].startswith("claude-haiku")
    assert models["env-remapped"] != "claude-opus-4-1-20250805"  # Claude Code's remap happened


def test_quick_one_run_with_a_tool_call_and_a_sub_agent(
    claude: str,
    kafka_env: dict[str, str],
    kcat: Kcat,
    topic: str,
    mock: MockAnthropic,
    tmp_path: Path,
) -> None:
    """One run (a tool call then a sub-agent in one turn): a sub-agent event and a turn event,
    both with the model the mock was asked for."""
    played, env = _play(claude, [QUICK], kafka_env, mock, tmp_path)
    [line] = _check(played, kcat, topic, env)
    assert "3 request(s)" in line
