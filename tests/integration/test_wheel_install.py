"""The wheel works installed: built with ``python -m build``, installed into a fresh venv, run
from another directory with its own HOME and state directory.

What a ``pipx install .`` / ``uv tool install .`` user gets: no source tree on ``sys.path``, the
migrations read from package data, the hook registered with the venv's own interpreter. The
children get a bare environment (``PATH=/usr/bin:/bin``, no ``PYTHONPATH``, nothing of this
repo's venv); dependencies come from PyPI (or pip's cache) as for a user.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import create_topic, wait_hook_outcomes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = sorted(p.name for p in (ROOT / "src/provider_events/store/migrations").glob("*.sql"))
#: an assistant line as Claude Code 2.1.197 writes it (the real client's recorded transcript)
ASSISTANT_LINE = next(
    line
    for line in (
        Path(__file__).resolve().parents[1]
        / "fixtures"
        / "claude_code_2.1.197"
        / "transcript.jsonl"
    )
    .read_text()
    .splitlines()
    if json.loads(line)["type"] == "assistant"
)
HOOK_JSON = {
    "session_id": "3b241101-e2bb-4255-8caf-4136c566a962",
    "transcript_path": "/tmp/t.jsonl",
    "cwd": "/tmp",
    "hook_event_name": "SessionStart",
    "source": "startup",
}


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    base: Path

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "provider-events"

    def run(
        self,
        *argv: str,
        cwd: Path,
        stdin: str | None = None,
        timeout: float = 180,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The installed command, from ``cwd``, in a bare environment plus ``env``."""
        child = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.base / "home"),
            "PROVIDER_EVENTS_STATE_DIR": str(self.base / "state"),
            "PROVIDER_EVENTS_RELAY_AUTOSTART": "false",
            "LANG": "C.UTF-8",
            **(env or {}),
        }
        return subprocess.run(
            [str(self.command), *argv],
            cwd=cwd,
            env=child,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _tool_env() -> dict[str, str]:
    """For building and installing: the caller's network settings (proxy, certificates, pip
    configuration), none of this repository's Python paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _checked(argv: list[str], timeout: float, cwd: Path | None = None) -> None:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=_tool_env(), cwd=cwd
    )
    assert done.returncode == 0, f"{shlex.join(argv)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"  # only what the wheel is built from: no .venv, no build/ in ROOT
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src",
        source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
    )
    dist = base / "dist"
    _checked(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)],
        timeout=600,
        cwd=base,
    )
    (wheel,) = dist.glob("provider_events-*.whl")
    venv = base / "venv"
    _checked([sys.executable, "-m", "venv", str(venv)], timeout=300)
    _checked(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", str(wheel)],
        timeout=900,
        cwd=base,
    )
    for folder in ("home", "state", "elsewhere"):
        (base / folder).mkdir()
    yield Installed(wheel, venv, base)


def test_the_wheel_ships_the_migrations_and_the_command(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    shipped = sorted(
        Path(n).name for n in names if n.startswith("provider_events/store/migrations/")
    )
    assert MIGRATIONS and shipped == MIGRATIONS
    assert "provider_events/py.typed" in names
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert (
        "provider-events = provider_events.cli:main"
        in zipfile.ZipFile(installed.wheel).read(entry).decode()
    )
    assert installed.command.is_file()


def test_the_installed_package_is_the_venvs_not_the_source_tree(installed: Installed) -> None:
    done = subprocess.run(
        [
            str(installed.venv / "bin/python"),
            "-c",
            "import provider_events; print(provider_events.__file__)",
        ],
        cwd=installed.base / "elsewhere",
        env={"PATH": "/usr/bin:/bin", "HOME": str(installed.base / "home")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    location = Path(done.stdout.strip())
    assert location.is_relative_to(installed.venv), location
    assert not location.is_relative_to(ROOT)


def test_demo_and_report_from_another_directory(installed: Installed) -> None:
    where = installed.base / "elsewhere"
    demo = installed.run(
        "demo", "--local", "--events", "800", "--seed", "3", "--end", "2025-11-13T12:00Z", cwd=where
    )
    assert demo.returncode == 0, demo.stderr + demo.stdout
    store = installed.base / "state" / "demo" / "events.sqlite3"
    assert str(store) in demo.stdout and "Selections by provider" in demo.stdout
    assert (store.parent / "report.html").stat().st_size > 10_000
    # report with no path: into the state directory, and it says where.
    report = installed.run(
        "report",
        "--html",
        "--since",
        "2025-11-06",
        "--until",
        "2025-11-14",
        cwd=where,
        env={"PROVIDER_EVENTS_STATE_DIR": str(store.parent)},
    )
    assert report.returncode == 0, report.stderr
    assert f"wrote {store.parent / 'report.html'}" in report.stdout
    assert list(where.iterdir()) == []


def test_migrate_publish_consume_stats_against_the_real_services(
    installed: Installed, database_url: str, kafka_bootstrap: str
) -> None:
    """migrate reads the migrations from the installed package into an empty schema; events
    published and consumed by the installed command are counted by its stats."""
    import psycopg

    schema = f"wheel_{uuid.uuid4().hex[:12]}"
    topic = create_topic(kafka_bootstrap, f"test.wheel.{uuid.uuid4().hex[:12]}")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    services = {
        "DATABASE_URL": database_url,
        "PGOPTIONS": f"-c search_path={schema}",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PROVIDER_EVENTS_TOPIC": topic,
    }
    where = installed.base / "elsewhere"
    try:
        migrate = installed.run("migrate", cwd=where, env=services)
        assert migrate.returncode == 0, migrate.stderr
        assert f"{len(MIGRATIONS)} applied" in migrate.stdout
        assert all(name.removesuffix(".sql") in migrate.stdout for name in MIGRATIONS)
        again = installed.run("migrate", cwd=where, env=services)
        assert again.returncode == 0 and "up to date" in again.stdout, again.stdout
        lines = "".join(
            json.dumps(
                {
                    "provider": "gemini-2.5-flash",
                    "model": "gemini-2.5-flash",
                    "reason": f"wheel test {i}",
                    "criteria": {"cost_per_token": 7e-7, "latency_ms": 300, "quality_score": 0.9},
                }
            )
            + "\n"
            for i in range(12)
        )
        publish = installed.run("publish", "--batch", "-", cwd=where, stdin=lines, env=services)
        assert publish.returncode == 0, publish.stderr + publish.stdout
        consume = installed.run(
            "consume",
            "--until-idle",
            "5",
            "--group-id",
            f"wheel-{uuid.uuid4().hex[:8]}",
            "--metrics-port",
            "off",
            cwd=where,
            timeout=240,
            env=services,
        )
        assert consume.returncode == 0, consume.stderr
        stats = installed.run(
            "stats", "--json", "--store", "postgresql", "--since", "2h", cwd=where, env=services
        )
        assert stats.returncode == 0, stats.stderr
        answer = json.loads(stats.stdout)
        assert answer["backend"] == "postgresql" and answer["total_selections"] == 12
        assert [g["group"] for g in answer["groups"]] == ["gemini-2.5-flash"]
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": kafka_bootstrap}).delete_topics([topic])


def test_hook_install_registers_the_venvs_interpreter(installed: Installed) -> None:
    """The registered command is the venv's python by absolute path (no shim, no PYTHONPATH),
    and run as Claude Code runs it, it queues the event and prints nothing."""
    where = installed.base / "elsewhere"
    settings = installed.base / "claude" / "settings.json"
    done = installed.run("hook", "install", "--settings", str(settings), cwd=where)
    assert done.returncode == 0, done.stderr
    doc = json.loads(settings.read_text())
    command = doc["hooks"]["SessionStart"][0]["hooks"][0]["command"]
    assert doc["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"] == command
    words = shlex.split(command)
    executable = Path(words[0])
    assert executable.is_absolute() and executable.is_relative_to(installed.venv), command
    assert executable.parent == installed.venv / "bin"
    assert "shims" not in executable.parts and not command.startswith("PYTHONPATH=")
    assert words[1:4] == ["-I", "-S", "-c"]
    site_packages = next((installed.venv / "lib").glob("python3*/site-packages"))
    assert words[4] == (
        f"import sys; sys.path.insert(0, {json.dumps(str(site_packages.resolve()))}); "
        "from provider_events.cli import hook_claude; hook_claude()"
    )
    state = installed.base / "hook-state"
    # A real turn's shape: the prompt, then Stop once Claude Code wrote its answer's line.
    transcript = installed.base / "transcript.jsonl"
    transcript.write_text("")
    hook_env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(installed.base / "home"),
        "PROVIDER_EVENTS_STATE_DIR": str(state),
        "PROVIDER_EVENTS_RELAY_AUTOSTART": "false",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing delivers: it waits in the outbox
    }
    for event in ("UserPromptSubmit", "Stop"):
        if event == "Stop":
            transcript.write_text(ASSISTANT_LINE + "\n")
        payload = {**HOOK_JSON, "hook_event_name": event, "transcript_path": str(transcript)}
        run = subprocess.run(
            ["sh", "-c", command],
            input=json.dumps(payload),
            cwd="/",
            env=hook_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (run.returncode, run.stdout) == (0, "")
    wait_hook_outcomes(state)  # the Stop's outcomes are priced by a detached job
    status = installed.run(
        "outbox", "status", "--json", cwd=where, env={"PROVIDER_EVENTS_STATE_DIR": str(state),
                                                      "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["pending"] == 2  # the turn's selection and its outcome
