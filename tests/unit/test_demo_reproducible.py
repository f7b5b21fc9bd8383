"""``demo --seed N --end TIME``: the same synthetic week on every run.

Two real ``demo`` runs (child processes, each with its own HOME and state directory) with the
same seed and end store the same selections; another seed or end gives another week.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provider_events.cli._demo import demo_end

ROOT = Path(__file__).resolve().parents[2]
#: Everything a selection carries; event_id and the envelope timestamp name one emission.
FIELDS = (
    "correlation_id, provider_name, model_name, selection_reason, selection_criteria, "
    "selected_at, tenant_id"
)


def _demo(tmp_path: Path, name: str, *args: str) -> list[tuple[object, ...]]:
    folder = tmp_path / name
    (folder / "home").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_EVENTS_")}
    for key in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        env.pop(key, None)
    env.update(
        HOME=str(folder / "home"),
        PROVIDER_EVENTS_STATE_DIR=str(folder / "state"),
        PYTHONPATH=str(ROOT / "src"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "provider_events.cli", "demo", "--local", "--events", "1200", *args],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    store = folder / "state" / "demo" / "events.sqlite3"
    with sqlite3.connect(store) as db:
        return db.execute(
            f"SELECT {FIELDS} FROM provider_selection_events ORDER BY selected_at, correlation_id"
        ).fetchall()


def test_same_seed_and_end_give_the_same_events(tmp_path: Path) -> None:
    end = ["--seed", "11", "--end", "2025-11-13T10:17:42Z"]
    first = _demo(tmp_path, "a", *end)
    assert len(first) > 1000
    assert _demo(tmp_path, "b", *end) == first
    # The same moment written another way is the same week.
    assert _demo(tmp_path, "c", "--seed", "11", "--end", "2025-11-13T11:17:42+01:00") == first
    assert _demo(tmp_path, "d", "--seed", "12", "--end", "2025-11-13T10:17:42Z") != first
    later = _demo(tmp_path, "e", "--seed", "11", "--end", "2025-11-13T10:47:42Z")
    assert later != first
    assert max(str(row[5]) for row in first) < "2025-11-13T10:17:43"


def test_end_defaults_to_now_to_the_second_and_rejects_what_is_not_a_time() -> None:
    now = datetime(2025, 11, 13, 10, 17, 42, 123456, tzinfo=UTC)
    assert demo_end(None, 7, now) == now.replace(microsecond=0)
    assert demo_end("2025-11-13", 7, now) == datetime(2025, 11, 13, tzinfo=UTC)
    assert demo_end("2h", 7, now) == datetime(2025, 11, 13, 8, 17, 42, 123456, tzinfo=UTC)
    for bad in ("yesterday-ish", "0001-01-01T00:00Z", "9999-12-31T23:59Z"):
        with pytest.raises(ValueError):
            demo_end(bad, 7, now)


@pytest.mark.parametrize(
    "args",
    [
        ["--end", "tomorrow"],
        ["--end", "9999-12-31T23:30Z"],
        ["--days", "nan"],
        ["--days", "inf"],
        ["--days", "1e9"],
    ],
)
def test_bad_end_or_days_exit_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_EVENTS_")}
    env.update(
        HOME=str(tmp_path), PROVIDER_EVENTS_STATE_DIR=str(tmp_path), PYTHONPATH=str(ROOT / "src")
    )
    done = subprocess.run(
        [sys.executable, "-m", "provider_events.cli", "demo", "--local", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
