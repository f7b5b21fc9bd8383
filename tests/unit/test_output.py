"""Human output that reads well anywhere: piped tables keep names whole, no ``-0.000``.

The commands run as real child processes with stdout on a pipe (as under ``| cat``, in a log
or in CI), from a local event store holding a synthetic week.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provider_events.analytics._render import (
    PIPE_WIDTH,
    _metric,
    fixed,
    make_console,
    money,
    per_million,
)
from provider_events.analytics._synth import MODELS, synthetic_selections
from provider_events.events._envelope import build_provider_selection
from provider_events.settings import load_settings
from provider_events.store._local import LocalEventStore

ROOT = Path(__file__).resolve().parents[2]
END = datetime(2025, 11, 13, 12, 30, tzinfo=UTC)
WINDOW = ["--since", "2025-11-06T12:00Z", "--until", "2025-11-13T13:00Z"]
#: provider/model labels as the tables show them; the long ones are what wrapped at 80 columns.
LABELS = sorted({f"{m.provider}/{m.model}" for m in MODELS}, key=len)


# -- negative zero ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "spec", "expected"),
    [
        (-1e-17, "+.3f", "+0.000"),
        (-0.0, ".3f", "0.000"),
        (-0.0004, ".3f", "0.000"),
        (-0.004, "+.0%", "+0%"),
        (-0.0, ",.2f", "0.00"),
        (-0.5, "+.3f", "-0.500"),
        (-0.0006, ".3f", "-0.001"),
        (0.0, "+.3f", "+0.000"),
        (-1234.5, ",.0f", "-1,234"),
    ],
)
def test_fixed_never_shows_a_negative_zero(value: float, spec: str, expected: str) -> None:
    assert fixed(value, spec) == expected


@given(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
    st.sampled_from(["+.3f", ".3f", ",.2f", ".4f", "+.0%", ",.0f", ".1%"]),
)
def test_fixed_is_format_except_for_the_sign_of_zero(value: float, spec: str) -> None:
    text = fixed(value, spec)
    plain = format(value, spec)
    if any(c in "123456789" for c in plain):
        assert text == plain
    else:
        assert not text.startswith("-")
        assert text.lstrip("+") == plain.lstrip("+-")


def test_the_formatting_helpers_print_zero_without_a_sign() -> None:
    assert money(-0.0) == "$0.00"
    assert money(-1e-9) == "$0.0000"
    assert per_million(-1e-12) == "$0.00"
    assert _metric("quality_score", -1e-9) == "0.000"
    assert _metric("latency_ms", -0.2) == "0 ms"
    assert money(-2.5) == "$-2.50" and money(math.pi) == "$3.14"


# -- width when not a terminal ---------------------------------------------------------------------
def test_console_on_a_pipe_is_wide_unless_columns_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert make_console(file=io.StringIO()).width == PIPE_WIDTH
    monkeypatch.setenv("COLUMNS", "100")
    assert make_console(file=io.StringIO()).width == 100
    assert make_console(file=io.StringIO(), width=60).width == 60


def test_console_on_a_terminal_is_left_to_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the width is rich's own choice (the terminal's), not the pipe width."""
    from rich.console import Console

    monkeypatch.delenv("COLUMNS", raising=False)
    primary, secondary = os.openpty()
    try:
        with open(secondary, "w", closefd=False) as tty:
            assert tty.isatty()
            assert make_console(file=tty).width == Console(file=tty).width != PIPE_WIDTH
    finally:
        os.close(primary)
        os.close(secondary)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local event store holding a synthetic week."""
    folder = tmp_path_factory.mktemp("state")
    settings = load_settings(environ={}, dotenv=Path("/nonexistent"))
    store = LocalEventStore(folder / "events.sqlite3")
    store.add(
        [
            build_provider_selection(settings=settings, **s.fields())
            for s in synthetic_selections(3000, end=END, days=7, seed=5)
        ]
    )
    store.close()
    return folder


def _piped(state: Path, *argv: str, columns: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVIDER_EVENTS_", "COLUMNS"))}
    env.pop("DATABASE_URL", None)
    env.update(
        PROVIDER_EVENTS_STATE_DIR=str(state),
        HOME=str(state / "home"),
        PYTHONPATH=str(ROOT / "src"),
        PYTHONIOENCODING="utf-8",
    )
    if columns is not None:
        env["COLUMNS"] = columns
    done = subprocess.run(
        [sys.executable, "-m", "provider_events.cli", *argv],
        env=env,
        cwd=state,
        capture_output=True,  # stdout is a pipe, as under `| cat`
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _whole(out: str, names: list[str]) -> list[str]:
    """The names that appear whole on a line of ``out``."""
    lines = out.splitlines()
    return [n for n in names if any(n in line for line in lines)]


def _continuations(out: str) -> list[str]:
    """Table body lines that only continue a cell wrapped from the line above: text in the
    first column, nothing in the second (every row of ours has a figure there)."""
    found = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if line.startswith("│") and len(cells) > 3 and cells[1] and not cells[2]:
            found.append(line)
    return found


#: The models every synthetic week of a few thousand selections holds.
COMMON = sorted(f"{m.provider}/{m.model}" for m in MODELS if m.weight >= 1.0)


@pytest.mark.parametrize(
    "argv",
    [("stats", *WINDOW, "--group-by", "model"), ("stats", *WINDOW, "--section", "reasons")],
    ids=["stats-by-model", "stats-reasons"],
)
def test_piped_tables_do_not_wrap(state_dir: Path, argv: tuple[str, ...]) -> None:
    """Through a pipe no table cell is wrapped onto a second line."""
    out = _piped(state_dir, *argv)
    assert "gemini-2.5-flash" in out
    assert not [line for line in out.splitlines() if line.rstrip(" │").endswith("gemini-2.5-f")]
    assert _continuations(out) == []
    assert "-0.000" not in out


def test_piped_stats_by_model_shows_every_label_whole(state_dir: Path) -> None:
    out = _piped(state_dir, "stats", *WINDOW, "--group-by", "model")
    assert _whole(out, COMMON) == COMMON


def test_piped_recommendations_name_models_whole(state_dir: Path) -> None:
    out = _piped(state_dir, "recommend", *WINDOW)
    named = [line for line in out.splitlines() if line.lstrip().startswith(("•", "→"))]
    assert named
    for line in named:
        assert any(label in line for label in LABELS), line
    assert "-0.000" not in out and "(-0%)" not in out


def test_the_same_tables_at_80_columns_do_wrap(state_dir: Path) -> None:
    """The checks above can fail: asked for 80 columns, rich folds the long labels."""
    out = _piped(state_dir, "stats", *WINDOW, "--group-by", "model", columns="80")
    assert _continuations(out) != []
    assert _whole(out, COMMON) != COMMON


def test_piped_demo_keeps_names_whole(tmp_path: Path) -> None:
    out = _piped(
        tmp_path,
        "demo",
        "--local",
        "--events",
        "1500",
        "--end",
        "2025-11-13T12:30Z",
        "--state-dir",
        str(tmp_path / "demo"),
    )
    assert "gemini-2.5-flash/gemini-2.5-flash" in out
    assert "-0.000" not in out
    # Tables fit the pipe width (commands the demo suggests are printed whole, however long
    # the paths in them are).
    tables = [line for line in out.splitlines() if set(line) & set("│┃┏┡└━─")]
    assert tables and [line for line in tables if len(line) > PIPE_WIDTH] == []
