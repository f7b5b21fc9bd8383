"""Secrets never leak: every command, successful and failing, against real services.

Recognisable secrets are set (the SASL password of the private SASL_SSL broker and a wrong one,
the PostgreSQL password and a client-key ``sslpassword`` in DATABASE_URL and wrong ones, every
provider API key, a secret typed into a prompt), then every ``provider-events`` command runs:
``--help`` of each, publish (sync, background, batch, --verbose, --json), relay, outbox status,
doctor, schema, migrate, consume (its /metrics too), stats, recommend, report, demo, switch and
hook, including runs with a wrong password, unreachable services, malformed URLs and bad input.
No secret, nor any 12-character piece of one, may appear in any stdout or stderr, any file the
commands wrote (logs, outbox and event stores, reports, schemas) or any file name. The only
files allowed to hold a secret are those it is meant for: Claude Code's settings.json (and its
0600 backup), which ``switch`` writes the provider key into, and the user's own ``.env``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _secure_kafka import SecureKafka, free_port, shared_secure_kafka
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from provider_events.cli import COMMANDS
from provider_events.store._scratch import scratch_schema

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "provider_events.cli"]
KEY_VARS = ("ZAI_API_KEY", "OPENROUTER_API_KEY", "TOGETHER_API_KEY", "GEMINI_API_KEY")
#: Pieces of this many characters of a secret's random part must not appear either.
PIECE = 12
_OUTER_PREFIXES = ("KAFKA_", "PROVIDER_EVENTS_", "ANTHROPIC_", "CLAUDE_", "GEMINI_", "PG")
_OUTER = ("DATABASE_URL", *KEY_VARS)


def recognisable(label: str) -> str:
    """``<label>-`` and 32 random hex characters: easy to find, impossible to meet by chance."""
    return f"{label}-{secrets.token_hex(16)}"


@dataclass
class Secrets:
    """Every secret of the test, by name."""

    values: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: str) -> str:
        self.values[name] = value
        return value

    def found_in(self, data: bytes) -> list[str]:
        """Names (and the piece) of the secrets that occur, whole or in part, in ``data``."""
        hits = []
        for name, value in self.values.items():
            pieces = [value] + [value[i : i + PIECE] for i in range(len(value) - PIECE + 1)]
            hit = next((p for p in pieces if p.encode() in data), None)
            if hit is not None:
                hits.append(f"{name} ({hit!r})")
        return hits


@dataclass
class Run:
    label: str
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0


@dataclass
class World:
    """The environments of the runs and where they may write."""

    root: Path
    sasl: SecureKafka
    topic: str
    database: str
    secrets: Secrets
    runs: list[Run] = field(default_factory=list)
    extra_outputs: list[tuple[str, bytes]] = field(default_factory=list)

    def env(self, variant: str = "good", **extra: str) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in _OUTER and not k.startswith(_OUTER_PREFIXES)
        }
        state = self.root / f"state-{variant}"
        base.update(
            PYTHONPATH=str(ROOT / "src"),
            HOME=str(self.root / "home"),
            CLAUDE_CONFIG_DIR=str(self.root / "home" / ".claude"),
            PROVIDER_EVENTS_STATE_DIR=str(state),
            PROVIDER_EVENTS_TOPIC=self.topic,
            PROVIDER_EVENTS_RELAY_AUTOSTART="false",
            PROVIDER_EVENTS_DELIVERY_TIMEOUT="3",
            PROVIDER_EVENTS_HOOK_DEBUG="1",
            DATABASE_URL=self.database,
            **self.sasl.env(),
        )
        base.update({var: self.secrets.values[var] for var in KEY_VARS})
        base.update(extra)
        return base

    def run(
        self,
        label: str,
        env: dict[str, str],
        *args: str,
        expect: int | None = None,
        stdin: str | None = None,
        cwd: Path | None = None,
        timeout: float = 90,
        stop_after: float | None = None,
    ) -> Run:
        """Run the CLI; with ``stop_after`` it is sent SIGTERM then (a long-running command)."""
        started = time.monotonic()
        proc = subprocess.Popen(
            [*CLI, *args],
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd or self.root / "work",
        )
        try:
            out, err = proc.communicate(stdin, timeout=stop_after or timeout)
        except subprocess.TimeoutExpired:
            if stop_after is None:
                proc.kill()
                raise
            proc.terminate()
            out, err = proc.communicate(timeout=timeout)
        run = Run(label, list(args), proc.returncode, out, err, time.monotonic() - started)
        self.runs.append(run)
        if expect is not None:
            assert proc.returncode == expect, (label, args, proc.returncode, err[-2000:])
        return run


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    """Secrets, a SASL_SSL topic, a scratch schema whose DSN carries the secrets."""
    sasl = shared_secure_kafka()
    found = Secrets()
    found.add("KAFKA_SASL_PASSWORD", sasl.password)
    found.add("SASL admin password", sasl.admin_password)
    for var in KEY_VARS:
        found.add(var, recognisable(f"sk-{var.split('_')[0].lower()}"))
    pg_password = conninfo_to_dict(database_url).get("password")
    if pg_password:
        found.add("DATABASE_URL password", str(pg_password))
    sslpassword = found.add("DATABASE_URL sslpassword", recognisable("PgKeyPass"))
    for folder in ("home/.claude", "work", "out"):
        (tmp_path / folder).mkdir(parents=True)
    topic = sasl.create_topic(f"secrets.{uuid.uuid4().hex[:10]}")
    with scratch_schema(database_url, prefix="secrets") as scratch:
        dsn = make_conninfo(scratch.dsn, sslpassword=sslpassword)
        yield World(tmp_path, sasl, topic, dsn, found)


def publish_args(reason: str, *extra: str) -> list[str]:
    return [
        "publish",
        "--provider",
        "openrouter",
        "--model",
        "anthropic/claude-sonnet-4.5",
        "--reason",
        reason,
        "--criteria",
        '{"cost_per_token": 0.000003, "quality_score": 0.93, "latency_ms": 850}',
        "--tenant-id",
        "acme",
        *extra,
    ]


def hook_input(event: str, session: str, **extra: str) -> str:
    return json.dumps({"session_id": session, "hook_event_name": event, "cwd": "/tmp", **extra})


def consume_with_metrics(world: World, env: dict[str, str], count: int) -> None:
    """`consume --verbose` with /metrics on a free port; the page is scanned too."""
    args = ["consume", "--max-messages", str(count), "--until-idle", "20", "--verbose"]
    args += ["--metrics-port", "0", "--group-id", f"secrets-{uuid.uuid4().hex[:8]}"]
    proc = subprocess.Popen(
        [*CLI, *args],
        env=env,
        cwd=world.root / "work",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline()]
    while lines[-1] and '"metrics"' not in lines[-1]:
        lines.append(proc.stdout.readline())
    if lines[-1]:
        url = json.loads(lines[-1])["url"]
        with urllib.request.urlopen(url, timeout=10) as page:
            world.extra_outputs.append(("/metrics of consume", page.read()))
    out, err = proc.communicate(timeout=90)
    world.runs.append(Run("consume (metrics)", args, proc.returncode, "".join(lines) + out, err))
    assert proc.returncode == 0, err


def run_successful_commands(world: World) -> None:
    """Every command once the way it is meant to be used, against the real services."""
    env = world.env()
    out = world.root / "out"
    world.run("help", env, "--help", expect=0)
    world.run("version", env, "--version", expect=0)
    for name in COMMANDS:
        world.run(f"{name} --help", env, name, "--help", expect=0)
    world.run("schema list", env, "schema", "--list", expect=0)
    world.run(
        "schema ref", env, "schema", "registry://omninode/agent/provider_selected/v1", expect=0
    )
    world.run("schema write", env, "schema", "--write", str(out / "schemas"), expect=0)
    world.run("migrate", env, "migrate", expect=0)
    world.run("migrate status", env, "migrate", "--status", expect=0)

    world.run("publish", env, *publish_args("plain"), expect=0)
    world.run("publish json", env, *publish_args("json", "--json"), expect=0)
    world.run("publish verbose", env, *publish_args("verbose", "--verbose"), expect=0)
    world.run("publish background", env, *publish_args("bg", "--background", "--json"), expect=0)
    batch = "\n".join(
        json.dumps({"provider": "zai", "model": "glm-4.6", "reason": f"batch {i}"})
        for i in range(3)
    )
    world.run("publish batch", env, "publish", "--batch", "-", "--json", stdin=batch, expect=0)
    world.run("outbox status", env, "outbox", "status", expect=0)
    world.run("outbox status json", env, "outbox", "status", "--json", expect=0)
    world.run("relay", env, "relay", expect=0)
    world.run("doctor", env, "doctor")  # the DLQ topic may still be missing: a warning
    world.run("doctor json", env, "doctor", "--json")
    consume_with_metrics(world, env, 7)

    for store in ("postgresql", "local"):
        if store == "local":
            local = world.env(PROVIDER_EVENTS_SINK="local")
            world.run("publish local", local, *publish_args("local"), expect=0)
        world.run(f"stats {store}", env, "stats", "--store", store, expect=0)
        world.run(f"stats json {store}", env, "stats", "--store", store, "--json", expect=0)
        world.run(
            f"stats csv {store}", env, "stats", "--store", store, "--csv", "--group-by", "tenant"
        )
        world.run(f"recommend {store}", env, "recommend", "--store", store, expect=0)
        world.run(f"recommend json {store}", env, "recommend", "--store", store, "--json")
        world.run(
            f"report {store}",
            env,
            "report",
            "--store",
            store,
            "--html",
            str(out / f"report-{store}.html"),
            expect=0,
        )
    world.run(
        "demo local",
        env,
        "demo",
        "--local",
        "--events",
        "300",
        "--days",
        "1",
        "--state-dir",
        str(out / "demo"),
        expect=0,
        timeout=120,
    )

    world.run("switch list", env, "switch", "list", expect=0)
    world.run("switch status", env, "switch", "status", expect=0)
    world.run("switch zai", env, "switch", "zai", "--verbose", expect=0)
    world.run("switch openrouter", env, "switch", "openrouter", expect=0)
    world.run("switch together", env, "switch", "together", "--no-event", expect=0)
    world.run("switch gemini", env, "switch", "gemini-flash", "--verbose", expect=0)
    world.run("switch status after", env, "switch", "status", "--verbose", expect=0)
    # The key went where it belongs, 0600; and the scanner does recognise it in a real file.
    settings = world.root / "home" / ".claude" / "settings.json"
    assert world.secrets.found_in(settings.read_bytes()) == [
        f"GEMINI_API_KEY ({world.secrets.values['GEMINI_API_KEY']!r})"
    ]
    assert settings.stat().st_mode & 0o077 == 0
    world.run("hook install", env, "hook", "install", expect=0)
    world.run("hook status", env, "hook", "status", expect=0)
    prompt = world.secrets.add("secret typed into a prompt", recognisable("PromptSecret"))
    session = f"s-{uuid.uuid4().hex[:8]}"
    for event, extra in (
        ("SessionStart", {"source": "startup"}),
        ("UserPromptSubmit", {"prompt": f"my token is {prompt}, keep it safe"}),
        ("Stop", {}),  # the turn's event is published here
    ):
        world.run(
            f"hook claude {event}",
            env,
            "hook",
            "claude",
            stdin=hook_input(event, session, **extra),
            expect=0,
        )
    world.run("hook claude garbage", env, "hook", "claude", stdin="\x00 not json {", expect=0)
    world.run("switch claude", env, "switch", "claude", "--verbose", expect=0)
    world.run("hook uninstall", env, "hook", "uninstall", expect=0)
    world.run("relay again", env, "relay", expect=0)


def run_failing_commands(world: World) -> None:
    """Wrong passwords, unreachable services, malformed URLs and bad input, in parallel."""
    s = world.secrets
    kafka_wrong = s.add("wrong KAFKA_SASL_PASSWORD", recognisable("KafkaWrongPw"))
    pg_wrong = s.add("wrong DATABASE_URL password", recognisable("PgWrongPw"))
    pg_down = s.add("unreachable DATABASE_URL password", recognisable("PgDownPw"))
    malformed = s.add("malformed DATABASE_URL password", recognisable("PgMalformedPw"))
    sslpw = world.secrets.values["DATABASE_URL sslpassword"]
    closed = free_port()
    dsn = conninfo_to_dict(world.database)
    host, port, db = dsn.get("host", "127.0.0.1"), dsn.get("port", "5432"), dsn.get("dbname")
    user = dsn.get("user", "postgres")
    variants = {
        "kafka-wrong": world.env("kafka-wrong", **world.sasl.env(password=kafka_wrong)),
        "kafka-down": world.env("kafka-down", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed}"),
        "pg-wrong": world.env(
            "pg-wrong",
            DATABASE_URL=f"postgresql://{user}:{pg_wrong}@{host}:{port}/{db}?sslpassword={sslpw}",
        ),
        "pg-down": world.env(
            "pg-down", DATABASE_URL=f"postgresql://someone:{pg_down}@127.0.0.1:{closed}/x"
        ),
    }
    malformed_urls = {
        "bad sslmode": f"postgresql://{user}:{malformed}@{host}:{port}/{db}?sslmode=bogus",
        "bad port": f"postgresql://{user}:{malformed}@{host}:notaport/{db}",
        "unterminated quote": f"host={host} port={port} user={user} password='{malformed}",
        "unknown option": f"host={host} password={malformed} frobnicate=1",
        "bad scheme": f"postgres://{user}:{malformed}@{host}:{port}/{db}?target_session_attrs=x",
    }
    # Chains run one after the other inside (a relay after the publishes it should retry),
    # the chains in parallel. (label, env, args, expected exit code, stdin, SIGTERM after)
    Job = tuple[str, dict[str, str], list[str], int | None, str | None, float | None]
    chains: list[list[Job]] = []
    consume = ["consume", "--until-idle", "5", "--metrics-port", "off", "--verbose"]
    for name in ("kafka-wrong", "kafka-down"):
        env = variants[name]
        chains.append([
            (f"{name} publish", env, publish_args("f"), 1, None, None),
            (f"{name} publish json", env, publish_args("f", "--json"), 1, None, None),
            (f"{name} publish verbose", env, publish_args("f", "--verbose"), 1, None, None),
            # Refused credentials end the relay at once; an unreachable broker is retried.
            (f"{name} relay", env, ["relay"], 1 if name == "kafka-wrong" else None, None, 3.0),
            (f"{name} outbox", env, ["outbox", "status"], 0, None, None),
            (f"{name} doctor", env, ["doctor"], 1, None, None),
            (f"{name} doctor json", env, ["doctor", "--json"], 1, None, None),
            (f"{name} switch", env, ["switch", "zai"], 0, None, None),
            (f"{name} hook", env, ["hook", "claude"], 0, hook_input("Stop", "s-f"), None),
        ])  # fmt: skip
    chains += [
        [("kafka-wrong consume", variants["kafka-wrong"], consume, 1, None, None)],
        # Not refused, only unreachable: retried until stopped, so SIGTERM after a while.
        [("kafka-down consume", variants["kafka-down"], consume, None, None, 6.0)],
    ]
    for name in ("pg-wrong", "pg-down"):
        env = variants[name]
        html = str(world.root / "out" / f"{name}.html")
        chains.append([
            (f"{name} migrate", env, ["migrate"], 1, None, None),
            (f"{name} migrate status", env, ["migrate", "--status", "--verbose"], 1, None, None),
            (f"{name} stats", env, ["stats"], 1, None, None),
            (f"{name} recommend", env, ["recommend", "--json"], 1, None, None),
            (f"{name} report", env, ["report", "--html", html], 1, None, None),
            (f"{name} doctor", env, ["doctor"], 1, None, None),
        ])  # fmt: skip
        # PostgreSQL refusing the login ends consume at once (exit 1); an unreachable one is
        # retried like an outage: SIGTERM after a few tries.
        if name == "pg-wrong":
            chains.append([(f"{name} consume", env, consume, 1, None, None)])
        else:
            chains.append([(f"{name} consume", env, consume, None, None, 4.0)])
    for label, url in malformed_urls.items():
        env = world.env("malformed", DATABASE_URL=url)
        chains.append([
            # A malformed DATABASE_URL is bad input for every command: exit 2 naming it.
            (f"{label}: migrate", env, ["migrate"], 2, None, None),
            (f"{label}: doctor", env, ["doctor", "--json"], 2, None, None),
            (f"{label}: stats", env, ["stats"], 2, None, None),
        ])  # fmt: skip
    good = world.env("bad-input")
    chains.append([
        ("bad criteria", good, publish_args("x", "--criteria", "{nope"), 2, None, None),
        ("missing flags", good, ["publish", "--provider", "x"], 2, None, None),
        ("unknown provider", good, ["switch", "no-such-provider"], 2, None, None),
        ("bad batch", good, ["publish", "--batch", "-"], 2, "{]\n", None),
        ("bad protocol", dict(good, KAFKA_SECURITY_PROTOCOL="BOGUS"), ["doctor"], 1, None, None),
        ("no mechanism", {k: v for k, v in good.items() if k != "KAFKA_SASL_MECHANISM"}, publish_args("x"), 2, None, None),
        ("missing CA", dict(good, KAFKA_SSL_CA_LOCATION="/nonexistent/ca.pem"), publish_args("x"), 2, None, None),
        ("bad timeout", dict(good, PROVIDER_EVENTS_DELIVERY_TIMEOUT="soon"), ["relay"], 2, None, None),
        ("switch without key", {k: v for k, v in good.items() if k != "ZAI_API_KEY"}, ["switch", "zai"], 2, None, None),
        ("bad since", good, ["stats", "--since", "yesterday-ish"], 2, None, None),
        ("unknown command", good, ["frobnicate"], 2, None, None),
        ("bad consume flag", good, ["consume", "--batch-size", "many"], 2, None, None),
    ])  # fmt: skip

    def run_chain(chain: list[Job]) -> None:
        for label, env, args, expect, stdin, stop in chain:
            world.run(label, env, *args, expect=expect, stdin=stdin, stop_after=stop)

    with ThreadPoolExecutor(max_workers=6) as pool:
        for future in [pool.submit(run_chain, chain) for chain in chains]:
            future.result()
    # A .env in the working directory holding the secrets (doctor names it as their source).
    dotenv_dir = world.root / "dotenv"
    dotenv_dir.mkdir()
    (dotenv_dir / ".env").write_text(
        f"KAFKA_SASL_PASSWORD={kafka_wrong}\nDATABASE_URL=postgresql://u:{pg_down}@127.0.0.1:{closed}/x\n"
    )
    env = world.env("dotenv")
    for var in ("KAFKA_SASL_PASSWORD", "DATABASE_URL"):
        env.pop(var)
    world.run(".env doctor", env, "doctor", expect=1, cwd=dotenv_dir)
    world.run(".env publish", env, *publish_args("dotenv", "--verbose"), expect=1, cwd=dotenv_dir)


def allowed_to_hold_secrets(world: World, path: Path) -> bool:
    claude = world.root / "home" / ".claude"
    return path in (claude / "settings.json", claude / "settings.json.bak") or path.name == ".env"


def test_no_secret_in_any_output_log_or_file(world: World) -> None:
    """Every command, successful or failing, shows no secret and writes none to disk."""
    run_successful_commands(world)
    run_failing_commands(world)
    assert len(world.runs) > 100

    leaks = []
    for run in world.runs:
        for stream, text in (("stdout", run.stdout), ("stderr", run.stderr)):
            hits = world.secrets.found_in(text.encode("utf-8", "surrogateescape"))
            if hits:
                leaks.append(f"{run.label} {stream}: {hits}: {text[-600:]!r}")
    for where, data in world.extra_outputs:
        if hits := world.secrets.found_in(data):
            leaks.append(f"{where}: {hits}")
    scanned = 0
    for path in sorted(world.root.rglob("*")):
        if hits := world.secrets.found_in(str(path.relative_to(world.root)).encode()):
            leaks.append(f"file name {path}: {hits}")
        if not path.is_file() or allowed_to_hold_secrets(world, path):
            continue
        scanned += 1
        if hits := world.secrets.found_in(path.read_bytes()):
            leaks.append(f"file {path.relative_to(world.root)}: {hits}")
    assert not leaks, "\n".join(leaks)

    # The scan saw what it had to see.
    names = {p.name for p in world.root.rglob("*") if p.is_file()}
    assert {"outbox.sqlite3", "hook.log", "report-postgresql.html", "report-local.html"} <= names
    assert scanned >= 15
    settings = world.root / "home" / ".claude" / "settings.json"
    if world.secrets.found_in(settings.read_bytes()):
        assert settings.stat().st_mode & 0o077 == 0
    backup = settings.with_name("settings.json.bak")
    assert backup.stat().st_mode & 0o777 == 0o600
    # A failure path prints the secret-free reason: the wrong password run says why.
    wrong = next(r for r in world.runs if r.label == "kafka-wrong publish")
    assert "Kafka authentication failed" in wrong.stderr
    doctor = next(r for r in world.runs if r.label == "pg-wrong doctor")
    assert "********" in doctor.stdout and "password authentication failed" in doctor.stdout
    consume = next(r for r in world.runs if r.label == "pg-wrong consume")
    assert "password authentication failed" in consume.stderr and consume.stderr.count("\n") == 1
