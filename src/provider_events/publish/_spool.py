"""What the outbox, the relay and the lean enqueue share: schema, destinations, relay locks.

Standard library only (``os``, ``sqlite3``, ``fcntl``, ``zlib``, ``time``), and no import of the
rest of the package: the hook and ``publish --background`` path loads this module alone.

A **destination** is the cluster an event is meant for: bootstrap servers, security protocol and
SASL principal (the user name, never a secret). Its **key** is a stable 16-hex-digit digest of
those three; every outbox row records the key (and its own topic), and a relay drains only the
rows of its own key, holding the lock file ``<outbox>.relay-<key>.lock``. Relays of two
destinations never wait for each other, and an event is only ever sent where it was meant to go.
"""

from __future__ import annotations

import fcntl
import os
import time
import zlib

TYPE_CHECKING = False  # no typing import at run time (the hook path)
if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "SCHEMA_VERSION",
    "claim_legacy",
    "destination_key",
    "ensure_schema",
    "lock_path",
    "relay_alive",
    "spawn_relay",
    "try_lock",
    "unlock",
]

#: ``PRAGMA user_version`` of an outbox with destinations, quarantine and log (version 0/1:
#: the single-destination outbox of 0.1, migrated in place by :func:`ensure_schema`).
SCHEMA_VERSION = 2

_TABLES = """
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    topic       TEXT NOT NULL,
    key         BLOB NOT NULL,
    value       BLOB NOT NULL,
    headers     BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    destination TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_key ON outbox (key);
CREATE TABLE IF NOT EXISTS outbox_meta (
    name  TEXT PRIMARY KEY,
    value TEXT
);
"""

_V2 = """
CREATE INDEX IF NOT EXISTS outbox_destination ON outbox (destination, seq);
CREATE TABLE IF NOT EXISTS destinations (
    key           TEXT PRIMARY KEY,
    servers       TEXT NOT NULL,
    protocol      TEXT NOT NULL,
    principal     TEXT NOT NULL,
    topic         TEXT NOT NULL,
    first_seen    REAL NOT NULL,
    last_error    TEXT,
    last_error_at REAL
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq            INTEGER PRIMARY KEY,
    event_id       TEXT NOT NULL UNIQUE,
    destination    TEXT NOT NULL,
    topic          TEXT NOT NULL,
    key            BLOB NOT NULL,
    value          BLOB NOT NULL,
    headers        BLOB NOT NULL,
    enqueued_at    REAL NOT NULL,
    attempts       INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    quarantined_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_log (
    at     REAL NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


def destination_key(servers: str, protocol: str, principal: str) -> str:
    """The stable key of a cluster destination (no secret goes into it)."""
    text = f"{servers}\n{protocol.upper()}\n{principal}".encode()
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"


def _run(conn: sqlite3.Connection, script: str) -> None:
    # one statement at a time: executescript() would COMMIT the caller's transaction first
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or migrate the outbox tables (idempotent, safe with concurrent openers).

    A 0.1 outbox (no ``destination`` column) gets the column with ``''`` in every row: such
    rows are *unassigned* and go to the destination of the first publisher or relay that opens
    the file with a configuration (:func:`claim_legacy`), which is logged in ``outbox_log``.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            _run(conn, _TABLES)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
            if "destination" not in columns:
                conn.execute("ALTER TABLE outbox ADD COLUMN destination TEXT NOT NULL DEFAULT ''")
            _run(conn, _V2)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def register_destination(
    conn: sqlite3.Connection, key: str, servers: str, protocol: str, principal: str, topic: str
) -> None:
    """Remember what ``key`` stands for (inside the caller's write transaction)."""
    conn.execute(
        "INSERT INTO destinations (key, servers, protocol, principal, topic, first_seen)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET topic = excluded.topic",
        (key, servers, protocol, principal, topic, time.time()),
    )


def claim_legacy(conn: sqlite3.Connection, key: str) -> int:
    """Assign unassigned (0.1) rows to ``key``; returns how many (usually 0: one indexed read)."""
    if conn.execute("SELECT 1 FROM outbox WHERE destination = '' LIMIT 1").fetchone() is None:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        n = conn.execute(
            "UPDATE outbox SET destination = ? WHERE destination = ''", (key,)
        ).rowcount
        if n:
            conn.execute(
                "INSERT INTO outbox_log VALUES (?, 'assign', ?)",
                (time.time(), f"{n} event(s) without a destination assigned to {key}"),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return int(n)


# -- relay locks ---------------------------------------------------------------------------------
def lock_path(outbox_path: str | os.PathLike[str], key: str) -> str:
    return f"{os.fspath(outbox_path)}.relay-{key}.lock"


def try_lock(path: str) -> int | None:
    """An fd holding the exclusive lock ``path``, or ``None`` when another process holds it."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def unlock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def relay_alive(outbox_path: str | os.PathLike[str], key: str) -> bool:
    """Whether a relay holds the lock of destination ``key``."""
    fd = try_lock(lock_path(outbox_path, key))
    if fd is None:
        return True
    unlock(fd)
    return False


#: The fd number under which a spawned relay finds the lock its parent took for it.
LOCK_FD = 3


def spawn_relay(
    outbox_path: str | os.PathLike[str],
    key: str,
    env: dict[str, str],
    python: str,
    src_dir: str,
) -> bool:
    """Start a detached ``relay --detached`` for ``key`` unless one is alive. True if started.

    The lock is taken here and handed to the child (as fd :data:`LOCK_FD`), so between this
    call and the child's start no other publisher sees the destination unattended: a burst of
    publishes starts exactly one relay.
    """
    fd = try_lock(lock_path(outbox_path, key))
    if fd is None:
        return False
    high = devnull = -1
    try:
        # Above the fds the child's file actions write to, so no dup2 is a no-op.
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        low = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            devnull = fcntl.fcntl(low, fcntl.F_DUPFD_CLOEXEC, 10)
        finally:
            os.close(low)
        child_env = dict(env)
        child_env["PROVIDER_EVENTS_OUTBOX"] = os.fspath(outbox_path)
        old = child_env.get("PYTHONPATH")
        child_env["PYTHONPATH"] = src_dir + (os.pathsep + old if old else "")
        os.posix_spawn(
            python,
            [python, "-m", "provider_events.cli", "relay", "--detached", "--lock-fd", str(LOCK_FD)],
            child_env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0),
                (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, devnull, 2),
                (os.POSIX_SPAWN_DUP2, high, LOCK_FD),
            ],
            setsid=True,
        )
        return True
    except OSError:
        fcntl.flock(fd, fcntl.LOCK_UN)  # no child holds it: let the next publish try again
        return False
    finally:
        os.close(fd)
        for extra in (high, devnull):
            if extra >= 0:
                os.close(extra)
