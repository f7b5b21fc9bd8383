"""PostgreSQL TLS settings reach libpq unchanged, and least-privilege roles are enough.

A private PostgreSQL cluster (the server binaries dev/services.sh uses, a temporary data
directory, a free port) accepts TCP connections only over TLS (``hostnossl ... reject``), with
a server certificate from a test CA and, for the consumer role, a client certificate as well
(``clientcert=verify-full``). ``deploy/postgres/roles.sql`` creates the owner, consumer and
reader roles; the owner migrates, the consumer ingests from the real broker, the reader runs
``stats``, and neither of the last two can change the table.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
from _secure_kafka import IN_CI, free_port, make_certificates
from _secure_kafka import child_env as secure_child_env
from _secure_kafka import cli as run_cli
from psycopg import errors as pg_errors
from psycopg import sql

from provider_events.store import ROLLUP_TABLES
from tests.support import CLI

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ROLES_SQL = ROOT / "deploy" / "postgres" / "roles.sql"
IS_ROOT = os.geteuid() == 0
DB, SCHEMA = "pe_secure", "provider_events"
OWNER, CONSUMER, READER = "pe_owner", "pe_consumer", "pe_reader"


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def _pg_bin() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class PrivatePostgres:
    """A running TLS-only PostgreSQL cluster and the files its clients need."""

    bin: Path
    base: Path
    port: int
    ca: Path
    client_cert: Path
    client_key: Path
    client_key_password: str

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "run"

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        """A superuser connection over the Unix socket (trust)."""
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user="postgres",
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )

    def psql_file(self, path: Path, dbname: str, **variables: str) -> None:
        cmd = [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        cmd += [f"--host={self.socket_dir}", f"--port={self.port}", "--username=postgres"]
        for name, value in variables.items():
            cmd += ["-v", f"{name}={value}"]
        cmd += [f"--dbname={dbname}", "-f", str(path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr

    def url(self, user: str, password: str, **params: str) -> str:
        """A postgresql:// URL over TCP with the given libpq parameters (sslmode and friends)."""
        query = urlencode(params)
        return (
            f"postgresql://{quote(user)}:{quote(password, safe='')}@127.0.0.1:{self.port}/{DB}"
            + (f"?{query}" if query else "")
        )

    def verified(self, user: str, password: str, **extra: str) -> str:
        return self.url(user, password, sslmode="verify-full", sslrootcert=str(self.ca), **extra)

    def stop(self) -> None:
        _as_cluster_owner(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            check=False,
        )
        shutil.rmtree(self.base, ignore_errors=True)


def _as_cluster_owner(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a server program as the cluster's owner: ``postgres`` when we are root."""
    full = ["runuser", "-u", "postgres", "--", *cmd] if IS_ROOT else cmd
    proc = subprocess.run(
        full, capture_output=True, text=True, timeout=120, cwd="/", stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    return proc


def _chown_to_postgres(*paths: Path) -> None:
    if IS_ROOT:
        for path in paths:
            shutil.chown(path, "postgres", "postgres")


def _client_certificate(tls: Path, user: str, key_password: str) -> tuple[Path, Path]:
    """A client certificate for ``user`` signed by the test CA, its key encrypted."""
    key, csr, cert = tls / f"{user}.key", tls / f"{user}.csr", tls / f"{user}.crt"
    for cmd in (
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
         "-aes-256-cbc", "-pass", f"pass:{key_password}", "-out", str(key)],
        ["openssl", "req", "-new", "-key", str(key), "-passin", f"pass:{key_password}",
         "-subj", f"/CN={user}", "-out", str(csr)],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(tls / "ca.pem"), "-CAkey",
         str(tls / "ca.key"), "-CAcreateserial", "-days", "2", "-sha256", "-out", str(cert)],
    ):  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    key.chmod(0o600)
    return cert, key


def start_private_postgres() -> PrivatePostgres:
    """initdb a TLS-only cluster in a temporary directory and start it."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        raise RuntimeError(
            "PostgreSQL server binaries not found (dev/services.sh up installs them)"
        )
    if IS_ROOT and subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
        raise RuntimeError("running as root without a 'postgres' system user")
    # Not under pytest's tmp_path: the postgres user must be able to traverse to it.
    base = Path(tempfile.mkdtemp(prefix="pe-sec-pg-"))
    base.chmod(0o755)
    tls = base / "tls"
    key_password = f"ClientKeyPw{secrets.token_hex(8)}"
    try:
        ca, _ = make_certificates(tls, secrets.token_hex(8))
        client_cert, client_key = _client_certificate(tls, CONSUMER, key_password)
        data, run = base / "data", base / "run"
        run.mkdir()
        data.mkdir(mode=0o700)
        _chown_to_postgres(data, run)
        _as_cluster_owner(
            [str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
             "--locale=C", "--auth-local=trust", "--auth-host=reject", "--no-sync"]
        )  # fmt: skip
        for name, source in (
            ("server.crt", tls / "broker.pem"),
            ("server.key", tls / "broker.key"),
        ):
            shutil.copy(source, data / name)
            (data / name).chmod(0o600)
            _chown_to_postgres(data / name)
        shutil.copy(ca, data / "root.crt")
        _chown_to_postgres(data / "root.crt")
        port = free_port()
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{run}'\nmax_connections = 30\n"
                "shared_buffers = 32MB\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\npassword_encryption = scram-sha-256\n"
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                "ssl_ca_file = 'root.crt'\n"
            )
        (data / "pg_hba.conf").write_text(
            "# TLS only over TCP; the consumer also presents a client certificate.\n"
            "local     all  all                       trust\n"
            f"hostssl   all  {CONSUMER}  127.0.0.1/32  scram-sha-256 clientcert=verify-full\n"
            "hostssl   all  all          127.0.0.1/32  scram-sha-256\n"
            "hostnossl all  all          127.0.0.1/32  reject\n"
        )
        (base / "postgres.log").touch()
        _chown_to_postgres(base / "postgres.log")
        _as_cluster_owner(
            [str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(base / "postgres.log"), "-w",
             "-t", "60", "start"]
        )  # fmt: skip
    except BaseException:
        _as_cluster_owner([str(pg_bin / "pg_ctl"), "-D", str(base / "data"), "stop"], check=False)
        shutil.rmtree(base, ignore_errors=True)
        raise
    return PrivatePostgres(pg_bin, base, port, ca, client_cert, client_key, key_password)


@dataclass
class Roles:
    pg: PrivatePostgres
    passwords: dict[str, str]

    def owner(self, **extra: str) -> str:
        return self.pg.verified(OWNER, self.passwords[OWNER], **extra)

    def consumer(self, **extra: str) -> str:
        return self.pg.verified(
            CONSUMER,
            self.passwords[CONSUMER],
            sslcert=str(self.pg.client_cert),
            sslkey=str(self.pg.client_key),
            sslpassword=self.pg.client_key_password,
            **extra,
        )

    def reader(self, **extra: str) -> str:
        return self.pg.verified(READER, self.passwords[READER], **extra)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    """A private TLS-only PostgreSQL cluster for this module."""
    try:
        pg = start_private_postgres()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _unavailable(f"private PostgreSQL for the TLS tests: {exc}")
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="module")
def roles(private_pg: PrivatePostgres) -> Roles:
    """The database with the three roles of deploy/postgres/roles.sql, migrated by the owner."""
    with private_pg.admin() as conn:
        conn.execute(f"CREATE DATABASE {DB}")
    names = {"db": DB, "schema": SCHEMA, "owner": OWNER, "consumer": CONSUMER, "reader": READER}
    private_pg.psql_file(ROLES_SQL, DB, **names)
    passwords = {role: f"{role}-Pw-{secrets.token_hex(10)}" for role in (OWNER, CONSUMER, READER)}
    with private_pg.admin(DB) as conn:
        for role, password in passwords.items():
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
    roles = Roles(private_pg, passwords)
    migrate = cli(child_env(DATABASE_URL=roles.owner()), "migrate")
    assert migrate.returncode == 0, migrate.stderr
    assert f"schema {SCHEMA}:" in migrate.stdout
    private_pg.psql_file(ROLES_SQL, DB, **names)  # again: grants on the migrated tables
    return roles


def child_env(**extra: str) -> dict[str, str]:
    """A child on the shared broker and the database ``extra`` names, relay not autostarted."""
    return secure_child_env(PROVIDER_EVENTS_RELAY_AUTOSTART="false", **extra)


def cli(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args, timeout=timeout)


def publish(env: dict[str, str], count: int) -> list[str]:
    """Publish ``count`` events with the CLI's batch mode; their event ids."""
    lines = "".join(
        json.dumps(
            {
                "provider": "zai",
                "model": "glm-4.6",
                "reason": f"tls roles {i}",
                "criteria": {"cost_per_token": 0.0000006, "quality_score": 0.9},
                "correlation_id": f"tls-{i}",
            }
        )
        + "\n"
        for i in range(count)
    )
    proc = subprocess.run(
        [*CLI, "publish", "--batch", "-", "--json"],
        input=lines,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["counts"] == {"delivered": count}, summary
    return list(summary["event_ids"])


def consume(env: dict[str, str], group: str, count: int) -> dict:
    proc = cli(
        env,
        "consume",
        "--group-id",
        group,
        "--max-messages",
        str(count),
        "--until-idle",
        "20",
        "--metrics-port",
        "off",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.splitlines()[-1])
    assert last["event"] == "stopped", proc.stdout
    return last


def test_least_privilege_roles_migrate_consume_and_read(
    roles: Roles, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    """The owner migrates; the consumer (INSERT/SELECT, client certificate) ingests and
    re-ingests (duplicates through the staging table), measured outcomes included; the reader
    runs `stats` and `usage`."""
    from tests.transcripts import standard_folder

    kafka = child_env(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        PROVIDER_EVENTS_TOPIC=topic,
        PROVIDER_EVENTS_STATE_DIR=str(tmp_path / "state"),
    )
    event_ids = publish(kafka, 5)
    standard_folder(tmp_path / "projects")
    imported = cli(kafka, "import", "claude-code", "--projects-dir", str(tmp_path / "projects"))
    assert imported.returncode == 0, imported.stderr
    as_consumer = dict(kafka, DATABASE_URL=roles.consumer())
    first = consume(as_consumer, f"tls-{uuid.uuid4().hex[:8]}", 10)
    assert (first["inserted"], first["duplicates"]) == (10, 0)
    again = consume(as_consumer, f"tls-{uuid.uuid4().hex[:8]}", 10)
    assert (again["inserted"], again["duplicates"]) == (0, 10)

    with psycopg.connect(roles.reader()) as conn:
        stored = {
            r[0] for r in conn.execute("SELECT event_id::text FROM provider_selection_events")
        }
        ssl = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert stored == set(event_ids)
    assert ssl == (True,)

    stats = cli(
        dict(kafka, DATABASE_URL=roles.reader()), "stats", "--json", "--store", "postgresql"
    )
    assert stats.returncode == 0, stats.stderr
    report = json.loads(stats.stdout)
    assert report["backend"] == "postgresql" and report["total_selections"] == 5, report
    usage = cli(
        dict(kafka, DATABASE_URL=roles.reader()),
        "usage",
        "--json",
        "--since",
        "2025-09-01",
        "--until",
        "2025-11-01",
    )
    assert usage.returncode == 0, usage.stderr
    assert json.loads(usage.stdout)["totals"]["outcomes"] == 5


def test_consumer_and_reader_cannot_change_the_table(roles: Roles) -> None:
    """The consumer may only add: INSERT and SELECT on the events, dead-letter and outcome
    tables, and INSERT/UPDATE on the rollups it folds its batches into. It cannot DROP, ALTER,
    UPDATE, DELETE or TRUNCATE the events, delete rollups, create objects, or use the identity
    sequence directly; the reader cannot write."""
    with roles.pg.admin(DB) as conn:
        granted = conn.execute(
            "SELECT c.relname, p.priv FROM pg_class c"
            " CROSS JOIN unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE',"
            "'REFERENCES','TRIGGER']) p(priv)"
            " WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')"
            " AND has_table_privilege(%s, c.oid, p.priv)",
            [SCHEMA, CONSUMER],
        ).fetchall()
    rollups = [(table, priv) for table in ROLLUP_TABLES for priv in ("INSERT", "SELECT", "UPDATE")]
    assert sorted(granted) == sorted(
        [
            ("provider_selection_events", "INSERT"),
            ("provider_selection_events", "SELECT"),
            # the batch writer folds its batches into the rollups itself (migration 0004)
            *rollups,
            ("provider_events_dead_letters", "INSERT"),
            ("provider_events_dead_letters", "SELECT"),
            # ... staging its rollup deltas and merging them (0007)
            *[
                (f"provider_events_pending_{t}", priv)
                for t in ("roll", "reasons", "bins")
                for priv in ("SELECT", "INSERT", "DELETE")
            ],
            # measured outcomes (0005): its second writer, the spend gauges
            ("provider_outcomes", "INSERT"),
            ("provider_outcomes", "SELECT"),
            ("provider_outcomes_hourly", "INSERT"),
            ("provider_outcomes_hourly", "SELECT"),
            ("provider_outcomes_hourly", "UPDATE"),
            ("provider_budgets", "SELECT"),
        ]
    )
    with psycopg.connect(roles.consumer(), autocommit=True) as conn:
        conn.execute("SELECT 1 FROM provider_selection_events LIMIT 0")
        for statement in (
            "DROP TABLE provider_selection_events",
            "ALTER TABLE provider_selection_events ADD COLUMN x int",
            "ALTER TABLE provider_selection_events DROP CONSTRAINT "
            "provider_selection_events_event_id_key",
            "UPDATE provider_selection_events SET provider_name = 'x'",
            "DELETE FROM provider_selection_events",
            "TRUNCATE provider_selection_events",
            "CREATE TABLE provider_events_sneaky (x int)",
            "DROP TABLE provider_events_schema_migrations",
            "DELETE FROM provider_selection_rollup_hourly",
            "CREATE INDEX ON provider_selection_events (model_name)",
        ):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                conn.execute(statement)
        seq = conn.execute(
            "SELECT has_sequence_privilege(pg_get_serial_sequence("
            "'provider_selection_events', 'id'), 'USAGE,UPDATE')"
        ).fetchone()
        assert seq == (False,)  # identity columns need no sequence grant to INSERT
    with psycopg.connect(roles.reader(), autocommit=True) as conn:
        for statement in (
            "INSERT INTO provider_selection_events (event_id) VALUES (gen_random_uuid())",
            "DELETE FROM provider_selection_events",
            "DROP TABLE provider_selection_events",
        ):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                conn.execute(statement)


def test_tls_parameters_reach_libpq_unchanged(roles: Roles, tmp_path: Path) -> None:
    """`sslmode`, `sslrootcert`, `sslcert`/`sslkey`/`sslpassword` in DATABASE_URL decide the
    outcome of `migrate --status`, `doctor` and `consume`: each one is handed to libpq as given,
    and none of the passwords is printed."""
    other_ca, _ = make_certificates(tmp_path / "other-ca", "unused")
    pg = roles.pg
    owner_pw = roles.passwords[OWNER]
    cases = {
        "disable": (pg.url(OWNER, owner_pw, sslmode="disable"), "no encryption"),
        "wrong root": (
            pg.url(OWNER, owner_pw, sslmode="verify-full", sslrootcert=str(other_ca)),
            "certificate verify failed",
        ),
        "no client cert": (
            pg.verified(CONSUMER, roles.passwords[CONSUMER]),
            "requires a valid client certificate",
        ),
        "wrong key password": (
            pg.verified(
                CONSUMER,
                roles.passwords[CONSUMER],
                sslcert=str(pg.client_cert),
                sslkey=str(pg.client_key),
                sslpassword="WrongKeyPassphrase",
            ),
            "bad decrypt",
        ),
    }
    secrets_shown = [*roles.passwords.values(), pg.client_key_password, "WrongKeyPassphrase"]
    for name, (dsn, expected) in cases.items():
        proc = cli(child_env(DATABASE_URL=dsn), "migrate", "--status")
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, (name, out)
        assert expected in out, (name, out)
        assert not [s for s in secrets_shown if s in out], (name, out)

    ok = cli(child_env(DATABASE_URL=roles.owner()), "migrate", "--status")
    assert ok.returncode == 0 and f"schema {SCHEMA}: 0 pending" in ok.stdout, ok.stderr
    env = child_env(
        DATABASE_URL=roles.consumer(),
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        PROVIDER_EVENTS_DELIVERY_TIMEOUT="1",
        PROVIDER_EVENTS_STATE_DIR=str(tmp_path / "state"),
    )
    doctor = cli(env, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert checks["database"]["ok"], checks["database"]
    assert checks["table provider_selection_events"]["ok"]
    text = doctor.stdout + doctor.stderr
    assert not [s for s in secrets_shown if s in text], text
    assert "sslmode=verify-full" in checks["database"]["detail"]
    # psql and the service definition agree: the same URL works for a plain libpq client.
    started = time.monotonic()
    with psycopg.connect(roles.consumer(), connect_timeout=5) as conn:
        assert conn.info.parameter_status("server_version")
    assert time.monotonic() - started < 5
