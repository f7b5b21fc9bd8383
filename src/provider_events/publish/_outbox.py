"""The durable local outbox: SQLite in WAL mode with ``synchronous=FULL``.

An event the broker has not acknowledged within the delivery bound is committed here (fsync'd)
before the publish call returns, and is removed only after the broker acknowledges it (see
``_relay``). Order per partition key is the insertion order (``seq``). The size is bounded by
settings; when full a new event is refused with :class:`OutboxFullError` and counted, and
nothing already accepted is ever dropped.

Why SQLite: it is in the standard library (no import cost beyond ``sqlite3``), its WAL commit is
durable across power loss with ``synchronous=FULL``, and it lets many processes append at once
with a short busy wait. A corrupted file is reported as :class:`OutboxCorruptError` and left
untouched for inspection.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from provider_events._retry import Backoff
from provider_events.errors import OutboxCorruptError, OutboxError, OutboxFullError

if TYPE_CHECKING:
    from provider_events.events._envelope import OutgoingEvent

__all__ = ["Outbox", "OutboxRow", "OutboxStatus"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    topic       TEXT NOT NULL,
    key         BLOB NOT NULL,
    value       BLOB NOT NULL,
    headers     BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_key ON outbox (key);
CREATE TABLE IF NOT EXISTS outbox_meta (
    name  TEXT PRIMARY KEY,
    value TEXT
);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    event_id: str
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    enqueued_at: float
    attempts: int


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    path: str
    pending: int
    oldest_age_seconds: float | None
    size_bytes: int
    max_events: int
    max_bytes: int
    refused_full: int
    delivered_total: int
    last_error: str | None
    last_error_at: float | None


def _encode_headers(headers: Sequence[tuple[str, bytes]]) -> bytes:
    # length-prefixed, binary-safe and import-free: name\0value-length\0value ...
    out = bytearray()
    for name, value in headers:
        out += name.encode() + b"\0" + str(len(value)).encode() + b"\0" + value
    return bytes(out)


def _decode_headers(blob: bytes) -> list[tuple[str, bytes]]:
    headers: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(blob):
        name_end = blob.index(b"\0", pos)
        len_end = blob.index(b"\0", name_end + 1)
        size = int(blob[name_end + 1 : len_end])
        start = len_end + 1
        headers.append((blob[pos:name_end].decode(), blob[start : start + size]))
        pos = start + size
    return headers


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _serialised(
    method: Callable[Concatenate[Outbox, _P], _T],
) -> Callable[Concatenate[Outbox, _P], _T]:
    """Run ``method`` holding the instance's lock: its one connection is not shareable mid-use
    (two threads in ``add`` at once raised "cannot start a transaction within a transaction",
    and the event was neither sent nor spooled)."""

    @functools.wraps(method)
    def locked(self: Outbox, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL once. The mode persists in the file; switching needs an exclusive
    lock and SQLite answers "database is locked" at once (no busy wait) while another process
    holds the file open, so new outboxes opened by many processes at once retry briefly."""
    retry = Backoff(0.005, 0.02)
    for attempt in range(200):
        if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 199:
                raise
            time.sleep(retry.delay(attempt + 1))


class Outbox:
    """One outbox file. Cheap to open; safe across threads (calls on one instance take turns)
    and processes (SQLite's locks with a busy wait)."""

    def __init__(self, path: Path, max_events: int = 100_000, max_bytes: int = 256 << 20) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.RLock()

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 30000")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None
        except OSError as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc.strerror or exc}") from None
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _translate(self, exc: Exception) -> OutboxError:
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "corrupt" in text
        ):
            return OutboxCorruptError(
                f"outbox {self.path} is corrupted ({text}); it was left untouched — move it "
                "aside to start a new one (its events can be inspected with sqlite3)"
            )
        if "disk" in text.lower() or "full" in text.lower():
            return OutboxError(f"outbox {self.path}: disk full or not writable ({text})")
        return OutboxError(f"outbox {self.path}: {text}")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction (a caller may commit early and
        raise); rolled back on any error, SQLite's errors translated."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._translate(exc) from None

    @staticmethod
    def _count(conn: sqlite3.Connection, name: str, n: int) -> None:
        """Add ``n`` to the counter ``name`` of ``outbox_meta``."""
        conn.execute(
            "INSERT INTO outbox_meta VALUES (?, ?) ON CONFLICT(name)"
            " DO UPDATE SET value = CAST(value AS INTEGER) + ?",
            (name, str(n), n),
        )

    @_serialised
    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def exists(self) -> bool:
        return self.path.exists()

    # -- writing ----------------------------------------------------------------------------
    @_serialised
    def add(self, events: Iterable[OutgoingEvent], error: str | None = None) -> int:
        """Durably append events (``OutgoingEvent``s); all or none. Returns how many were added.

        Raises :class:`OutboxFullError` when the bound would be exceeded (nothing is written
        and the refusal is counted), :class:`OutboxCorruptError` or :class:`OutboxError`.
        """
        rows = [
            (
                e.event_id,
                e.topic,
                e.key,
                e.value,
                _encode_headers(e.headers),
                time.time(),
            )
            for e in events
        ]
        if not rows:
            return 0
        new_bytes = sum(len(r[3]) + len(r[2]) + len(r[4]) for r in rows)
        with self._write() as conn:
            count = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
            # The events' bytes never exceed the database's pages, so the exact sum (a scan
            # of every row under the write lock: 70 ms at 80k events, which queued concurrent
            # publishers for seconds during an outage) is needed only near a bound.
            (page_count,) = conn.execute("PRAGMA page_count").fetchone()
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
            full = count + len(rows) > self.max_events
            used = None
            if full or page_count * page_size + new_bytes > self.max_bytes:
                used = conn.execute(
                    "SELECT coalesce(sum(length(value) + length(key) + length(headers)), 0)"
                    " FROM outbox"
                ).fetchone()[0]
                full = full or used + new_bytes > self.max_bytes
            if full:
                self._count(conn, "refused_full", len(rows))
                conn.execute("COMMIT")  # the refusal is counted; nothing else is written
                raise OutboxFullError(
                    f"outbox {self.path} is full ({count} events, {used} bytes; limits "
                    f"{self.max_events} events, {self.max_bytes} bytes): event refused — "
                    "start the broker or run `provider-events relay`"
                )
            conn.executemany(
                "INSERT OR IGNORE INTO outbox (event_id, topic, key, value, headers, enqueued_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            if error:
                self._set_error(conn, error)
        return len(rows)

    @staticmethod
    def _set_error(conn: sqlite3.Connection, error: str) -> None:
        conn.executemany(
            "INSERT INTO outbox_meta VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [("last_error", error[:500]), ("last_error_at", repr(time.time()))],
        )

    @_serialised
    def record_error(self, error: str) -> None:
        try:
            self._set_error(self._connect(), error)
        except sqlite3.Error as exc:
            raise self._translate(exc) from None

    @_serialised
    def remove(self, seqs: Sequence[int]) -> None:
        """Remove acknowledged events (by ``seq``) and count them as delivered."""
        if not seqs:
            return
        with self._write() as conn:
            conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            self._count(conn, "delivered_total", len(seqs))

    @_serialised
    def mark_attempt(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        # One transaction: in autocommit mode each UPDATE would be its own fsync'd commit
        # (a 1,000-row batch took the write lock 1,000 times and stalled publishers).
        with self._write() as conn:
            conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", [(s,) for s in seqs]
            )

    # -- reading ----------------------------------------------------------------------------
    @_serialised
    def batch(self, limit: int = 1000, after_seq: int = 0) -> list[OutboxRow]:
        """The oldest pending events (in ``seq`` order, so order per key is kept)."""
        try:
            rows = (
                self._connect()
                .execute(
                    "SELECT seq, event_id, topic, key, value, headers, enqueued_at, attempts"
                    " FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return [
            OutboxRow(
                r[0], r[1], r[2], bytes(r[3]), bytes(r[4]), _decode_headers(bytes(r[5])), r[6], r[7]
            )
            for r in rows
        ]

    @_serialised
    def pending(self) -> int:
        if not self.path.exists():
            return 0
        try:
            return int(self._connect().execute("SELECT count(*) FROM outbox").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._translate(exc) from None

    @_serialised
    def has_key(self, key: bytes) -> bool:
        """Whether an event with this partition key is still waiting (to keep per-key order)."""
        try:
            row = (
                self._connect()
                .execute("SELECT 1 FROM outbox WHERE key = ? LIMIT 1", (key,))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return row is not None

    @_serialised
    def status(self) -> OutboxStatus:
        conn = self._connect()
        try:
            count, used, oldest = conn.execute(
                "SELECT count(*), coalesce(sum(length(value) + length(key) + length(headers)), 0),"
                " min(enqueued_at) FROM outbox"
            ).fetchone()
            meta = dict(conn.execute("SELECT name, value FROM outbox_meta").fetchall())
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return OutboxStatus(
            path=str(self.path),
            pending=int(count),
            oldest_age_seconds=(time.time() - oldest) if oldest is not None else None,
            size_bytes=int(used),
            max_events=self.max_events,
            max_bytes=self.max_bytes,
            refused_full=int(meta.get("refused_full", 0) or 0),
            delivered_total=int(meta.get("delivered_total", 0) or 0),
            last_error=meta.get("last_error"),
            last_error_at=float(meta["last_error_at"]) if meta.get("last_error_at") else None,
        )
