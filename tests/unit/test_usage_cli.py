"""``import claude-code``, ``usage``, ``budget`` and ``statusline`` on the command line (local
store): answers, hostile flags and stdin, one-line errors with exit code 2."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provider_events.cli import main
from tests.transcripts import SONNET, standard_folder


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The local store in a fresh state directory and HOME; a projects folder of fixtures."""
    for var in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "CLAUDE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PROVIDER_EVENTS_SINK", "local")
    monkeypatch.setenv("PROVIDER_EVENTS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    standard_folder(tmp_path / ".claude" / "projects")
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_reads_the_default_location_then_usage_answers(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no flag, ~/.claude/projects is read; ``usage --json`` holds totals and rows;
    ``--csv`` has the documented header."""
    code, out, err = _run(capsys, "import", "claude-code", "--json")
    assert code == 0, err
    assert json.loads(out)["published"] == 5
    code, out, _ = _run(
        capsys,
        "usage",
        "--since",
        "2025-10-01",
        "--until",
        "2025-10-03",
        "--json",
        "--by",
        "provider",
    )
    doc = json.loads(out)
    assert doc["totals"]["outcomes"] == 5 and doc["totals"]["input_tokens"] == 1128
    assert [r["provider"] for r in doc["rows"]] == ["claude"]
    code, out, _ = _run(
        capsys, "usage", "--since", "2025-10-01", "--until", "2025-10-03", "--csv", "--by", "model"
    )
    lines = out.splitlines()
    assert (
        lines[0]
        == "model,outcomes,unpriced,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,cost_usd"
    )
    assert len(lines) == 3
    code, out, _ = _run(capsys, "usage", "--since", "2025-10-01", "--until", "2025-10-03")
    assert code == 0 and "Measured usage by day" in out


@pytest.mark.parametrize(
    "args",
    [
        ["budget", "set", "--daily", "nan"],
        ["budget", "set", "--daily", "inf"],
        ["budget", "set", "--daily", "-1"],
        ["budget", "set", "--daily", "1e20"],
        ["budget", "set", "--daily", "five"],
        ["budget", "set"],
        ["budget", "set", "--daily", "5", "--tenant", "a\nb"],
        ["usage", "--by", "week"],
        ["usage", "--since", "yesterday-ish"],
        ["usage", "--since", "2025-10-03", "--until", "2025-10-01"],
        ["import", "claude-code", "--projects-dir", "/nonexistent/dir"],
        ["import", "claude-code", "--provider", ""],
        ["import", "codex"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    local: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """Every hostile flag: exit 2, one line on stderr, no traceback."""
    with pytest.raises(SystemExit) as caught:
        code = main(args)
        raise SystemExit(code)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_budget_and_statusline_show_todays_spend(
    local: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A budget is kept in the store; the status line prints model, session cost and today's
    spend against it on one line; garbage on stdin is exit 2."""
    assert _run(capsys, "budget", "set", "--daily", "5")[0] == 0
    code, out, _ = _run(capsys, "budget", "show", "--json")
    assert json.loads(out) == [
        {
            "tenant": None,
            "provider": None,
            "daily_usd": 5.0,
            "today_usd": 0.0,
            "ratio": 0.0,
            "over": False,
        }
    ]
    status = {
        "hook_event_name": "Status",
        "session_id": "s1",
        "model": {"id": "claude-opus-4-1", "display_name": "Opus"},
        "workspace": {"current_dir": "/work", "project_dir": "/work"},
        "cost": {"total_cost_usd": 0.42, "total_duration_ms": 1000},
    }
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(status).encode())))
    code, out, _ = _run(capsys, "statusline")
    assert code == 0
    assert out == "Opus | session $0.42 | today $0.00 / $5.00 (0%)\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff not json")))
    code, out, err = _run(capsys, "statusline")
    assert (code, out) == (2, "") and len(err.splitlines()) == 1


def test_stats_shows_measured_cost_beside_declared(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A selection declaring its cost and the measured outcomes of the same model: ``stats``
    lists both per provider and model, with the difference."""
    assert _run(capsys, "import", "claude-code", "-q")[0] == 0
    code, _, err = _run(
        capsys,
        "publish",
        "--provider",
        "claude",
        "--model",
        "claude-sonnet-4-20250514",
        "--reason",
        "declared",
        "--criteria",
        '{"cost_usd": 0.01}',
        "--correlation-id",
        "s1",
        "-q",
    )
    assert code == 0, err
    now = datetime.now(UTC)
    code, out, err = _run(
        capsys,
        "stats",
        "--since",
        "2025-10-01",
        "--until",
        (now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:00"),
        "--json",
    )
    assert code == 0, err
    rows = {(r["provider_name"], r["model_name"]): r for r in json.loads(out)["measured"]}
    sonnet = rows[("claude", "claude-sonnet-4-20250514")]
    assert (sonnet["selections"], sonnet["declared_cost_usd"], sonnet["outcomes"]) == (1, 0.01, 4)
    assert sonnet["measured_cost_usd"] == pytest.approx(0.52538, abs=1e-9)
    assert sonnet["difference_usd"] == pytest.approx(0.51538, abs=1e-9)
    assert rows[("claude", "mystery-model-1")]["measured_cost_usd"] is None
    code, out, _ = _run(capsys, "stats", "--since", "2025-10-01")
    assert code == 0 and "Declared vs measured cost" in out


def test_recommend_says_which_cost_basis_it_used(
    local: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the demo (selections plus transcripts), a model whose responses were measured
    is recommended on the measured basis with its measured cost; others stay declared."""
    assert _run(capsys, "demo", "--local", "--events", "3000")[0] == 0
    monkeypatch.setenv("PROVIDER_EVENTS_STATE_DIR", str(local / "state" / "demo"))
    code, out, err = _run(capsys, "recommend", "--since", "8d", "--json")
    assert code == 0, err
    recs = json.loads(out)["recommendations"]
    measured = [r for r in recs if r["saving_basis"] == "measured"]
    assert measured and all(r["measured_cost_usd"] > 0 for r in measured)
    for r in measured:
        for a in r["alternatives"]:
            assert a["estimated_saving_measured_usd"] == pytest.approx(
                r["measured_cost_usd"] * (1 - a["price_ratio"]), abs=1e-8
            )
    assert all(r["measured_cost_usd"] is None for r in recs if r["saving_basis"] == "declared")


def test_piped_usage_table_shows_every_figure_whole(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through a pipe (no terminal, COLUMNS unset) the usage table is as wide as the other
    commands' tables (200 columns): large token counts, long model names and the unpriced
    note are never cut short with an ellipsis."""
    from tests.transcripts import assistant_line, usage, write_lines

    big = usage(123_456_789, 98_765_432, 1_234_567_890, 987_654_321, 0)
    write_lines(
        local / ".claude" / "projects" / "-work-big" / "big.jsonl",
        [
            assistant_line(
                "big", "/work/big", "2025-10-02T10:00:00.000Z", "b1", "rb1", SONNET, big
            ),
            assistant_line(
                "big",
                "/work/big",
                "2025-10-02T10:00:01.000Z",
                "b2",
                "rb2",
                "an-unpriced-model-with-a-rather-long-name-20251002",
                big,
            ),
        ],
    )
    assert _run(capsys, "import", "claude-code", "-q")[0] == 0
    window = ("--since", "2025-10-01", "--until", "2025-10-03")
    code, out, _ = _run(capsys, "usage", *window, "--by", "model", "--json")
    rows = json.loads(out)["rows"]
    code, table, err = _run(capsys, "usage", *window, "--by", "model")
    assert code == 0, err
    assert "…" not in table
    for row in rows:
        assert row["model"] in table
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            assert f"{row[name]:,}" in table, (name, row)
    assert "(+1 unpriced)" in table
