"""``provider-events switch``: settings.json edits, status, key handling and the queued event.

Every test runs with a temporary ``HOME``; events are queued to a temporary outbox with the
relay's autostart off, so nothing here needs a broker (the broker side is in
``tests/integration/test_switch_hook.py``).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provider_events.cli import main
from provider_events.integrations._providers import (
    BUILTIN_PROVIDERS,
    ENV_KEYS,
    ENV_MODEL_KEYS,
    TIERS,
    identify,
    load_providers,
)
from provider_events.integrations._switch import status as switch_status
from provider_events.publish._outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = list(BUILTIN_PROVIDERS)
KEY_VARS = sorted({p.api_key_env for p in BUILTIN_PROVIDERS.values() if p.api_key_env})
TOKEN = "sk-unit-7d1c4a9e2b5f8036"

#: A realistic settings.json: other settings around ``env``, one of our keys already in the
#: middle of ``env`` (it must keep its place), non-ASCII text, numbers, booleans and null.
ORIGINAL: dict[str, Any] = {
    "$schema": "https://json.schemastore.org/claude-code-settings.json",
    "model": "sonnet",
    "env": {
        "BASH_DEFAULT_TIMEOUT_MS": "60000",
        "ANTHROPIC_DEFAULT_SONNET_MODEL": "old-model",
        "DISABLE_TELEMETRY": "1",
    },
    "permissions": {"allow": ["Bash(npm run lint)", "Read(~/.zshrc)"], "deny": []},
    "hooks": {
        "PostToolUse": [
            {"matcher": "Edit", "hooks": [{"type": "command", "command": "ruff format ."}]}
        ]
    },
    "statusLine": {"type": "command", "command": "echo café ✓", "padding": 0},
    "cleanupPeriodDays": 30,
    "includeCoAuthoredBy": False,
    "apiKeyHelper": None,
    "feedbackSurveyRate": 0.25,
}


def _pairs(value: Any) -> Any:
    """Nested ``(key, value)`` lists: equal only when keys, values and key order all match."""
    return json.loads(json.dumps(value), object_pairs_hook=list)


def _dump(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def _expected(provider_name: str, token: str = TOKEN) -> dict[str, Any]:
    """ORIGINAL after switching to ``provider_name``, written out by hand."""
    doc = json.loads(json.dumps(ORIGINAL))
    env = doc["env"]
    p = BUILTIN_PROVIDERS[provider_name]
    if p.native:
        del env["ANTHROPIC_DEFAULT_SONNET_MODEL"]
        return doc
    env["ANTHROPIC_DEFAULT_SONNET_MODEL"] = p.models["sonnet"]  # keeps its place
    env["ANTHROPIC_BASE_URL"] = p.base_url
    env["ANTHROPIC_AUTH_TOKEN"] = token
    env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] = p.models["haiku"]
    env["ANTHROPIC_DEFAULT_OPUS_MODEL"] = p.models["opus"]
    return doc


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary HOME with no provider keys, no providers file and an isolated outbox."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PROVIDER_EVENTS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PROVIDER_EVENTS_RELAY_AUTOSTART", "false")
    # configured, so events go to the outbox whatever listens at the default address
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    for var in (
        *KEY_VARS,
        *ENV_KEYS,
        "ANTHROPIC_MODEL",
        "CLAUDE_CONFIG_DIR",
        "XDG_CONFIG_HOME",
        "PROVIDER_EVENTS_PROVIDERS_FILE",
        "PROVIDER_EVENTS_OUTBOX",
        "PROVIDER_EVENTS_TOPIC",
        "GEMINI_ANTHROPIC_BASE_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield home


@pytest.fixture
def settings_file(home: Path) -> Path:
    """``~/.claude/settings.json`` holding ORIGINAL, formatted as Claude Code writes it."""
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_bytes(_dump(ORIGINAL))
    return path


@pytest.fixture
def keys_set(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In ``home``, every provider's API key variable holds TOKEN."""
    for var in KEY_VARS:
        monkeypatch.setenv(var, TOKEN)


def _queued(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "state" / "outbox.sqlite3"
    if not path.exists():
        return []
    outbox = Outbox(path)
    try:
        return [json.loads(row.value) for row in outbox.batch()]
    finally:
        outbox.close()


def _switch(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["switch", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.usefixtures("keys_set")
def test_switch_writes_exactly_the_expected_keys(
    name: str, settings_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A switch changes only the five env keys; every other setting, key order and style stays."""
    code, out, err = _switch(capsys, name)
    assert (code, err) == (0, "")
    assert "Restart Claude Code for changes to take effect" in out
    text = settings_file.read_text(encoding="utf-8")
    assert _pairs(json.loads(text)) == _pairs(_expected(name))
    assert settings_file.read_bytes() == _dump(_expected(name))  # indentation, newline, UTF-8


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.usefixtures("keys_set")
def test_status_after_each_switch(
    name: str, settings_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status`` names the provider just switched to, and never shows the token."""
    assert _switch(capsys, name)[0] == 0
    code, out, err = _switch(capsys, "status")
    assert (code, err) == (0, "")
    display = BUILTIN_PROVIDERS[name].display_name
    assert out.splitlines()[0] == f"Active provider: {name} ({display})"
    assert TOKEN not in out
    st = switch_status(load_providers(), path=settings_file)
    assert st.match.exact and st.match.provider is not None
    assert st.match.provider.name == name
    assert st.token_set is (not BUILTIN_PROVIDERS[name].native)


@pytest.mark.usefixtures("keys_set")
def test_every_switch_in_sequence_then_back_to_claude(
    settings_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Switching through every provider in turn leaves, after each, exactly that provider's keys."""
    for name in [*PROVIDERS[1:], *reversed(PROVIDERS)]:
        assert _switch(capsys, name)[0] == 0
        assert _pairs(json.loads(settings_file.read_text())) == _pairs(_expected(name))
        assert switch_status(load_providers(), path=settings_file).match.name == name


def test_round_trip_to_claude_restores_a_file_without_env_byte_for_byte(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """zai then claude on a file that had no env block gives back the original bytes."""
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    original = {k: v for k, v in ORIGINAL.items() if k != "env"}
    path.write_bytes(_dump(original))
    monkeypatch.setenv("ZAI_API_KEY", TOKEN)
    assert _switch(capsys, "zai")[0] == 0
    assert list(json.loads(path.read_text()))[-1] == "env"  # added at the end
    assert _switch(capsys, "claude")[0] == 0
    assert path.read_bytes() == _dump(original)


@pytest.mark.parametrize(
    "label", ["four spaces", "tab", "one line", "crlf", "no final newline", "ascii escapes"]
)
def test_file_style_is_kept(
    label: str, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Indentation, separators, line endings, final newline and escaping follow the file's own."""
    dumps: dict[str, Any] = {
        "four spaces": lambda d: json.dumps(d, indent=4, ensure_ascii=False) + "\n",
        "tab": lambda d: json.dumps(d, indent="\t", ensure_ascii=False) + "\n",
        "one line": lambda d: json.dumps(d, ensure_ascii=False),
        "crlf": lambda d: (json.dumps(d, indent=2, ensure_ascii=False) + "\n").replace(
            "\n", "\r\n"
        ),
        "no final newline": lambda d: json.dumps(d, indent=2, ensure_ascii=False),
        "ascii escapes": lambda d: json.dumps(d, indent=2) + "\n",
    }
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(dumps[label](ORIGINAL), encoding="utf-8", newline="")
    monkeypatch.setenv("GEMINI_API_KEY", TOKEN)
    assert _switch(capsys, "gemini-flash")[0] == 0
    assert path.read_bytes().decode("utf-8") == dumps[label](_expected("gemini-flash"))


def test_malformed_settings_are_reported_and_left_untouched(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad JSON, duplicate keys, NaN, a non-object, a bad env, bad UTF-8: exit 2, same bytes."""
    monkeypatch.setenv("ZAI_API_KEY", TOKEN)
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    cases = {
        b'{\n  "model": "opus",\n}\n': "line 3 column 1",
        b'{"env": {"A": "1"}, "env": {}}': "duplicate key 'env'",
        b'{"cleanupPeriodDays": NaN}': "NaN",
        b'["not", "an", "object"]': "must hold a JSON object",
        b'{"env": ["A=1"]}': '"env" must be an object',
        b'{"model": "caf\xe9"}': "not valid UTF-8",
        b'{"model": "opus"': "not valid JSON",
    }
    for raw, why in cases.items():
        path.write_bytes(raw)
        for command in ("zai", "claude", "status"):
            code, out, err = _switch(capsys, command)
            assert code == 2, (raw, command)
            assert out == ""
            assert err.count("\n") == 1 and err.startswith("error: ")
            assert str(path) in err and why in err
            assert path.read_bytes() == raw
        assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]
    assert _queued(home.parent) == []


@pytest.mark.parametrize("name", [n for n in PROVIDERS if not BUILTIN_PROVIDERS[n].native])
def test_missing_key_writes_nothing(
    name: str, settings_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the provider's key variable the switch fails in one line and touches nothing."""
    before = settings_file.read_bytes()
    code, out, err = _switch(capsys, name)
    var = BUILTIN_PROVIDERS[name].api_key_env
    assert (code, out) == (2, "")
    assert err == (
        f"error: {var} is not set: export your {BUILTIN_PROVIDERS[name].display_name} API key "
        f"as {var} and run again; nothing was changed\n"
    )
    assert settings_file.read_bytes() == before
    assert sorted(p.name for p in settings_file.parent.iterdir()) == ["settings.json"]
    assert _queued(settings_file.parents[2]) == []


def test_blank_or_multiline_key_is_refused_without_echo(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key of spaces counts as missing; one with inner whitespace is refused, never shown."""
    before = settings_file.read_bytes()
    monkeypatch.setenv("OPENROUTER_API_KEY", "   ")
    code, _, err = _switch(capsys, "openrouter")
    assert code == 2 and "OPENROUTER_API_KEY is not set" in err
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-abc\ndef-secretpart")
    code, out, err = _switch(capsys, "openrouter")
    assert code == 2 and "whitespace or control characters" in err
    assert "secretpart" not in out + err and "sk-or" not in out + err
    assert settings_file.read_bytes() == before


def test_unknown_provider_is_bad_input(
    settings_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown name lists the choices, exits 2 and changes nothing."""
    before = settings_file.read_bytes()
    code, out, err = _switch(capsys, "gpt-5")
    assert (code, out) == (2, "")
    assert "unknown provider 'gpt-5'" in err and "gemini-2.5-flash" in err
    assert settings_file.read_bytes() == before


def test_backup_holds_previous_bytes_with_mode_0600(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """settings.json.bak has the previous content, is 0600, and the token file becomes 0600."""
    settings_file.chmod(0o644)
    before = settings_file.read_bytes()
    monkeypatch.setenv("TOGETHER_API_KEY", TOKEN)
    assert _switch(capsys, "together")[0] == 0
    backup = settings_file.with_name("settings.json.bak")
    assert backup.read_bytes() == before
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings_file.stat().st_mode) == 0o600
    leftovers = [p.name for p in settings_file.parent.iterdir()]
    assert sorted(leftovers) == ["settings.json", "settings.json.bak"]


def test_missing_file_is_created_and_claude_on_nothing_writes_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No settings.json: a switch creates it (0600, no backup); ``claude`` leaves it absent."""
    path = home / ".claude" / "settings.json"
    code, out, _ = _switch(capsys, "claude")
    assert code == 0 and "already uses" in out
    assert not path.exists()
    monkeypatch.setenv("ZAI_API_KEY", TOKEN)
    assert _switch(capsys, "zai")[0] == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["env"]["ANTHROPIC_BASE_URL"] == (
        "https://api.z.ai/api/anthropic"
    )
    assert not path.with_name("settings.json.bak").exists()


def test_symlinked_settings_stay_a_symlink(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A settings.json symlinked from a dotfiles folder is edited through the link."""
    dotfiles = home / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "claude-settings.json"
    target.write_bytes(_dump(ORIGINAL))
    link = home / ".claude" / "settings.json"
    link.parent.mkdir()
    link.symlink_to(target)
    monkeypatch.setenv("ZAI_API_KEY", TOKEN)
    assert _switch(capsys, "zai")[0] == 0
    assert link.is_symlink()
    assert target.read_bytes() == _dump(_expected("zai"))


def test_claude_config_dir_and_settings_flag(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``CLAUDE_CONFIG_DIR`` moves the file, ``--settings`` names it outright."""
    monkeypatch.setenv("ZAI_API_KEY", TOKEN)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(home / "cfg"))
    assert _switch(capsys, "zai")[0] == 0
    assert (home / "cfg" / "settings.json").is_file()
    other = home / "other.json"
    assert _switch(capsys, "zai", "--settings", str(other))[0] == 0
    assert json.loads(other.read_text())["env"]["ANTHROPIC_DEFAULT_SONNET_MODEL"] == "glm-4.6"
    assert not (home / ".claude").exists()


def test_switch_queues_the_selection_event(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The event names the provider, its sonnet-tier model, the guide's reason and criteria."""
    monkeypatch.setenv("GEMINI_API_KEY", TOKEN)
    code, out, _ = _switch(capsys, "gemini-flash")
    assert code == 0
    [event] = _queued(settings_file.parents[2])
    payload = event["payload"]
    assert payload["provider_name"] == "gemini-flash"
    assert payload["model_name"] == "gemini-1.5-flash-002"
    assert payload["selection_reason"] == "User requested switch to Gemini Flash"
    assert payload["selection_criteria"] == {
        "cost_per_token": 0.000001,
        "latency_ms": 50,
        "quality_score": 0.85,
    }
    assert f"queued for delivery ({event['event_id']})" in out
    assert TOKEN not in json.dumps(event)


def test_no_event_flag_queues_nothing(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--no-event`` switches without publishing."""
    monkeypatch.setenv("ZAI_API_KEY", TOKEN)
    assert _switch(capsys, "zai", "--no-event")[0] == 0
    assert _queued(settings_file.parents[2]) == []


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("PROVIDER_EVENTS_DELIVERY_TIMEOUT", "soon"),
        ("PROVIDER_EVENTS_OUTBOX", "/proc/provider-events-cannot-write/outbox.sqlite3"),
    ],
)
def test_publish_problem_never_fails_the_switch(
    var: str,
    value: str,
    settings_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bad publisher configuration or an unwritable outbox is one warning; the switch stands."""
    monkeypatch.setenv("ZAI_API_KEY", TOKEN)
    monkeypatch.setenv(var, value)
    code, out, err = _switch(capsys, "zai")
    assert code == 0
    assert err.startswith("warning: selection event not recorded:") and err.count("\n") == 1
    assert "Restart Claude Code for changes to take effect" in out
    assert _pairs(json.loads(settings_file.read_text())) == _pairs(_expected("zai"))


def test_quiet_prints_nothing(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--quiet`` prints nothing on success."""
    monkeypatch.setenv("ZAI_API_KEY", TOKEN)
    assert _switch(capsys, "zai", "--quiet") == (0, "", "")


def test_list_marks_the_active_provider_and_hides_keys(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``list`` shows every provider once, marks the active one and says only set/not set."""
    monkeypatch.setenv("OPENROUTER_API_KEY", TOKEN)
    assert _switch(capsys, "openrouter")[0] == 0
    code, out, _ = _switch(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[1] if line.startswith("*") else line.split()[0] for line in lines] == (
        PROVIDERS
    )
    assert next(line for line in lines if line.startswith("*")).split()[1] == "openrouter"
    assert "OPENROUTER_API_KEY (set)" in out and "ZAI_API_KEY (not set)" in out
    assert TOKEN not in out


def test_status_of_a_partial_or_foreign_setup(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A known base URL with other models is "custom (closest: …)"; a foreign URL is
    ``custom:`` and its host."""
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    env = {"ANTHROPIC_BASE_URL": "https://api.z.ai/api/anthropic/", "ANTHROPIC_MODEL": "x"}
    path.write_text(json.dumps({"env": env}))
    code, out, _ = _switch(capsys, "status")
    assert code == 0
    assert out.splitlines()[0] == "Active provider: custom (closest: zai; models differ)"
    assert "ANTHROPIC_MODEL=x" in out
    path.write_text(json.dumps({"env": {"ANTHROPIC_BASE_URL": "https://llm.example.com/v1"}}))
    assert _switch(capsys, "status")[1].splitlines()[0] == (
        "Active provider: custom:llm.example.com (no definition matches; see 'switch add')"
    )


def test_builtin_providers_are_distinguishable() -> None:
    """No two providers share base URL and all three models, so status can tell them apart."""
    seen = {
        (p.base_url, tuple(p.models[t] for t in TIERS)): p.name for p in BUILTIN_PROVIDERS.values()
    }
    assert len(seen) == len(BUILTIN_PROVIDERS)
    for p in BUILTIN_PROVIDERS.values():
        env = {} if p.native else {"ANTHROPIC_BASE_URL": p.base_url or ""}
        env.update({ENV_MODEL_KEYS[t]: p.models[t] for t in TIERS} if not p.native else {})
        assert identify(env).name == p.name


def test_gemini_base_url_comes_from_its_variable(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``GEMINI_ANTHROPIC_BASE_URL`` sets the proxy; status still knows it without the variable."""
    monkeypatch.setenv("GEMINI_API_KEY", TOKEN)
    monkeypatch.setenv("GEMINI_ANTHROPIC_BASE_URL", "https://gemini-proxy.internal:8443")
    assert _switch(capsys, "gemini-pro")[0] == 0
    env = json.loads(settings_file.read_text())["env"]
    assert env["ANTHROPIC_BASE_URL"] == "https://gemini-proxy.internal:8443"
    monkeypatch.delenv("GEMINI_ANTHROPIC_BASE_URL")
    assert _switch(capsys, "status")[1].startswith("Active provider: gemini-pro (Gemini Pro)")


def test_providers_file_overrides_and_adds(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TOML file changes a built-in's model and adds a provider; both switch and show up."""
    config = settings_file.parents[1] / ".config" / "provider-events" / "providers.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        '[zai]\nmodels = { sonnet = "glm-4.6-plus" }\n\n'
        '[my-proxy]\ndisplay_name = "My proxy"\nbase_url = "https://llm.example.com/anthropic/"\n'
        'models = { haiku = "s", sonnet = "m", opus = "l" }\napi_key_env = "MY_PROXY_KEY"\n'
        "criteria = { quality_score = 0.5 }\n"
    )
    monkeypatch.setenv("ZAI_API_KEY", TOKEN)
    monkeypatch.setenv("MY_PROXY_KEY", TOKEN)
    assert _switch(capsys, "zai")[0] == 0
    env = json.loads(settings_file.read_text())["env"]
    assert env["ANTHROPIC_DEFAULT_SONNET_MODEL"] == "glm-4.6-plus"
    assert env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "glm-4.5-air"
    assert _switch(capsys, "status")[1].startswith("Active provider: zai (Z.ai GLM)")
    assert _switch(capsys, "my-proxy")[0] == 0
    env = json.loads(settings_file.read_text())["env"]
    assert env["ANTHROPIC_BASE_URL"] == "https://llm.example.com/anthropic"
    assert _switch(capsys, "status")[1].startswith("Active provider: my-proxy (My proxy)")
    events = _queued(settings_file.parents[2])
    assert events[-1]["payload"]["model_name"] == "m"
    assert events[-1]["payload"]["selection_criteria"] == {"quality_score": 0.5}


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("providers.toml", "[zai\n", "malformed"),
        ("providers.json", '{"zai": {"colour": "blue"}}', "unknown field(s) colour"),
        ("providers.json", '{"new": {"base_url": "https://x.example"}}', "needs base_url"),
        ("providers.json", '{"claude": {"base_url": "https://x.example"}}', "takes no base_url"),
        ("providers.json", '{"list": {}}', "cannot be a provider name"),
        ("providers.json", '{"zai": {"base_url": "ftp://x"}}', "http(s) URL"),
    ],
)
def test_bad_providers_file_is_bad_input(
    name: str,
    content: str,
    why: str,
    settings_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A malformed providers file is one line naming it, exit 2, settings.json untouched."""
    path = settings_file.parents[1] / name
    path.write_text(content)
    monkeypatch.setenv("PROVIDER_EVENTS_PROVIDERS_FILE", str(path))
    monkeypatch.setenv("ZAI_API_KEY", TOKEN)
    before = settings_file.read_bytes()
    code, out, err = _switch(capsys, "zai")
    assert (code, out) == (2, "")
    assert err.startswith("error: providers file: PROVIDER_EVENTS_PROVIDERS_FILE") and why in err
    assert settings_file.read_bytes() == before


def test_concurrent_edit_is_not_overwritten(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file changed between read and write is re-read, so the other writer's change survives."""
    from provider_events.integrations import _switch as switch_module

    monkeypatch.setenv("ZAI_API_KEY", TOKEN)
    real_read = switch_module.read_settings
    calls: list[int] = []

    def read_then_someone_writes(path: Path | None = None) -> Any:
        settings = real_read(path)
        if not calls:
            doc = json.loads(settings_file.read_text())
            doc["theme"] = "dark"
            settings_file.write_bytes(_dump(doc))
        calls.append(1)
        return settings

    monkeypatch.setattr(switch_module, "read_settings", read_then_someone_writes)
    outcome = switch_module.switch(BUILTIN_PROVIDERS["zai"])
    assert outcome.changed and len(calls) == 2
    doc = json.loads(settings_file.read_text())
    assert doc["theme"] == "dark"
    assert doc["env"]["ANTHROPIC_DEFAULT_OPUS_MODEL"] == "glm-4.6"


def test_wrapper_script_takes_the_same_arguments(settings_file: Path) -> None:
    """scripts/toggle-claude-provider.sh runs ``switch`` from the checkout with its arguments."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["ZAI_API_KEY"] = TOKEN
    script = ROOT / "scripts" / "toggle-claude-provider.sh"
    done = subprocess.run(
        [str(script), "zai", "--no-event"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Restart Claude Code for changes to take effect" in done.stdout
    assert _pairs(json.loads(settings_file.read_text())) == _pairs(_expected("zai"))
    status = subprocess.run(
        [str(script), "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert status.stdout.startswith("Active provider: zai (Z.ai GLM)")
    missing = subprocess.run(
        [str(script), "together"], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "TOGETHER_API_KEY is not set" in missing.stderr


# -- switch add ------------------------------------------------------------------------------------
def test_add_defines_a_provider_that_switch_and_status_then_know(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``switch add`` appends a TOML table to the providers file (created, comments of an
    existing one kept); the new provider then switches and is recognised by status."""
    config = settings_file.parents[1] / ".config" / "provider-events" / "providers.toml"
    config.parent.mkdir(parents=True)
    config.write_text('# my providers\n[zai]\nmodels = { sonnet = "glm-4.6-plus" }\n')
    code, out, err = _switch(
        capsys,
        "add",
        "local-proxy",
        "--base-url",
        "http://127.0.0.1:8080/",
        "--model",
        "big",
        "--haiku-model",
        "small",
        "--key-env",
        "LOCAL_PROXY_KEY",
    )
    assert (code, err) == (0, "")
    assert "Added provider local-proxy" in out and str(config) in out
    text = config.read_text()
    assert text.startswith("# my providers\n[zai]\n")
    assert '["local-proxy"]\nbase_url = "http://127.0.0.1:8080/"' in text
    monkeypatch.setenv("LOCAL_PROXY_KEY", TOKEN)
    assert _switch(capsys, "local-proxy", "--no-event")[0] == 0
    env = json.loads(settings_file.read_text())["env"]
    assert (env["ANTHROPIC_DEFAULT_HAIKU_MODEL"], env["ANTHROPIC_DEFAULT_OPUS_MODEL"]) == (
        "small",
        "big",
    )
    assert _switch(capsys, "status")[1].startswith("Active provider: local-proxy")


def test_add_to_a_json_providers_file(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JSON providers file gets the definition under its ``providers`` object."""
    path = home / "providers.json"
    path.write_text('{"providers": {}}')
    monkeypatch.setenv("PROVIDER_EVENTS_PROVIDERS_FILE", str(path))
    args = ["add", "p1", "--base-url", "https://x.example", "--model", "m", "--key-env", "K"]
    assert _switch(capsys, *args)[0] == 0
    assert json.loads(path.read_text())["providers"]["p1"]["models"] == dict.fromkeys(
        ("haiku", "sonnet", "opus"), "m"
    )


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["add", "zai", "--base-url", "https://x", "--model", "m", "--key-env", "K"], "exists"),
        (["add", "p", "--base-url", "ftp://x", "--model", "m", "--key-env", "K"], "http(s) URL"),
        (["add", "p", "--base-url", "https://x", "--key-env", "K"], "--model"),
        (["add", "p", "--base-url", "https://x", "--model", "m"], "--key-env"),
        (["add", "p", "--base-url", "https://x", "--model", "m", "--key-env", "1X"], "variable"),
        (["add", "P", "--base-url", "https://x", "--model", "m", "--key-env", "K"], "lower case"),
        (["add", "list", "--base-url", "https://x", "--model", "m", "--key-env", "K"], "cannot be"),
        (["add"], "needs a NAME"),
        (["zai", "--model", "m"], "only goes with 'switch add'"),
        (["status", "extra"], "only goes with 'switch add'"),
    ],
)
def test_add_refuses_bad_input_and_writes_nothing(
    args: list[str], why: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad ``switch add`` input (or its options elsewhere): one line, exit 2, no file."""
    code, out, err = _switch(capsys, *args)
    assert (code, out) == (2, "") and why in err and err.count("\n") == 1
    assert not (home / ".config").exists()
