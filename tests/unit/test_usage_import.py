"""Claude Code transcripts -> outcomes: de-duplication, skipping, incremental reads, prices."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from provider_events.errors import ConfigError, InvalidEventError
from provider_events.events._envelope import build_provider_completion
from provider_events.events._models import ProviderCompletedPayloadV1
from provider_events.events._validation import decode_envelope, validate_event
from provider_events.settings import load_settings
from provider_events.usage._answers import open_usage_store, usage_answer
from provider_events.usage._prices import PriceTable
from provider_events.usage._transcripts import (
    default_projects_dirs,
    import_transcripts,
    outcome_id,
    publish_turn_outcomes,
)
from tests.transcripts import (
    SONNET,
    assistant_line,
    standard_folder,
    usage,
    write_lines,
)

SINCE = datetime(2025, 9, 1, tzinfo=UTC)
UNTIL = datetime(2025, 11, 1, tzinfo=UTC)


def _settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {
        "PROVIDER_EVENTS_SINK": "local",
        "PROVIDER_EVENTS_STATE_DIR": str(tmp_path / "state"),
        "HOME": str(tmp_path),
    }
    return load_settings(environ=env, dotenv=Path("/nonexistent/.env"))


def _answer(settings, by: str = "day") -> dict:  # type: ignore[no-untyped-def]
    store = open_usage_store(settings, "local")
    try:
        return usage_answer(store, SINCE, UNTIL, by)
    finally:
        store.close()


def test_import_counts_each_response_once_with_hand_computed_tokens_and_cost(
    tmp_path: Path,
) -> None:
    """Content-block duplicates, a sub-agent replay, synthetic and API-error lines, a bad line
    and a half-written last line: five outcomes, tokens and cost as computed by hand."""
    expected = standard_folder(tmp_path / "projects")
    settings = _settings(tmp_path)
    s = import_transcripts(settings, [tmp_path / "projects"])
    assert (s.published, s.duplicates) == (5, 2)
    assert (s.skipped_synthetic, s.skipped_api_error) == (1, 1)
    assert (s.bad_lines, s.partial_lines, s.unpriced) == (1, 1, 1)
    totals = _answer(settings)["totals"]
    assert totals == {
        "outcomes": expected.outcomes,
        "unpriced": 1,
        "input_tokens": expected.input_tokens,
        "output_tokens": expected.output_tokens,
        "cache_read_tokens": expected.cache_read_tokens,
        "cache_write_tokens": expected.cache_write_tokens,
        "cost_usd": pytest.approx(expected.cost_usd, abs=1e-12),
    }
    by_session = {r["session"]: r for r in _answer(settings, "session")["rows"]}
    assert by_session["s1"]["cost_usd"] == pytest.approx((11100 + 8280 + 6000) / 1e6, abs=1e-12)
    assert by_session["s2"] == {**by_session["s2"], "cost_usd": 0.5, "unpriced": 1}


def test_import_twice_is_import_once(tmp_path: Path) -> None:
    """A second run publishes nothing and changes no figure."""
    standard_folder(tmp_path / "projects")
    settings = _settings(tmp_path)
    import_transcripts(settings, [tmp_path / "projects"])
    first = _answer(settings)
    again = import_transcripts(settings, [tmp_path / "projects"])
    assert again.published == 0 and again.lines == 0
    assert _answer(settings) == first


def test_a_lost_state_file_still_stores_each_outcome_once(tmp_path: Path) -> None:
    """Outcome ids and event ids derive from message.id + requestId: re-reading everything
    (state deleted) adds nothing to the store."""
    standard_folder(tmp_path / "projects")
    settings = _settings(tmp_path)
    import_transcripts(settings, [tmp_path / "projects"])
    first = _answer(settings)
    (settings.state_dir / "usage-import.sqlite3").unlink()
    for extra in ("-wal", "-shm"):
        (settings.state_dir / f"usage-import.sqlite3{extra}").unlink(missing_ok=True)
    again = import_transcripts(settings, [tmp_path / "projects"])
    assert again.published == 5
    assert _answer(settings) == first


def test_appended_lines_and_a_finished_half_line_are_read_next_time(tmp_path: Path) -> None:
    """Only the new part of a file is read; the half-written line, once finished, counts."""
    projects = tmp_path / "projects"
    f = projects / "-p" / "s9.jsonl"
    line = assistant_line("s9", "/p", "2025-10-05T10:00:00Z", "mA", "rA", SONNET, usage(1, 2))
    raw = json.dumps(line).encode()
    write_lines(f, [], tail=raw[:40])
    settings = _settings(tmp_path)
    s = import_transcripts(settings, [projects])
    assert (s.published, s.partial_lines) == (0, 1)
    with f.open("ab") as out:
        out.write(raw[40:] + b"\n")
    s = import_transcripts(settings, [projects])
    assert (s.published, s.bad_lines) == (1, 0)
    write_lines(
        f, [assistant_line("s9", "/p", "2025-10-05T10:01:00Z", "mB", "rB", SONNET, usage(3, 4))]
    )
    s = import_transcripts(settings, [projects])
    assert s.published == 1 and s.lines == 1
    assert _answer(settings)["totals"]["input_tokens"] == 4


def test_a_replaced_file_is_read_again_without_double_counting(tmp_path: Path) -> None:
    """A file with a new inode (rewritten) is read from the start; known responses are skipped."""
    projects = tmp_path / "projects"
    f = projects / "-p" / "s1.jsonl"
    lines = [assistant_line("s1", "/p", "2025-10-05T10:00:00Z", "m1", "r1", SONNET, usage(1, 2))]
    write_lines(f, lines)
    settings = _settings(tmp_path)
    import_transcripts(settings, [projects])
    lines.append(
        assistant_line("s1", "/p", "2025-10-05T10:02:00Z", "m2", "r2", SONNET, usage(5, 6))
    )
    # Written beside the old file, then moved over it: a new inode for certain (unlinking
    # first lets the filesystem hand the same inode number back, which is a rewrite in place).
    fresh = f.with_name("s1.jsonl.new")
    write_lines(fresh, lines)
    old_inode = f.stat().st_ino
    fresh.replace(f)
    assert f.stat().st_ino != old_inode
    s = import_transcripts(settings, [projects])
    assert (s.published, s.duplicates) == (1, 1)


def test_hostile_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    """Negative or huge token counts, NaN cost, bad UTF-8, wrong types: never fatal."""
    projects = tmp_path / "projects"
    f = projects / "-p" / "s1.jsonl"
    good = assistant_line("s1", "/p", "2025-10-05T10:00:00Z", "ok", "r", SONNET, usage(1, 1))
    bad = [
        assistant_line("s1", "/p", "2025-10-05T10:00:00Z", "neg", "r", SONNET, usage(-1, 1)),
        assistant_line("s1", "/p", "2025-10-05T10:00:00Z", "huge", "r", SONNET, usage(2**60, 1)),
        assistant_line("s1", "/p", "not a time", "t", "r", SONNET, usage(1, 1)),
        {**good, "message": {**good["message"], "id": "typ", "usage": {"input_tokens": "x"}}},
    ]
    write_lines(f, [*bad, good])
    with f.open("ab") as out:
        out.write(b'{"type":"assistant","message":{"model":"\xff","usage":{}}}\n{"usage": NaN}\n')
    s = import_transcripts(_settings(tmp_path), [projects])
    assert s.published == 1
    assert s.bad_lines == 6


def test_prices_agree_with_genai_prices_including_tiers_and_1h_writes() -> None:
    """Our cached-rate arithmetic equals genai_prices.calc_price on random usages."""
    from genai_prices import Usage, calc_price

    table = PriceTable()
    when = datetime(2025, 10, 1, tzinfo=UTC)
    rng = random.Random(7)
    cases = [
        ("claude", "anthropic", "claude-sonnet-4-5-20250929"),  # long-context tier at 200k
        ("claude", "anthropic", "claude-opus-4-1-20250805"),
        ("zai", "zai", "glm-4.6"),  # no cache-write price: written tokens at the input rate
    ]
    for provider, pid, model in cases:
        for _ in range(60):
            i, o, r, w5, w1 = (rng.choice([0, rng.randint(0, 300_000)]) for _ in range(5))
            mine = table.price(provider, model, when, i, o, r, w5, w1)
            ref = calc_price(
                Usage(
                    input_tokens=i + r + w5 + w1,
                    output_tokens=o,
                    cache_read_tokens=r,
                    cache_write_tokens=w5 + w1,
                    cache_write_5m_tokens=w5,
                    cache_write_1h_tokens=w1,
                ),
                model,
                provider_id=pid,
                genai_request_timestamp=when,
            ).total_price
            assert mine.source == "calculated"
            assert abs(Decimal(repr(mine.cost_usd)) - ref) < Decimal("1e-12")


def test_unknown_models_and_providers_are_unpriced_never_zero(tmp_path: Path) -> None:
    """No price -> cost None and source 'unpriced'; a known provider is never priced as
    another's (a Claude name served by Z.AI is not Anthropic's price)."""
    table = PriceTable()
    when = datetime(2025, 10, 1, tzinfo=UTC)
    assert table.price("claude", "mystery-model", when, 1, 1, 0, 0, 0).cost_usd is None
    assert table.price("zai", "claude-sonnet-4", when, 1, 1, 0, 0, 0).source == "unpriced"
    assert table.price("my-proxy", SONNET, when, 1, 1, 0, 0, 0).source == "unpriced"


def test_overrides_file_prices_missing_models_with_tiers(tmp_path: Path) -> None:
    """A TOML override prices a model the table lacks, with a long-context tier."""
    f = tmp_path / "prices.toml"
    f.write_text(
        '[[model]]\nmatch = "Mystery-Model"\ninput_mtok = 1\noutput_mtok = 2\n'
        "cache_write_1h_mtok = 4\n[[model.tier]]\nstart = 1000\ninput_mtok = 10\n"
    )
    table = PriceTable(f)
    when = datetime(2025, 10, 1, tzinfo=UTC)
    small = table.price("anyone", "mystery-model", when, 100, 10, 50, 20, 30)
    # 100*1 + 10*2 + 50*1 (read at input) + 20*1 (5m at input) + 30*4 = 310 per million
    assert small.cost_usd == pytest.approx(310e-6, abs=1e-15)
    assert small.version is not None and small.version.startswith("overrides:")
    big = table.price("anyone", "mystery-model", when, 1000, 0, 1, 0, 0)
    assert big.cost_usd == pytest.approx((1000 * 10 + 1 * 10) / 1e6, abs=1e-15)
    f.write_text('[[model]]\nmatch = "x"\ninput_mtok = "nan"\noutput_mtok = 1\n')
    with pytest.raises(ConfigError):
        PriceTable(f)
    f.write_text("not toml [")
    with pytest.raises(ConfigError):
        PriceTable(f)


def test_completed_event_validates_like_the_selection() -> None:
    """Bounded strings, non-negative ints, finite floats, cost null exactly when unpriced."""
    settings = load_settings(environ={}, dotenv=Path("/nonexistent/.env"))
    base = {
        "outcome_id": str(outcome_id("m", "r")),
        "correlation_id": "s",
        "provider_name": "claude",
        "model_name": SONNET,
        "completed_at": "2025-10-01T00:00:00Z",
        "cost_usd": 0.1,
        "cost_source": "reported",
    }
    ok = msgspec.convert(base, ProviderCompletedPayloadV1)
    event = build_provider_completion(ok, settings=settings)
    assert validate_event(event.value).is_valid
    assert decode_envelope(event.value).payload == ok
    assert build_provider_completion(ok, settings=settings).event_id == event.event_id
    for bad in (
        {"input_tokens": -1},
        {"output_tokens": 2**60},
        {"cost_usd": math.inf},
        {"cost_usd": None},
        {"cost_source": "unpriced"},
        {"cost_source": "calculated"},
        {"model_name": "x" * 201},
        {"provider_name": "a\nb"},
        {"latency_ms": -1.0},
    ):
        with pytest.raises((msgspec.ValidationError, InvalidEventError, ValueError)):
            msgspec.convert({**base, **bad}, ProviderCompletedPayloadV1)


def test_default_locations_follow_claude_config_dir_and_xdg(tmp_path: Path) -> None:
    """$CLAUDE_CONFIG_DIR (a comma-separated list), $XDG_CONFIG_HOME/claude, ~/.claude."""
    a, b = tmp_path / "a", tmp_path / "b"
    xdg = tmp_path / "xdg"
    for d in (
        a / "projects",
        b / "projects",
        xdg / "claude" / "projects",
        tmp_path / ".claude" / "projects",
    ):
        d.mkdir(parents=True)
    env = {"CLAUDE_CONFIG_DIR": f"{a}, {b}", "XDG_CONFIG_HOME": str(xdg), "HOME": str(tmp_path)}
    assert default_projects_dirs(env) == [
        a / "projects",
        b / "projects",
        xdg / "claude" / "projects",
        tmp_path / ".claude" / "projects",
    ]


def test_turn_outcomes_read_only_the_new_part_and_remember_the_provider(tmp_path: Path) -> None:
    """The hook's Stop call publishes each turn's responses once, priced for its provider."""
    settings = _settings(tmp_path)
    f = tmp_path / "projects" / "-p" / "s5.jsonl"
    write_lines(
        f,
        [assistant_line("s5", "/p", "2025-10-06T10:00:00Z", "g1", "q1", "glm-4.6", usage(1000, 0))],
    )
    state = settings.state_dir
    assert publish_turn_outcomes(f, "s5", "zai", state, settings=settings) == 1
    assert publish_turn_outcomes(f, "s5", "zai", state, settings=settings) == 0
    write_lines(
        f,
        [assistant_line("s5", "/p", "2025-10-06T10:05:00Z", "g2", "q2", "glm-4.6", usage(0, 1000))],
    )
    assert publish_turn_outcomes(f, "s5", "zai", state, settings=settings) == 1
    rows = _answer(settings, "provider")["rows"]
    # GLM-4.6 at Z.AI: $0.6 in, $2.2 out per million
    assert rows == [{**rows[0], "provider": "zai", "outcomes": 2}]
    assert rows[0]["cost_usd"] == pytest.approx((1000 * 0.6 + 1000 * 2.2) / 1e6, abs=1e-12)


def test_a_failed_publish_loses_nothing_and_repeats_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 2 across files; the second publish fails: the first batch stays done, the
    failed one is published by the next run, and every response is published exactly once."""
    import provider_events.usage._transcripts as transcripts

    monkeypatch.setattr(transcripts, "BATCH", 2)
    standard_folder(tmp_path / "projects")
    settings = _settings(tmp_path)
    sent: list[str] = []
    calls = [0]

    def flaky(payloads):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == 2:
            raise transcripts.TranscriptImportError("broker gone")
        sent.extend(p.message_id for p in payloads)

    with pytest.raises(transcripts.TranscriptImportError):
        import_transcripts(settings, [tmp_path / "projects"], sink=flaky)
    assert len(sent) == 2
    import_transcripts(settings, [tmp_path / "projects"], sink=flaky)
    assert sorted(sent) == ["m1", "m2", "m3", "m4", "m5"]


def test_the_price_cache_spares_a_new_process_the_library(tmp_path: Path) -> None:
    """Rates looked up once are kept in the state directory: a fresh process (the hook at
    Stop) prices the same model and day exactly, without importing genai-prices; a damaged
    cache file is only a miss."""
    import subprocess
    import sys

    when = datetime(2025, 10, 1, tzinfo=UTC)
    first = PriceTable(cache_dir=tmp_path).price("claude", SONNET, when, 10, 20, 30, 40, 50)
    code = (
        "import sys; from datetime import datetime, UTC; from pathlib import Path\n"
        "from provider_events.usage._prices import PriceTable\n"
        f"t = PriceTable(cache_dir=Path({str(tmp_path)!r}))\n"
        f"p = t.price('claude', {SONNET!r}, datetime(2025, 10, 1, tzinfo=UTC), 10, 20, 30, 40, 50)\n"
        "print(repr(p.cost_usd), p.version, 'genai_prices' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [
        repr(first.cost_usd),
        "genai-prices",
        first.version.split()[1],
        "False",
    ]
    for f in tmp_path.glob("price-cache-*.json"):
        f.write_text("{not json")
    again = PriceTable(cache_dir=tmp_path).price("claude", SONNET, when, 10, 20, 30, 40, 50)
    assert again == first


def test_fifos_and_devices_named_jsonl_are_skipped_not_opened(tmp_path: Path) -> None:
    """A FIFO (opening it would block), a symlink to /dev/zero (it never ends) and a dangling
    symlink are skipped and counted; the other files are imported."""
    import os

    projects = tmp_path / "projects" / "-p"
    projects.mkdir(parents=True)
    os.mkfifo(projects / "fifo.jsonl")
    (projects / "zero.jsonl").symlink_to("/dev/zero")
    (projects / "gone.jsonl").symlink_to(tmp_path / "nowhere")
    write_lines(
        projects / "s1.jsonl",
        [assistant_line("s1", "/p", "2025-10-05T10:00:00Z", "m", "r", SONNET, usage(1, 1))],
    )
    s = import_transcripts(_settings(tmp_path), [tmp_path / "projects"])
    assert (s.published, s.skipped_files) == (1, 3)
    assert s.file_error is not None and "gone.jsonl" in s.file_error
