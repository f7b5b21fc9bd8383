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
from provider_events.publish import _spool

if TYPE_CHECKING:
    from provider_events.events._envelope import OutgoingEvent

__all__ = [
    "Destination",
    "DestinationStatus",
    "Outbox",
    "OutboxRow",
    "OutboxStatus",
    "QuarantinedRow",
]


@dataclass(frozen=True, slots=True)
class Destination:
    """Where events go: a cluster (servers, protocol, principal — never a secret) and a topic.

    ``key`` (see :func:`provider_events.publish._spool.destination_key`) names the cluster; each
    outbox row records it with its own topic. Build one with
    :func:`provider_events.publish._relay.destination_of`.
    """

    servers: str
    protocol: str
    principal: str
    topic: str

    @property
    def key(self) -> str:
        return _spool.destination_key(self.servers, self.protocol, self.principal)

    def describe(self) -> str:
        who = f" as {self.principal}" if self.principal else ""
        return f"{self.servers} ({self.protocol}{who}) topic {self.topic}"


@dataclass(frozen=True, slots=True)
class DestinationStatus:
    key: str
    servers: str
    protocol: str
    principal: str
    topic: str
    pending: int
    oldest_age_seconds: float | None
    quarantined: int
    last_error: str | None
    last_error_at: float | None


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    seq: int
    event_id: str
    destination: str
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    enqueued_at: float
    attempts: int
    reason: str
    quarantined_at: float


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
    quarantined: int = 0
    destinations: tuple[DestinationStatus, ...] = ()


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

    def __init__(
        self,
        path: Path,
        max_events: int = 100_000,
        max_bytes: int = 256 << 20,
        destination: Destination | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_bytes = max_bytes
        #: The destination new events are recorded for, and the only one this instance's
        #: ``batch``/``pending``/``has_key`` look at; ``None``: every destination (tests, tools).
        self.destination = destination
        self._key = destination.key if destination is not None else None
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
            _spool.ensure_schema(conn)
            if self._key is not None:
                _spool.claim_legacy(conn, self._key)
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
                self._key or "",
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
                "INSERT OR IGNORE INTO outbox"
                " (event_id, topic, key, value, headers, enqueued_at, destination)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._register(conn)
            if error:
                self._set_error(conn, error)
        return len(rows)

    def _register(self, conn: sqlite3.Connection) -> None:
        d = self.destination
        if d is not None:
            _spool.register_destination(conn, d.key, d.servers, d.protocol, d.principal, d.topic)

    def _set_error(self, conn: sqlite3.Connection, error: str) -> None:
        now = time.time()
        conn.executemany(
            "INSERT INTO outbox_meta VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [("last_error", error[:500]), ("last_error_at", repr(now))],
        )
        if self._key is not None:
            conn.execute(
                "UPDATE destinations SET last_error = ?, last_error_at = ? WHERE key = ?",
                (error[:500], now, self._key),
            )

    @_serialised
    def record_error(self, error: str) -> None:
        with self._write() as conn:
            self._register(conn)
            self._set_error(conn, error)

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
                    " FROM outbox WHERE seq > ? AND (? IS NULL OR destination = ?)"
                    " ORDER BY seq LIMIT ?",
                    (after_seq, self._key, self._key, limit),
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
            args: tuple[str, ...] = ()
            if self._key is None:
                query = "SELECT count(*) FROM outbox"
            else:
                query, args = "SELECT count(*) FROM outbox WHERE destination = ?", (self._key,)
            return int(self._connect().execute(query, args).fetchone()[0])
        except sqlite3.Error as exc:
            raise self._translate(exc) from None

    @_serialised
    def has_key(self, key: bytes) -> bool:
        """Whether an event with this partition key is still waiting (to keep per-key order)."""
        try:
            row = (
                self._connect()
                .execute(
                    "SELECT 1 FROM outbox WHERE key = ? AND (? IS NULL OR destination = ?) LIMIT 1",
                    (key, self._key, self._key),
                )
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return row is not None

    @_serialised
    def status(self) -> OutboxStatus:
        conn = self._connect()
        now = time.time()
        try:
            count, used, oldest = conn.execute(
                "SELECT count(*), coalesce(sum(length(value) + length(key) + length(headers)), 0),"
                " min(enqueued_at) FROM outbox"
            ).fetchone()
            meta = dict(conn.execute("SELECT name, value FROM outbox_meta").fetchall())
            (quarantined,) = conn.execute("SELECT count(*) FROM quarantine").fetchone()
            per: dict[str, list[object]] = {}
            for dest, n, first in conn.execute(
                "SELECT destination, count(*), min(enqueued_at) FROM outbox GROUP BY destination"
            ):
                per[dest] = [n, first, 0]
            for dest, n in conn.execute(
                "SELECT destination, count(*) FROM quarantine GROUP BY destination"
            ):
                per.setdefault(dest, [0, None, 0])[2] = n
            known = {
                r[0]: r
                for r in conn.execute(
                    "SELECT key, servers, protocol, principal, topic, last_error, last_error_at"
                    " FROM destinations"
                )
            }
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        destinations = []
        for dest in sorted(set(per) | set(known)):
            n, first, q = per.get(dest, [0, None, 0])
            info = known.get(dest) or (dest, "?", "?", "", "?", None, None)
            if not n and not q and dest != self._key and info[5] is None:
                continue  # a destination with nothing to say
            destinations.append(
                DestinationStatus(
                    key=dest or "(unassigned)",
                    servers=info[1],
                    protocol=info[2],
                    principal=info[3],
                    topic=info[4],
                    pending=int(n),  # type: ignore[call-overload]
                    oldest_age_seconds=(now - first) if first is not None else None,  # type: ignore[operator]
                    quarantined=int(q),  # type: ignore[call-overload]
                    last_error=info[5],
                    last_error_at=info[6],
                )
            )
        return OutboxStatus(
            path=str(self.path),
            pending=int(count),
            oldest_age_seconds=(now - oldest) if oldest is not None else None,
            size_bytes=int(used),
            max_events=self.max_events,
            max_bytes=self.max_bytes,
            refused_full=int(meta.get("refused_full", 0) or 0),
            delivered_total=int(meta.get("delivered_total", 0) or 0),
            last_error=meta.get("last_error"),
            last_error_at=float(meta["last_error_at"]) if meta.get("last_error_at") else None,
            quarantined=int(quarantined),
            destinations=tuple(destinations),
        )

    # -- quarantine, retarget, drop (each logged in ``outbox_log``) ------------------------------
    @staticmethod
    def _log(conn: sqlite3.Connection, action: str, detail: str) -> None:
        conn.execute("INSERT INTO outbox_log VALUES (?, ?, ?)", (time.time(), action, detail))

    @_serialised
    def quarantine(self, failures: Sequence[tuple[int, str]]) -> None:
        """Move events the broker can never accept (``(seq, reason)``) out of the way."""
        if not failures:
            return
        now = time.time()
        with self._write() as conn:
            for seq, reason in failures:
                conn.execute(
                    "INSERT OR REPLACE INTO quarantine SELECT seq, event_id, destination, topic,"
                    " key, value, headers, enqueued_at, attempts, ?, ? FROM outbox WHERE seq = ?",
                    (reason[:500], now, seq),
                )
                conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._log(conn, "quarantine", f"{len(failures)} event(s): {failures[0][1][:200]}")

    @_serialised
    def quarantined(self, limit: int | None = None) -> list[QuarantinedRow]:
        try:
            rows = (
                self._connect()
                .execute(
                    "SELECT seq, event_id, destination, topic, key, value, headers, enqueued_at,"
                    " attempts, reason, quarantined_at FROM quarantine ORDER BY seq LIMIT ?",
                    (-1 if limit is None else limit,),
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        return [
            QuarantinedRow(
                r[0],
                r[1],
                r[2],
                r[3],
                bytes(r[4]),
                bytes(r[5]),
                _decode_headers(bytes(r[6])),
                r[7],
                r[8],
                r[9],
                r[10],
            )
            for r in rows
        ]

    @_serialised
    def requeue(self, event_ids: Sequence[str] | None = None) -> int:
        """Put quarantined events (all, or those of ``event_ids``) back at the end of the
        outbox, for this instance's destination when it has one (else their own)."""
        with self._write() as conn:
            ids = (
                [r[0] for r in conn.execute("SELECT event_id FROM quarantine")]
                if event_ids is None
                else list(event_ids)
            )
            moved = 0
            for event_id in ids:
                moved += conn.execute(
                    "INSERT OR IGNORE INTO outbox (event_id, topic, key, value, headers,"
                    " enqueued_at, attempts, destination) SELECT event_id, topic, key, value,"
                    " headers, enqueued_at, attempts, coalesce(?, destination) FROM quarantine"
                    " WHERE event_id = ?",
                    (self._key, event_id),
                ).rowcount
                conn.execute("DELETE FROM quarantine WHERE event_id = ?", (event_id,))
            self._register(conn)
            self._log(
                conn,
                "requeue",
                f"{moved} event(s) requeued to {self._key or 'their own destination'}",
            )
        return moved

    @_serialised
    def retarget(self, from_key: str, topic: str | None = None) -> int:
        """Move every pending event of destination ``from_key`` to this instance's destination
        (and to ``topic`` when given). Returns how many moved."""
        if self._key is None:
            raise OutboxError("retarget needs the destination of the current configuration")
        with self._write() as conn:
            n = conn.execute(
                "UPDATE outbox SET destination = ?, topic = coalesce(?, topic)"
                " WHERE destination = ?",
                (self._key, topic, from_key),
            ).rowcount
            self._register(conn)
            self._log(conn, "retarget", f"{n} event(s) moved from {from_key} to {self._key}")
        return int(n)

    @_serialised
    def drop(self, key: str) -> int:
        """Delete every pending event of destination ``key`` (the caller confirmed it)."""
        with self._write() as conn:
            n = conn.execute("DELETE FROM outbox WHERE destination = ?", (key,)).rowcount
            self._count(conn, "dropped_total", n)
            self._log(conn, "drop", f"{n} event(s) of destination {key} dropped")
        return int(n)

    @_serialised
    def log_entries(self, limit: int = 20) -> list[tuple[float, str, str]]:
        try:
            rows = self._connect().execute(
                "SELECT at, action, detail FROM outbox_log ORDER BY rowid DESC LIMIT ?", (limit,)
            )
            return [(float(a), str(b), str(c)) for a, b, c in rows]
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
