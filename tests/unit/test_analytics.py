"""Analytics without services: derivations, bins, windows, the local store, the commands."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import pytest

from provider_events.analytics._answers import (
    CostRow,
    CriteriaRow,
    GroupRow,
    LocalBackend,
    ReasonRow,
    collect_stats,
    field_names,
)
from provider_events.analytics._model import (
    BIN_MAX,
    BIN_MIN,
    GAMMA,
    ZERO_BIN,
    Window,
    bin_of,
    derive,
    parse_when,
    percentile_from_bins,
)
from provider_events.analytics._synth import Selection, synthetic_selections
from provider_events.cli import main
from provider_events.events._envelope import build_provider_selection
from provider_events.settings import load_settings
from provider_events.store._local import LocalEventStore
from tests.analytics_reference import ReferenceBackend

END = datetime(2025, 11, 13, 12, 30, tzinfo=UTC)
SETTINGS = load_settings(environ={}, dotenv=Path("/nonexistent"))


def _events(selections: list[Selection]) -> list[object]:
    return [build_provider_selection(settings=SETTINGS, **s.fields()) for s in selections]


@pytest.fixture(scope="module")
def week() -> list[Selection]:
    """A small synthetic week (about 1,500 selections)."""
    return list(synthetic_selections(1500, end=END, days=7, seed=21))


@pytest.fixture
def store_dir(tmp_path: Path, week: list[Selection], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local event store holding the week, found through PROVIDER_EVENTS_STATE_DIR."""
    rare = [
        Selection(
            "together",
            "rare/Model-1",
            f"rare-{i}",
            "Experiment",
            {"cost_per_token": 1e-7, "latency_ms": 100, "quality_score": 0.99},
            "acme-us",
            END - timedelta(hours=3 + i),
        )
        for i in range(5)
    ]
    store = LocalEventStore(tmp_path / "events.sqlite3")
    store.add(_events([*week, *rare]))
    store.close()
    monkeypatch.setenv("PROVIDER_EVENTS_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- derivations and bins ------------------------------------------------------------------------
def test_cost_prefers_cost_usd_then_total_tokens_then_input_plus_output() -> None:
    """An event's cost comes from cost_usd, else cost_per_token times the best token count."""
    assert derive({"cost_usd": 0.5, "cost_per_token": 1.0, "total_tokens": 9}).cost_usd == 0.5
    assert derive({"cost_per_token": 2e-6, "total_tokens": 1000, "input_tokens": 1}).cost_usd == (
        2e-6 * 1000
    )
    d = derive({"cost_per_token": 2e-6, "input_tokens": 300, "output_tokens": 100})
    assert d.tokens == 400 and d.cost_usd == 2e-6 * 400
    assert derive({"cost_per_token": 2e-6, "output_tokens": 5}).tokens == 5
    assert derive({"cost_per_token": 2e-6}).cost_usd is None


def test_non_numbers_are_not_measures() -> None:
    """Booleans, strings and nulls in the criteria are ignored, as the SQL ignores them."""
    d = derive({"latency_ms": True, "quality_score": "0.9", "cost_per_token": None})
    assert (d.latency_ms, d.quality_score, d.cost_per_token) == (None, None, None)


def test_bins_hold_their_values() -> None:
    """Bin b holds (GAMMA**(b-1), GAMMA**b]; zero has its own bin; values beyond the bin range
    fall into the end bins, so a histogram never has more than BIN_MAX - BIN_MIN + 2 bins."""
    rng = random.Random(1)
    for _ in range(2000):
        v = rng.lognormvariate(0, 8)
        b = bin_of(v)
        if BIN_MIN < b < BIN_MAX:
            assert GAMMA ** (b - 1) < v * (1 + 1e-12) and v <= GAMMA**b * (1 + 1e-12)
        else:
            assert (b == BIN_MAX and v > GAMMA ** (BIN_MAX - 1)) or (
                b == BIN_MIN and v <= GAMMA**BIN_MIN * (1 + 1e-12)
            )
    assert bin_of(0.0) == ZERO_BIN and bin_of(1.0) == 0
    assert bin_of(1e100) == BIN_MAX and bin_of(1e-100) == BIN_MIN
    assert len({bin_of(10.0**e) for e in range(-300, 300)}) <= BIN_MAX - BIN_MIN + 1


def test_percentiles_from_bins_are_within_one_bin_and_exact_for_one_value() -> None:
    """The nearest-rank quantile of a histogram is within 2 % of the exact one."""
    rng = random.Random(2)
    values = [rng.lognormvariate(6, 0.5) for _ in range(5000)]
    bins: dict[int, tuple[int, float]] = {}
    for v in values:
        n, s = bins.get(bin_of(v), (0, 0.0))
        bins[bin_of(v)] = (n + 1, s + v)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.95, 0.99):
        exact = ordered[math.ceil(q * len(values)) - 1]
        got = percentile_from_bins(bins, q)
        assert got is not None and abs(got - exact) <= 0.02 * exact
    assert percentile_from_bins({bin_of(3e-6): (7, 7 * 3e-6)}, 0.95) == pytest.approx(3e-6)
    assert percentile_from_bins({}, 0.5) is None


# -- windows -------------------------------------------------------------------------------------
def test_windows_are_whole_hours_and_know_their_whole_days() -> None:
    """Bounds widen to whole UTC hours; whole days are found inside the window."""
    w = Window.of(datetime(2025, 1, 1, 5, 17, tzinfo=UTC), datetime(2025, 1, 3, 20, 5, tzinfo=UTC))
    assert (w.since.hour, w.until.hour, w.hours) == (5, 21, 64)
    assert w.whole_days() == (datetime(2025, 1, 2, tzinfo=UTC), datetime(2025, 1, 3, tzinfo=UTC))
    default = Window.of(now=END)
    assert default.until == datetime(2025, 11, 13, 13, tzinfo=UTC)
    assert default.until - default.since == timedelta(days=7)
    with pytest.raises(ValueError, match="empty window"):
        Window.of(END, END - timedelta(hours=2))


def test_when_accepts_durations_dates_and_times() -> None:
    """7d, 90m, ISO dates and times (naive means UTC); anything else is refused clearly."""
    assert parse_when("7d", END) == END - timedelta(days=7)
    assert parse_when("90m", END) == END - timedelta(minutes=90)
    assert parse_when("2025-11-01", END) == datetime(2025, 11, 1, tzinfo=UTC)
    assert parse_when("2025-11-01T10:00+02:00", END) == datetime(2025, 11, 1, 8, tzinfo=UTC)
    with pytest.raises(ValueError, match="duration"):
        parse_when("last tuesday", END)


# -- the local store -----------------------------------------------------------------------------
def test_local_store_is_idempotent_and_mirrors_the_postgres_columns(tmp_path: Path) -> None:
    """Adding the same events twice stores them once, with the envelope's fields as columns."""
    sel = Selection(
        "zai", "glm-4.6", "abc-123", "why", {"latency_ms": 5}, "acme", END - timedelta(hours=1)
    )
    events = _events([sel])
    store = LocalEventStore(tmp_path / "e.sqlite3")
    assert store.add(events) == 1
    assert store.add(events) == 0
    assert store.count() == 1 and store.envelopes() == [events[0].value]  # type: ignore[attr-defined]
    row = (
        store.connection()
        .execute(
            "SELECT event_id, correlation_id, provider_name, model_name, selection_reason, "
            "selection_criteria, selected_at, tenant_id, namespace, source FROM "
            "provider_selection_events"
        )
        .fetchall()
    )
    assert row == [
        (
            events[0].event_id,  # type: ignore[attr-defined]
            "abc-123",
            "zai",
            "glm-4.6",
            "why",
            '{"latency_ms":5}',
            "2025-11-13T11:30:00.000000Z",
            "acme",
            "omninode",
            "omniclaude",
        )
    ]
    total = store.connection().execute(
        "SELECT sum(selections) FROM provider_selection_rollup_hourly"
    )
    assert total.fetchone() == (1,)
    store.close()


def test_a_store_from_before_analytics_is_upgraded_when_opened(
    tmp_path: Path, week: list[Selection]
) -> None:
    """A store holding only the raw envelopes gets its table and rollups filled on open."""
    path = tmp_path / "old.sqlite3"
    events = _events(week[:300])
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE events (event_id TEXT PRIMARY KEY, envelope BLOB NOT NULL, "
            "stored_at REAL NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO events (event_id, envelope, stored_at) VALUES (?, ?, ?)",
            [(e.event_id, e.value, float(i)) for i, e in enumerate(events)],  # type: ignore[attr-defined]
        )
    backend = LocalBackend(path)
    window = Window.of(END - timedelta(days=7), END)
    got = collect_stats(backend, window).to_dict()
    backend.close()
    expected = collect_stats(ReferenceBackend(week[:300]), window).to_dict()
    assert got["total_selections"] == expected["total_selections"] == 300
    assert len(got["groups"]) == len(expected["groups"])
    for row, want in zip(got["groups"], expected["groups"], strict=True):
        assert row.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float):
                assert math.isclose(row[key], value, rel_tol=1e-9), key
            else:
                assert row[key] == value, key


# -- the commands --------------------------------------------------------------------------------
def _csv_header(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text)))


def test_stats_json_and_csv_have_the_documented_fields(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json carries every section; --csv a header of the row type's stable field names."""
    window = ["--since", "2025-11-06T12:00Z", "--until", "2025-11-13T13:00Z"]
    assert main(["stats", *window, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_selections"] > 1000 and data["backend"] == "local"
    assert set(data) >= {"window", "groups", "reasons", "criteria", "trends", "cost", "cost_basis"}
    assert list(data["groups"][0]) == field_names(GroupRow)
    for section, row_type in (
        ("groups", GroupRow),
        ("reasons", ReasonRow),
        ("trends", CriteriaRow),
        ("cost", CostRow),
    ):
        assert main(["stats", *window, "--csv", "--section", section]) == 0
        assert _csv_header(capsys.readouterr().out) == field_names(row_type)


def test_recommend_says_which_model_has_too_little_data(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rarely used model is reported as too little data; CSV has the documented header."""
    window = ["--since", "2025-11-06T12:00Z", "--until", "2025-11-13T13:00Z"]
    assert main(["recommend", *window, "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)["recommendations"]
    status = {r["model_name"]: r["status"] for r in recs}
    assert status["rare/Model-1"] == "too_little_data"
    assert "alternatives" in status.values()
    best = next(r for r in recs if r["status"] == "alternatives")
    alt = best["alternatives"][0]
    assert alt["avg_cost_per_token"] < best["avg_cost_per_token"]
    assert alt["estimated_saving_usd"] > 0 and alt["selections"] >= 30
    from provider_events.cli._recommend import CSV_FIELDS

    assert main(["recommend", *window, "--csv"]) == 0
    assert _csv_header(capsys.readouterr().out) == list(CSV_FIELDS)


def test_people_get_tables_and_a_plain_word_when_there_is_no_data(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Human output names the sections; an empty window says where the data is instead."""
    assert main(["stats", "--since", "2025-11-06T12:00Z", "--until", "2025-11-13T13:00Z"]) == 0
    out = capsys.readouterr().out
    for title in ("Selections by provider", "Top selection reasons", "Latency", "Cost by"):
        assert title in out
    assert main(["stats", "--since", "2030-01-01", "--until", "2030-01-02"]) == 0
    assert "No selections in this window" in capsys.readouterr().out


def test_bad_windows_exit_2_with_one_line(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreadable --since is bad input: exit code 2 and a one-line message."""
    with pytest.raises(SystemExit) as exited:
        main(["stats", "--since", "yesterday-ish"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_report_escapes_reasons_and_loads_nothing(store_dir: Path, tmp_path: Path) -> None:
    """The HTML escapes a hostile reason, has no script and forbids network access."""
    from provider_events.analytics.report import render_report

    hostile = '<script>alert("x")</script>'
    sel = [
        Selection("claude", "m", f"c{i}", hostile, {"latency_ms": 9}, "t", END - timedelta(hours=2))
        for i in range(3)
    ]
    window = Window.of(END - timedelta(days=1), END)
    backend = ReferenceBackend(sel)
    stats = collect_stats(backend, window)
    html = render_report(stats, [], backend.totals(window, ("hour", "provider_name")), now=END)
    assert hostile not in html and "&lt;script&gt;" in html
    assert "<script" not in html.lower()
    assert "default-src 'none'" in unescape(html)
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "--html", "--since", "2025-11-06T12:00Z", "--until", "2025-11-13T13:00Z"],
        ["report", "--since", "2025-11-06T12:00Z", "--until", "2025-11-13T13:00Z", "--html"],
        ["report", "--since", "2025-11-06T12:00Z", "--until", "2025-11-13T13:00Z"],
    ],
    ids=["html-first", "html-last", "no-html"],
)
def test_report_without_a_path_writes_into_the_state_directory(
    store_dir: Path,
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``report --html`` with no FILE writes report.html in the state directory, says where."""
    cwd = store_dir / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(argv) == 0
    target = store_dir / "report.html"
    assert f"wrote {target}" in capsys.readouterr().out
    assert "<svg" in target.read_text(encoding="utf-8")
    assert list(cwd.iterdir()) == []


def test_a_stored_year_9999_event_does_not_crash_an_empty_window_on_the_local_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event stored before the timestamp window existed (year 9999): stats and report over
    an empty window answer instead of raising OverflowError."""
    import dataclasses
    import json as _json

    from provider_events.events import _validation

    event = build_provider_selection(
        settings=SETTINGS,
        provider_name="claude",
        model_name="m",
        selection_reason="r",
        selection_criteria={"latency_ms": 5},
    )
    doc = _json.loads(event.value)
    doc["payload"]["selected_at"] = "9999-12-31T23:30:00Z"
    old = dataclasses.replace(event, value=_json.dumps(doc).encode())
    with monkeypatch.context() as patched:  # as the store accepted it before the bounds
        patched.setattr(_validation, "check_bounds", lambda *a, **k: None)
        store = LocalEventStore(tmp_path / "events.sqlite3")
        assert store.add([old]) == 1
        store.close()
    monkeypatch.setenv("PROVIDER_EVENTS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["stats", "--since", "2h", "--store", "local"]) == 0
    assert main(["stats", "--since", "2h", "--store", "local", "--json"]) == 0
    assert main(["report", "--since", "2h", "--store", "local", "--html", "r.html"]) == 0
