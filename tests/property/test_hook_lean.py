"""The lean Claude Code hook (``integrations/_hook_lean.py``, standard library only) against the
full hook (``_hook``, ``_turns``, ``_transcript``, ``_providers``, ``_switch``, the msgspec
builder): each piece answers as the full one whenever it answers, and leaves the rest to it;
whole sessions of hook calls, common and hostile, queue the same events both ways (same fields,
same ids where they are deterministic: outcome ids, keys)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider_events.errors import InvalidEventError
from provider_events.events import _envelope
from provider_events.integrations import _claude_model, _hook, _hook_lean, _providers, _switch
from provider_events.integrations._transcript import read_assistant_records
from provider_events.integrations._turns import _when
from provider_events.publish import _enqueue
from provider_events.publish._outbox import Outbox
from provider_events.settings import load_settings
from tests.support import wait_hook_outcomes
from tests.transcripts import assistant_line, synthetic_line, usage, user_line, write_lines

NO_DOTENV = Path("/nonexistent/.env")
FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
json_texts = st.one_of(
    json_values.map(json.dumps),
    json_values.map(lambda v: json.dumps(v, indent=1) + " \n"),
    st.text(alphabet='{}[]":,. \t\n\r0123456789eE+-tfnaluNIy\\u\ufeff', max_size=24),
    st.sampled_from(['{"a":1,"a":2}', "NaN", "[Infinity]", '{"a": -Infinity}', "1 2", "", "  "]),
)


# -- pieces --------------------------------------------------------------------------------------
@FAST
@given(json_texts, st.booleans())
def test_json_reading_matches_json(text: str, strict: bool) -> None:
    """``loads`` answers as ``json.loads`` (and as settings.json's strict reading)."""
    hooks: dict[str, Any] = (
        {"object_pairs_hook": _switch._pairs, "parse_constant": _switch._no_constant}
        if strict
        else {}
    )
    try:
        expected = json.loads(text, **hooks)
    except ValueError:
        with pytest.raises(ValueError):
            _hook_lean.loads(text, strict=strict)
        return
    got = _hook_lean.loads(text, strict=strict)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


@FAST
@given(json_values)
def test_json_writing_matches_json(value: Any) -> None:
    state = {"v": value, "turn": {"at": "x", "offset": 3}}
    assert _hook_lean.dumps_sorted(state) == json.dumps(state, sort_keys=True)


models = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["opus", "Sonnet[1m]", "haiku [x]", "default", "opusplan", " opus\t[1m] "]),
    st.builds(
        lambda a, b, c: f"{a}[{b}]{c}",
        st.text(alphabet="ab [] \t\u2028", max_size=4),
        st.text(alphabet="x[]\n ", max_size=34),
        st.sampled_from(["", " ", "]", "\n"]),
    ),
)


@FAST
@given(models, st.dictionaries(st.sampled_from(["haiku", "sonnet", "opus"]), st.text(max_size=4)))
def test_model_names_resolve_as_the_full_hook(model: str, tiers: dict[str, str]) -> None:
    assert _hook_lean.strip_display_suffix(model) == _claude_model.strip_display_suffix(model)
    assert _hook_lean.resolve_alias(model, tiers) == _claude_model.resolve_alias(model, tiers)


def test_builtin_providers_are_the_full_table() -> None:
    full = {
        name: {
            "base_url": p.base_url,
            "base_url_env": p.base_url_env,
            "models": dict(p.models),
            "criteria": dict(p.criteria),
        }
        for name, p in _providers.BUILTIN_PROVIDERS.items()
    }
    assert full == _hook_lean.PROVIDERS
    assert (_hook_lean.TIERS, _hook_lean.ENV_MODEL_KEYS) == (
        _providers.TIERS,
        _providers.ENV_MODEL_KEYS,
    )
    assert (_hook_lean.MAX_STDIN, _hook_lean.LOG_MAX_BYTES) == (
        _hook.MAX_STDIN,
        _hook.LOG_MAX_BYTES,
    )
    assert _hook_lean.PROJECT_SETTINGS == _claude_model.PROJECT_SETTINGS
    assert _hook_lean.MAX_SETTINGS_BYTES == _switch.MAX_SETTINGS_BYTES
    from provider_events.integrations import _turns

    assert _hook_lean.STOP_WAIT == _turns.STOP_WAIT
    assert _hook_lean.TRANSCRIPT_WAIT == _turns.TRANSCRIPT_WAIT


URLS = [
    *sorted({p.base_url or "" for p in _providers.BUILTIN_PROVIDERS.values()}),
    "https://llm.example.com/v1",
    "HTTPS://API.Z.AI/api/anthropic/",
    " http://127.0.0.1:4000 ",
]
TIER_MODELS = sorted(
    {m for p in _providers.BUILTIN_PROVIDERS.values() for m in p.models.values()} | {"x", ""}
)


@FAST
@given(
    st.dictionaries(
        st.sampled_from([_providers.ENV_BASE_URL, *_providers.ENV_MODEL_KEYS.values()]),
        st.one_of(st.sampled_from(URLS + TIER_MODELS), st.text(max_size=6)),
    ),
    st.sampled_from([{}, {"GEMINI_ANTHROPIC_BASE_URL": "https://gemini.example/"}]),
)
def test_provider_identified_as_the_full_hook(
    merged: dict[str, str], environ: dict[str, str]
) -> None:
    merged = {k: v.strip() for k, v in merged.items() if v.strip()}  # as detect_selection does
    match = _providers.identify(merged, _providers.BUILTIN_PROVIDERS, environ)
    chosen = match.provider or match.closest
    try:
        name, provider = _hook_lean.identify(merged, environ)
    except _hook_lean._Unsure:
        assert chosen is None  # a custom: name, worded by the full path
        return
    assert chosen is not None and name == match.name == chosen.name
    assert provider == _hook_lean.PROVIDERS[chosen.name]


line_docs = st.one_of(
    st.builds(
        lambda model, side, ids: assistant_line(
            "s", "/w", "2026-01-01T00:00:00Z", ids, ids, model, usage(1, 2), sidechain=side
        ),
        st.one_of(
            st.sampled_from(["claude-opus-4-1", " glm-4.6 ", "<synthetic>", "m" * 201]), models
        ),
        st.booleans(),
        st.sampled_from(["a", "", "x" * 201]),
    ),
    st.just(user_line("s", "/w", "2026-01-01T00:00:00Z")),
    st.just(synthetic_line("s", "/w", "2026-01-01T00:00:00Z")),
    st.just({"type": "assistant", "message": "not an object"}),
    st.just({"type": "assistant", "message": {"model": 3}}),
)
raw_lines = st.one_of(
    line_docs.map(lambda d: json.dumps(d).encode() + b"\n"),
    st.sampled_from([b"\n", b"  \n", b"[1]\n", b"{bad\n", b'{"type":"assistant"', b"\xff\xfe\n"]),
    st.binary(max_size=8),
)


@FAST
@given(st.lists(raw_lines, max_size=6), st.integers(min_value=-3, max_value=400))
def test_transcript_read_as_the_full_reader(
    tmp_path_factory: Any, lines: list[bytes], offset: int
) -> None:
    path = tmp_path_factory.mktemp("t") / "t.jsonl"
    path.write_bytes(b"".join(lines))
    full = read_assistant_records(path, max(offset, 0))
    try:
        records, end, first = _hook_lean.read_records(str(path), max(offset, 0))
    except _hook_lean._Unsure:
        return
    assert (end, first) == (full.offset, full.first_timestamp)
    assert records == [
        (r.model, r.message_id, r.request_id, r.sidechain, r.stop_reason) for r in full.records
    ]


settings_texts = st.one_of(
    json_texts.map(str.encode),
    st.sampled_from(
        [
            b"",
            b"\xef\xbb\xbf{}",
            b'{"env": []}',
            b'{"env": {"A": "1"}, "model": "opus"}',
            b'{"model": "a", "model": "b"}',
            b"\xff",
            b'{"env": {"ANTHROPIC_BASE_URL": "https://api.z.ai/api/anthropic"}}',
        ]
    ),
)


@FAST
@given(settings_texts)
def test_settings_read_as_the_full_reader(tmp_path_factory: Any, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("s") / "settings.json"
    path.write_bytes(raw)
    try:
        doc = _hook_lean.read_settings_doc(str(path))
    except _hook_lean._Unsure:
        return
    assert doc == _switch.read_settings(path).doc


def test_settings_kinds_the_lean_reader_leaves_alone(tmp_path: Path) -> None:
    missing = tmp_path / "none.json"
    assert _hook_lean.read_settings_doc(str(missing)) == _switch.read_settings(missing).doc == {}
    os.mkfifo(tmp_path / "fifo")
    for odd in (tmp_path, tmp_path / "fifo"):
        with pytest.raises(_hook_lean._Unsure):
            _hook_lean.read_settings_doc(str(odd))


# -- the builder with the hook's fields ----------------------------------------------------------
NOW = datetime(2026, 6, 1, 12, 0, 0, 250000, tzinfo=UTC)
at_texts = st.one_of(
    st.datetimes(
        min_value=datetime(1999, 12, 30), max_value=datetime(2026, 6, 3), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat(timespec="microseconds").replace("+00:00", "Z")),
    st.sampled_from(
        [
            "2026-06-01T12:00:00.000000Z",
            "2024-02-29T00:00:00.000001Z",
            "2023-02-29T00:00:00.000001Z",
            "2026-06-02T12:00:00.250000Z",
            "2026-06-02T12:00:00.250001Z",
            "2000-01-01T00:00:00.000000Z",
            "1999-12-31T23:59:59.999999Z",
            "2026-06-01T12:00:00Z",
            "2026-06-01T12:00:00.123456+00:00",
            "2026-13-01T12:00:00.000000Z",
            "2026-06-01T24:00:00.000000Z",
            "2026-06-01T12:00:60.000000Z",
            "2026-06-01T12:00:00.12345\uff16Z",  # a full-width digit
            "",
        ]
    ),
)
details = st.fixed_dictionaries(
    {"turn": st.sampled_from(["main", "interrupted"]), "model_source": st.text(max_size=40)},
    optional={
        "prompt_id": st.text(max_size=130),
        "requests": st.integers(min_value=0, max_value=2**70),
        "models": st.lists(st.text(max_size=201), max_size=3),
        "deep": json_values,
        "tiny": st.sampled_from([5e-324, 1e-310, 2.5e-308, 0.0]),
    },
)


@FAST
@given(
    at_texts, details, st.sampled_from([p.criteria for p in _providers.BUILTIN_PROVIDERS.values()])
)
def test_hook_event_built_as_the_full_builder(at: str, detail: dict[str, Any], base: Any) -> None:
    """``selected_at`` as the hook records it and the nested ``claude_code`` criteria: the lean
    builder writes the full builder's bytes whenever it accepts, and refuses what it refuses."""
    env = {"HOME": "/home/u", "PROVIDER_EVENTS_TOPIC": "t.x"}
    s = _enqueue.lean_settings(env, "/nonexistent")
    assert s is not None
    criteria = {**base, "claude_code": detail}
    fields = {
        "provider_name": "claude",
        "model_name": "claude-opus-4-1",
        "selection_reason": "Claude Code turn: model from the transcript",
        "correlation_id": "0f2c-session",
        "selection_criteria": criteria,
    }
    now_ns = int(NOW.timestamp()) * 1_000_000_000 + NOW.microsecond * 1000
    full = _full_at(env, fields, at)
    if full is None:
        assert _enqueue.build(s, **fields, selected_at=at, now_ns=now_ns) is None, (at, detail)
        return
    lean = _enqueue.build(s, **fields, selected_at=at, now_ns=now_ns, event_id=full[0])
    if lean is None:  # the lean builder may leave a valid event to the full one
        return
    assert lean[2] == full[4]
    assert lean[1] == full[3]
    assert lean[3] == _envelope.header_list(full)


def _full_at(env: dict[str, str], fields: dict[str, Any], at: str) -> Any:
    """The full builder at :data:`NOW` (its clock patched), as the hook calls it."""
    original = _envelope._now
    _envelope._now = lambda tz=None: NOW  # type: ignore[assignment]
    try:
        return _envelope.provider_selection_parts(
            settings=load_settings(environ=env, dotenv=NO_DOTENV), selected_at=_when(at), **fields
        )
    except InvalidEventError:
        return None
    finally:
        _envelope._now = original  # type: ignore[assignment]


def test_hook_selected_at_common_case() -> None:
    """The hook's own timestamps (now, earlier today) are taken by the lean builder."""
    env = {"HOME": "/home/u"}
    s = _enqueue.lean_settings(env, "/nonexistent")
    assert s is not None
    for delta in (timedelta(0), timedelta(hours=-3), timedelta(days=-400)):
        at = (datetime.now(UTC) + delta).isoformat(timespec="microseconds").replace("+00:00", "Z")
        event = _enqueue.build(
            s,
            provider_name="zai",
            model_name="glm-4.6",
            selection_reason="r",
            correlation_id="s",
            selection_criteria={
                "cost_per_token": 6e-7,
                "claude_code": {"turn": "main", "prompt_id": "p" * 36},
            },
            selected_at=at,
        )
        assert event is not None
        assert json.loads(event[2])["payload"]["selected_at"] == (
            at if not at.endswith(".000000Z") else at[:19] + "Z"
        )


# -- whole sessions, both ways -------------------------------------------------------------------
SESSION = "5b0c8d3e-1f6a-4c2b-9d7e-0a1b2c3d4e5f"
TS = "2026-12-06T10:00:0{}Z"


def _env(root: Path, **extra: str) -> dict[str, str]:
    home = root / "home"
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", ""),
        "PROVIDER_EVENTS_STATE_DIR": str(root / "state"),
        "PROVIDER_EVENTS_RELAY_AUTOSTART": "false",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
    }
    env.update(extra)
    return env


def _call(env: dict[str, str], doc: Any, lean: bool, tmp: Path) -> None:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    stdin = tmp / "stdin"
    stdin.write_bytes(data)
    fd = os.open(stdin, os.O_RDONLY)
    try:
        if lean:
            _hook_lean.run(fd, env)
        else:
            _hook.run_claude_hook(fd, env)
    finally:
        os.close(fd)
    wait_hook_outcomes(Path(env["PROVIDER_EVENTS_STATE_DIR"]))


def _events(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["PROVIDER_EVENTS_STATE_DIR"]) / "outbox.sqlite3"
    if not path.exists():
        return []
    outbox = Outbox(path)
    try:
        rows = [(row.key, json.loads(row.value)) for row in outbox.batch()]
    finally:
        outbox.close()
    out = []
    for key, event in rows:
        assert key == event["correlation_id"].encode()
        event.pop("event_id")
        event.pop("timestamp")
        payload = event["payload"]
        if payload.get("selection_criteria", {}).get("claude_code", {}).get("turn") != "subagent":
            payload.pop("selected_at", None)  # the prompt's own time, in each run
        event["payload"].pop("host", None)
        out.append(event)
    return out


def _session(
    root: Path, scenario: str, lean: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[dict[str, Any]], str]:
    root.mkdir()
    monkeypatch.chdir(root)
    project = root / "project"
    transcript = root / "projects" / f"{SESSION}.jsonl"
    agent_file = root / "projects" / SESSION / "subagents" / "agent-a7.jsonl"
    extra: dict[str, str] = {}
    settings_doc: Any = {"model": "sonnet", "env": {"DISABLE_TELEMETRY": "1"}}
    if scenario == "zai":
        zai = _providers.BUILTIN_PROVIDERS["zai"]
        settings_doc = _switch.apply_provider(settings_doc, zai, "sk-zai", zai.base_url)
    elif scenario == "custom-url":
        extra["ANTHROPIC_BASE_URL"] = "https://user:pw@llm.example.com:8443/v1"
    elif scenario == "alias-env":
        extra["ANTHROPIC_MODEL"] = "opus[1m]"
        extra["ANTHROPIC_DEFAULT_OPUS_MODEL"] = "claude-opus-4-5"
    elif scenario == "providers-file":
        path = root / "providers.toml"
        path.write_text("[zai]\ncriteria = { cost_per_token = 0.000001 }\n")
        extra["PROVIDER_EVENTS_PROVIDERS_FILE"] = str(path)
    elif scenario == "project-model":
        (project / ".claude").mkdir(parents=True)
        (project / ".claude" / "settings.json").write_text('{"model": "haiku [x]"}')
        settings_doc = {}
    env = _env(root, **extra)
    user_settings = Path(env["HOME"]) / ".claude" / "settings.json"
    if scenario == "malformed-settings":
        user_settings.write_bytes(b'{"model": "opus", "model": "haiku"}')
    elif scenario == "bom-settings":
        user_settings.write_bytes(b'\xef\xbb\xbf{"model": "opus"}')
    else:
        user_settings.write_text(json.dumps(settings_doc))
    base = {"session_id": SESSION, "cwd": str(project), "transcript_path": str(transcript)}
    tmp = root / "io"
    tmp.mkdir()
    model = "glm-4.6" if scenario == "zai" else "claude-sonnet-4-5-20250929"
    calls: list[Any] = [
        {
            **base,
            "hook_event_name": "SessionStart",
            "source": "startup",
            "model": "claude-opus-4-1[1m]",
        },
        {**base, "hook_event_name": "UserPromptSubmit", "prompt_id": "p1", "prompt": "hi"},
        ("lines", [user_line(SESSION, "/w", TS.format(1))]),
        (
            "lines",
            [assistant_line(SESSION, "/w", TS.format(2), "m1", "r1", model, usage(100, 7, 5, 3))],
        ),
        {**base, "hook_event_name": "Stop", "prompt_id": "p1", "stop_hook_active": False},
        {**base, "hook_event_name": "Stop", "prompt_id": "p1", "stop_hook_active": True},
        {**base, "hook_event_name": "UserPromptSubmit", "prompt_id": "p2"},
        {**base, "hook_event_name": "UserPromptSubmit", "prompt_id": "p3"},  # p2 interrupted
        (
            "lines",
            [
                assistant_line(
                    SESSION, "/w", TS.format(3), "m2", "r2", model, usage(9, 1), sidechain=True
                )
            ],
        ),
        (
            "lines",
            [
                assistant_line(
                    SESSION, "/w", TS.format(4), "m3", "r3", "claude-haiku-4-5", usage(1, 1)
                )
            ],
        ),
        ("lines", [assistant_line(SESSION, "/w", TS.format(5), "m4", "r4", model, usage(2, 2))]),
        {**base, "hook_event_name": "Stop", "prompt_id": "p3"},
        {**base, "hook_event_name": "Stop", "prompt_id": "p4"},  # no recorded prompt
        {**base, "hook_event_name": "UserPromptSubmit", "prompt_id": "p5"},
        (
            "agent",
            [
                assistant_line(
                    SESSION,
                    "/w",
                    "2026-12-06T10:00:06.123Z",
                    "m5",
                    "r5",
                    "claude-haiku-4-5",
                    usage(3, 4),
                    sidechain=True,
                    agent_id="a7",
                )
            ],
        ),
        {
            **base,
            "hook_event_name": "SubagentStop",
            "prompt_id": "p5",
            "agent_id": "a7",
            "agent_type": "general-purpose",
            "agent_transcript_path": str(agent_file),
        },
        (
            "lines",
            [
                assistant_line(
                    SESSION,
                    "/w",
                    TS.format(7),
                    "m6",
                    "r6",
                    "claude-opus-4-1",
                    usage(5, 5),
                    sidechain=True,
                )
            ],
        ),
        {**base, "hook_event_name": "SubagentStop", "agent_id": "a8"},  # no file: sidechain lines
        ("lines", [assistant_line(SESSION, "/w", TS.format(8), "m7", "r7", model, usage(6, 6))]),
        {**base, "hook_event_name": "Stop", "prompt_id": "p5"},
    ]
    if scenario == "hostile":
        calls += [
            b"",
            b"\x00 not json",
            b"[1, 2]",
            b'{"hook_event_name": "Stop"}',
            {**base, "hook_event_name": "PreToolUse"},
            {**base, "session_id": "x" * 129, "hook_event_name": "UserPromptSubmit"},
            {**base, "hook_event_name": "UserPromptSubmit", "prompt_id": "\x07bell"},
            ("raw", b'{"type":"assistant","message":{"model":"m\\u0001x","id":"z"}}\n{oops\n'),
            {
                **base,
                "hook_event_name": "UserPromptSubmit",
                "prompt_id": "p5",
                "transcript_path": "/dev/zero",
            },
            {**base, "hook_event_name": "UserPromptSubmit", "prompt_id": "p6"},
            {**base, "hook_event_name": "SubagentStop", "agent_id": "a1"},
            {**base, "hook_event_name": "Stop", "model": {"id": "x"}},
            b'{"session_id": "s", "hook_event_name": "Stop", "cwd": 5, "transcript_path": []}',
        ]
    for call in calls:
        if isinstance(call, tuple):
            if call[0] == "agent":
                write_lines(agent_file, call[1])
            elif call[0] == "raw":
                transcript.parent.mkdir(parents=True, exist_ok=True)
                with transcript.open("ab") as fh:
                    fh.write(call[1])
            else:
                write_lines(transcript, call[1])
            continue
        _call(env, call, lean, tmp)
    log = Path(env["PROVIDER_EVENTS_STATE_DIR"]) / "hook.log"
    return _events(env), log.read_text() if log.exists() else ""


SCENARIOS = [
    "plain",
    "zai",
    "custom-url",
    "alias-env",
    "providers-file",
    "project-model",
    "malformed-settings",
    "bom-settings",
    "hostile",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_sessions_queue_the_same_events_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: str
) -> None:
    monkeypatch.setattr(_hook, "_watchdog", lambda seconds, log: None)
    monkeypatch.setattr(_hook_lean, "_watchdog", lambda seconds, log: None)
    handed: list[str] = []
    resume = _hook.resume_claude_hook

    def counted(*args: Any, **kwargs: Any) -> Any:
        handed.append("resume")
        return resume(*args, **kwargs)

    monkeypatch.setattr(_hook, "resume_claude_hook", counted)
    full, full_log = _session(tmp_path / "full", scenario, False, monkeypatch)
    lean, lean_log = _session(tmp_path / "lean", scenario, True, monkeypatch)
    assert [e["event_type"] for e in lean] == [e["event_type"] for e in full]
    assert lean == full
    kinds = [e["event_type"].rsplit(".", 2)[-2] for e in full]
    assert kinds.count("selected") >= 3 and kinds.count("completed") >= 3, kinds
    subagents = [
        e["payload"] for e in lean if "agent" in str(e["payload"].get("selection_criteria"))
    ]
    assert subagents and all(p.get("selected_at") for p in subagents)
    if scenario in ("plain", "zai", "alias-env", "project-model"):
        assert handed == [], "the common cases stay on the lean path"
    if scenario in ("custom-url", "providers-file", "malformed-settings", "bom-settings"):
        assert handed, "left to the full path"

    # the same problems are logged (the lean path may log a transcript problem once more
    # before handing a turn to the full path)
    def problems(text: str, root: Path) -> set[str]:
        return {line.split(" ", 2)[2].replace(str(root), "<root>") for line in text.splitlines()}

    assert problems(full_log, tmp_path / "full") <= problems(lean_log, tmp_path / "lean")


state_files = st.one_of(
    st.dictionaries(
        st.sampled_from(["turn", "offset", "session_model", "agents", "x"]), json_values
    )
    .map(json.dumps)
    .map(str.encode),
    st.sampled_from(
        [b"", b"[]", b"{bad", b"\xff", b'{"agents": {' + b'"a": 1,' * 70 + b'"z": 2}}']
    ),
    st.just(b'{"offset": 1, "pad": "' + b"x" * (64 * 1024) + b'"}'),
)


@FAST
@given(state_files, st.sampled_from(["turn", "offset", "session_model"]), json_values)
def test_session_state_written_as_the_full_hook(
    tmp_path_factory: Any, raw: bytes, key: str, value: Any
) -> None:
    """The same file after the same change, from any previous content; the same state seen."""
    from provider_events.integrations._claude_state import open_session, session_path

    full_dir, lean_dir = tmp_path_factory.mktemp("full"), tmp_path_factory.mktemp("lean")
    seen = []
    for folder in (full_dir, lean_dir):
        path = session_path(folder, "s-1")
        path.parent.mkdir(parents=True)
        path.write_bytes(raw)
    assert _hook_lean.session_path(str(lean_dir), "s-1") == str(session_path(lean_dir, "s-1"))
    with open_session(full_dir, "s-1") as state:
        seen.append(dict(state))
        state[key] = value
    _hook_lean.update_session(
        str(lean_dir),
        "s-1",
        lambda state: (seen.append(dict(state)), state.__setitem__(key, value)),
    )
    assert json.dumps(seen[0], sort_keys=True) == json.dumps(seen[1], sort_keys=True)
    assert session_path(full_dir, "s-1").read_bytes() == session_path(lean_dir, "s-1").read_bytes()
