"""The guide's snippets in ``examples/`` run as they are, and their events reach the broker.

Each example runs as a child process with the test's own topic (``PROVIDER_EVENTS_TOPIC`` from
the ``kafka_env`` fixture); kcat reads the topic back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from provider_events.publish._outbox import Outbox

if TYPE_CHECKING:
    from tests.support import Kcat, KcatMessage

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def wait_for(
    kcat: Kcat, topic: str, predicate: Callable[[KcatMessage], bool], timeout: float = 120.0
) -> KcatMessage:
    """The first message on ``topic`` matching ``predicate``, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    problem = ""
    while True:
        try:
            for message in kcat.consume(topic):
                if predicate(message):
                    return message
        except subprocess.CalledProcessError as exc:  # e.g. partition leaders still moving
            problem = f"; last kcat error: {(exc.stderr or '').strip()[:200]}"
        if time.monotonic() > deadline:
            pytest.fail(f"no matching event on {topic} after {timeout:g}s{problem}")
        time.sleep(0.25)


@pytest.fixture
def env(kafka_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The test's topic and outbox, run from an unrelated directory to prove the paths work."""
    child = {k: v for k, v in kafka_env.items() if not k.startswith("ANTHROPIC_")}
    child.pop("PYTHONPATH", None)
    child["HOME"] = str(tmp_path)
    return child


def run(
    env: dict[str, str], *argv: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        input=stdin.decode() if stdin is not None else None,
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_async_example(env: dict[str, str], kcat: Kcat, topic: str) -> None:
    """examples/python_async.py publishes the guide's gemini-flash selection and exits 0."""
    done = run(env, sys.executable, str(EXAMPLES / "python_async.py"))
    assert done.returncode == 0, done.stderr
    message = wait_for(kcat, topic, lambda m: True)
    payload = message.envelope["payload"]
    assert (payload["provider_name"], payload["model_name"]) == (
        "gemini-flash",
        "gemini-1.5-flash-002",
    )
    assert payload["selection_reason"] == "Cost-effective for high-volume pattern matching"
    assert payload["selection_criteria"] == {
        "cost_per_token": 0.000001,
        "latency_ms": 50,
        "quality_score": 0.85,
    }
    assert message.key == payload["correlation_id"]


def test_python_sync_example(env: dict[str, str], kcat: Kcat, topic: str) -> None:
    """examples/python_sync.py publishes the guide's claude selection and exits 0."""
    done = run(env, sys.executable, str(EXAMPLES / "python_sync.py"))
    assert done.returncode == 0, done.stderr
    payload = wait_for(kcat, topic, lambda m: True).envelope["payload"]
    assert (payload["provider_name"], payload["model_name"]) == (
        "claude",
        "claude-3-5-sonnet-20241022",
    )
    assert (payload["selection_reason"], payload["selection_criteria"]) == ("High quality", {})


def test_shell_integration_example(env: dict[str, str], kcat: Kcat, topic: str) -> None:
    """examples/shell_integration.sh runs the guide's bash snippet; its event arrives."""
    done = run(env, "bash", str(EXAMPLES / "shell_integration.sh"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("delivered: event_id=")
    event_id = done.stdout.split("event_id=")[1].split()[0]
    message = wait_for(kcat, topic, lambda m: m.headers.get("event_id") == event_id)
    payload = message.envelope["payload"]
    assert (payload["provider_name"], payload["model_name"]) == (
        "gemini-flash",
        "gemini-1.5-flash-002",
    )
    assert payload["selection_reason"] == "User requested switch to Gemini Flash"
    assert payload["selection_criteria"] == {"cost_per_token": 0.000001, "latency_ms": 50}


def test_shell_integration_example_survives_an_unreachable_broker(env: dict[str, str]) -> None:
    """With Kafka unreachable the snippet still exits 0 (``|| true``); the event is spooled."""
    env = {
        **env,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "PROVIDER_EVENTS_DELIVERY_TIMEOUT": "1",
        "PROVIDER_EVENTS_RELAY_AUTOSTART": "false",
    }
    done = run(env, "bash", str(EXAMPLES / "shell_integration.sh"))
    assert done.returncode == 0
    assert "safe in the outbox" in done.stderr
    outbox = Outbox(Path(env["PROVIDER_EVENTS_STATE_DIR"]) / "outbox.sqlite3")
    try:
        assert outbox.pending() == 1
    finally:
        outbox.close()


def test_claude_hook_example(env: dict[str, str], kcat: Kcat, topic: str) -> None:
    """examples/claude_hook.py reads hook JSON, prints nothing, exits 0; the event is keyed by
    the session and names the provider and model from the hook's environment."""
    session = str(uuid.uuid4())
    hook = {
        "session_id": session,
        "transcript_path": f"/tmp/{session}.jsonl",
        "cwd": "/work",
        "hook_event_name": "UserPromptSubmit",
        "prompt": "hello",
    }
    env = {
        **env,
        "ANTHROPIC_BASE_URL": "https://api.z.ai/api/anthropic",
        "ANTHROPIC_DEFAULT_SONNET_MODEL": "glm-4.6",
    }
    done = run(
        env, sys.executable, str(EXAMPLES / "claude_hook.py"), stdin=json.dumps(hook).encode()
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    message = wait_for(kcat, topic, lambda m: m.key == session)
    payload = message.envelope["payload"]
    assert (payload["provider_name"], payload["model_name"]) == ("api.z.ai", "glm-4.6")
    assert payload["selection_reason"] == "Hook-based provider selection"
    assert payload["correlation_id"] == session


def test_claude_hook_example_with_garbage_still_exits_zero(env: dict[str, str]) -> None:
    """The example hook never fails the prompt: garbage on stdin is reported on stderr, exit 0."""
    done = run(env, sys.executable, str(EXAMPLES / "claude_hook.py"), stdin=b"not json")
    assert (done.returncode, done.stdout) == (0, "")
    assert "JSONDecodeError" in done.stderr
