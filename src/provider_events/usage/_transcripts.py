"""Claude Code transcripts -> ``omninode.agent.provider.completed.v1`` outcomes.

Claude Code appends one JSON object per line to ``<config>/projects/<project>/<session>.jsonl``
(sub-agents to ``<session>/subagents/agent-*.jsonl``). An API response appears as
``type: "assistant"`` lines carrying ``message.{id, model, usage, stop_reason}``, ``requestId``,
``timestamp``, ``sessionId``, ``cwd``, ``isSidechain`` (and ``costUSD`` in older versions);
one line per content block, each repeating the same usage, and sub-agent files repeat requests.
So an outcome is keyed by (``message.id``, ``requestId``) across every file (the first line
seen wins, as ccusage counts). ``<synthetic>`` models and ``isApiErrorMessage`` lines are not
API responses and are skipped.

Reading is incremental and bounded in memory: files are streamed in 1 MiB blocks from the
offset a state file (SQLite, in the state directory) remembers per file (with its device,
inode and size: a replaced or truncated file is read again from the start, de-duplication
keeps that harmless); the keys already published live in the same SQLite file, not in
memory. Only whole lines are consumed: a half-written last line is left for the next run. A
line that does not decode or validate is counted and skipped. The state advances only in the
transaction that follows a successful publish (stored, delivered or safely queued), so an
interrupted import publishes nothing twice and loses nothing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from provider_events.errors import (
    InvalidEventError,
    OutboxError,
    TranscriptImportError,
)
from provider_events.events._models import OUTCOME_LIMITS, ProviderCompletedPayloadV1
from provider_events.settings import Settings, process_environ

__all__ = [
    "OUTCOME_NAMESPACE",
    "ImportSummary",
    "TranscriptImportError",
    "default_projects_dirs",
    "find_transcripts",
    "import_transcripts",
    "outcome_id",
    "publish_turn_outcomes",
]

#: UUIDv5 namespace of outcome ids: ``uuid5(OUTCOME_NAMESPACE, f"{message.id}:{requestId}")``.
OUTCOME_NAMESPACE = uuid.UUID("6f1d6f7e-5a0b-4c58-9a43-2f7d0c6b8e11")
BLOCK = 1 << 20
BATCH = 2000
MAX_LINE = 16 << 20
_MAX_TOKENS = OUTCOME_LIMITS["tokens"]
_MAX_COST = OUTCOME_LIMITS["cost_usd"]  # a longer line is counted bad and skipped, never held whole


# -- the line format (only the fields used; msgspec skips the rest without building it) -------
class _CacheCreation(msgspec.Struct):
    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: _CacheCreation | None = None


class _Message(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    usage: _Usage | None = None
    stop_reason: str | None = None


class _Line(msgspec.Struct):
    type: str | None = None
    message: _Message | None = None
    requestId: str | None = None
    timestamp: str | None = None
    sessionId: str | None = None
    cwd: str | None = None
    isSidechain: bool | None = None
    agentId: str | None = None
    costUSD: float | None = None
    isApiErrorMessage: bool | None = None


_decode_line = msgspec.json.Decoder(_Line).decode


@dataclass(slots=True)
class ImportSummary:
    """What one import did."""

    files: int = 0
    files_read: int = 0
    skipped_files: int = 0
    file_error: str | None = None
    lines: int = 0
    responses: int = 0
    published: int = 0
    duplicates: int = 0
    skipped_synthetic: int = 0
    skipped_api_error: int = 0
    bad_lines: int = 0
    partial_lines: int = 0
    unpriced: int = 0
    bytes_read: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def outcome_id(message_id: str, request_id: str | None) -> uuid.UUID:
    return uuid.uuid5(OUTCOME_NAMESPACE, f"{message_id}:{request_id or ''}")


# -- where transcripts live -------------------------------------------------------------------
def default_projects_dirs(environ: dict[str, str] | None = None) -> list[Path]:
    """Claude Code's projects folders: ``$CLAUDE_CONFIG_DIR`` (comma-separated) ``/projects``,
    ``$XDG_CONFIG_HOME/claude/projects`` and ``~/.claude/projects``, those that exist."""
    env = dict(process_environ(environ))
    candidates: list[Path] = []
    for part in (env.get("CLAUDE_CONFIG_DIR") or "").split(","):
        if part.strip():
            candidates.append(Path(part.strip()).expanduser() / "projects")
    xdg = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")) / ".config")
    candidates.append(Path(xdg).expanduser() / "claude" / "projects")
    candidates.append(Path(env.get("HOME", "~")).expanduser() / ".claude" / "projects")
    seen: set[Path] = set()
    found = []
    for c in candidates:
        try:
            real = c.resolve()
        except OSError:
            continue
        if real not in seen and c.is_dir():
            seen.add(real)
            found.append(c)
    return found


def find_transcripts(roots: Iterable[Path]) -> list[Path]:
    """Every ``*.jsonl`` under ``roots``, sorted (a session's file before its sub-agents')."""
    files: list[Path] = []
    for root in roots:
        for dirpath, _dirs, names in os.walk(root):
            files.extend(Path(dirpath, n) for n in names if n.endswith(".jsonl"))
    return sorted(set(files))


# -- the state file -------------------------------------------------------------------------
_STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, device INTEGER, inode INTEGER, size INTEGER, offset INTEGER,
    head BLOB  -- sha256 of the first min(offset, 4096) bytes: a reused inode is noticed
);
CREATE TABLE IF NOT EXISTS seen (id BLOB PRIMARY KEY) WITHOUT ROWID;  -- b"<message.id>:<requestId>"
CREATE TABLE IF NOT EXISTS sessions (session_id TEXT PRIMARY KEY, provider TEXT NOT NULL);
"""


class _State:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "usage-import.sqlite3"
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.executescript(_STATE_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise TranscriptImportError(f"import state {self.path}: {exc}") from None

    def file(self, path: str) -> tuple[int, int, int, int, bytes] | None:
        row = self.conn.execute(
            "SELECT device, inode, size, offset, head FROM files WHERE path = ?", (path,)
        ).fetchone()
        if row is None:
            return None
        return (int(row[0]), int(row[1]), int(row[2]), int(row[3]), bytes(row[4] or b""))

    def provider_of(self, session_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT provider FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def remember_provider(self, session_id: str, provider: str) -> None:
        self.conn.execute(
            "INSERT INTO sessions VALUES (?, ?) ON CONFLICT (session_id) "
            "DO UPDATE SET provider = excluded.provider",
            (session_id, provider),
        )

    def close(self) -> None:
        self.conn.close()


# -- reading --------------------------------------------------------------------------------
def _lines(handle: Any, start: int) -> Iterator[tuple[bytes | None, int]]:
    """(line without newline, offset after it) for each whole line from ``start``; a line
    longer than :data:`MAX_LINE` comes as ``None`` (skipped, counted bad)."""
    pos = start
    tail = b""
    skipping = False
    while True:
        block = handle.read(BLOCK)
        if not block:
            return
        data = tail + block if tail else block
        begin = 0
        while True:
            nl = data.find(b"\n", begin)
            if nl < 0:
                break
            end_pos = pos + (nl + 1 - begin)
            if skipping:
                skipping = False
                yield None, end_pos
            else:
                yield data[begin:nl], end_pos
            pos = end_pos
            begin = nl + 1
        tail = data[begin:]
        if len(tail) > MAX_LINE:
            pos += len(tail)
            tail = b""
            skipping = True


def _head(handle: Any, offset: int, *, restore: bool = False) -> bytes:
    """sha256 of the file's first ``min(offset, 4096)`` bytes (the position is kept if asked)."""
    import hashlib

    here = handle.tell() if restore else None
    handle.seek(0)
    digest = hashlib.sha256(handle.read(min(offset, 4096))).digest()
    if here is not None:
        handle.seek(here)
    return digest


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@functools.lru_cache(maxsize=4096)  # sessions, folders, agents repeat on every line
def _text(value: str | None, limit: int = 200) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > limit or not value.isprintable():
        return None
    return value


class _Outcomes:
    """Turns decoded lines into payloads: pricing, provider per session, host."""

    def __init__(
        self, settings: Settings, state: _State, provider: str | None, prices: Any | None
    ) -> None:
        self.settings = settings
        self.state = state
        self.provider = provider
        self._prices = prices
        self.host = _text(socket.gethostname()) or None
        self._providers: dict[str, str] = {}
        #: Known provider per session (``import_transcripts(providers=...)``).
        self.sessions: Mapping[str, str] = {}

    @property
    def prices(self) -> Any:
        if self._prices is None:
            from provider_events.usage._prices import PriceTable

            self._prices = PriceTable(self.settings.prices_file, cache_dir=self.settings.state_dir)
        return self._prices

    def provider_for(self, session: str, model: str) -> str:
        if self.provider:
            return self.provider
        known = self._providers.get(session) or self.sessions.get(session)
        if known is None:
            known = self.state.provider_of(session)
            if known is None:
                known = "claude" if model.startswith("claude-") else "unknown"
            if len(self._providers) > 10_000:
                self._providers.clear()
            self._providers[session] = known
        return known

    def payload(self, line: _Line, session_hint: str) -> ProviderCompletedPayloadV1:
        msg = line.message
        assert msg is not None and msg.usage is not None and msg.model is not None
        u = msg.usage
        when = _when(line.timestamp)
        if when is None:
            raise InvalidEventError("no usable timestamp")
        session = _text(line.sessionId, 128) or session_hint
        cw_total = u.cache_creation_input_tokens or 0
        cc = u.cache_creation
        if cc is not None and (cc.ephemeral_5m_input_tokens or cc.ephemeral_1h_input_tokens):
            w5 = cc.ephemeral_5m_input_tokens or 0
            w1 = cc.ephemeral_1h_input_tokens or 0
        else:
            w5, w1 = cw_total, 0  # no breakdown: Anthropic's default cache lifetime is 5 minutes
        inp, out, read = u.input_tokens or 0, u.output_tokens or 0, u.cache_read_input_tokens or 0
        for count in (inp, out, read, w5, w1):
            if not 0 <= count <= _MAX_TOKENS:
                raise InvalidEventError(f"token count {count} out of range")
        if len(msg.model) > 200 or not msg.model.isprintable():
            raise InvalidEventError("model name too long or not printable")
        provider = self.provider_for(session, msg.model)
        reported = line.costUSD
        if reported is not None and 0 <= reported <= _MAX_COST:
            cost, source, version = reported, "reported", None
        else:
            priced = self.prices.price(provider, msg.model, when, inp, out, read, w5, w1)
            cost, source, version = priced.cost_usd, priced.source, priced.version
        try:
            return ProviderCompletedPayloadV1(
                outcome_id=outcome_id(msg.id or "", line.requestId),
                correlation_id=session,
                provider_name=provider,
                model_name=msg.model,
                completed_at=when,
                agent=_text(line.agentId),
                sidechain=bool(line.isSidechain),
                project=_text(line.cwd, 1000),
                host=self.host,
                input_tokens=inp,
                output_tokens=out,
                cache_read_tokens=read,
                cache_write_5m_tokens=w5,
                cache_write_1h_tokens=w1,
                cost_usd=cost,
                cost_source=source,
                price_version=version,
                stop_reason=_text(msg.stop_reason),
                message_id=_text(msg.id),
                request_id=_text(line.requestId),
            )
        except (msgspec.ValidationError, ValueError, TypeError) as exc:
            raise InvalidEventError(str(exc)) from None


Sink = Callable[[Sequence[ProviderCompletedPayloadV1]], None]


def _publisher_sink(settings: Settings, delivery: str, summary: ImportSummary) -> Sink:
    from provider_events.events._envelope import build_provider_completion
    from provider_events.publish._publisher import Publisher

    publisher = Publisher(settings)

    def send(payloads: Sequence[ProviderCompletedPayloadV1]) -> None:
        events = [build_provider_completion(p, settings=settings) for p in payloads]
        try:
            results = publisher.send_many_sync(events, delivery)  # type: ignore[arg-type]
        except OutboxError as exc:
            raise TranscriptImportError(f"outcomes not published: {exc}") from None
        for r in results:
            summary.statuses[r.status.value] = summary.statuses.get(r.status.value, 0) + 1
        failed = [r for r in results if not r.accepted]
        if failed:
            raise TranscriptImportError(
                f"{len(failed)} outcome(s) not published: {failed[0].error}; "
                "the import state did not advance, run it again"
            )

    return send


class _Batch:
    """Outcomes not yet published and the state changes that follow them, in one open SQLite
    transaction: :meth:`flush` publishes, then commits (file offsets and seen keys) together.
    Spans files, so many small transcripts cost one publish and one commit per batch."""

    def __init__(self, conn: sqlite3.Connection, send: Sink) -> None:
        self.conn = conn
        self.send = send
        self.pending: list[ProviderCompletedPayloadV1] = []
        self.conn.execute("BEGIN IMMEDIATE")

    def offset(self, key: str, st: os.stat_result, offset: int, head: bytes) -> None:
        self.conn.execute(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
            "device = excluded.device, inode = excluded.inode, size = excluded.size, "
            "offset = excluded.offset, head = excluded.head",
            (key, st.st_dev, st.st_ino, st.st_size, offset, head),
        )

    def flush(self, *, reopen: bool = True) -> None:
        if self.pending:
            self.send(self.pending)
            self.pending.clear()
        self.conn.execute("COMMIT")
        if reopen:
            self.conn.execute("BEGIN IMMEDIATE")

    def abort(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def _read_file(
    path: Path,
    state: _State,
    outcomes: _Outcomes,
    batch: _Batch,
    summary: ImportSummary,
    on_bytes: Callable[[int], None] | None,
) -> None:
    key = str(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device named *.jsonl would block or
            summary.skipped_files += 1  # never end: only regular files are transcripts
            return
        handle = path.open("rb")
    except OSError as exc:  # vanished or unreadable: the others are still imported
        summary.skipped_files += 1
        if summary.file_error is None:
            summary.file_error = f"cannot read {path}: {exc.strerror or exc}"
        return
    with handle:
        known = state.file(key)
        start = 0
        if (
            known is not None
            and known[:2] == (st.st_dev, st.st_ino)
            and known[3] <= st.st_size
            and _head(handle, known[3]) == known[4]  # not a new file under a reused inode
        ):
            start = known[3]
        if start == st.st_size:
            if on_bytes:
                on_bytes(st.st_size)
            return
        summary.files_read += 1
        handle.seek(start)
        session_hint = path.stem if path.parent.name != "subagents" else path.parent.parent.name
        conn = state.conn
        pending = batch.pending
        done_to = start
        last_report = start
        last_key = ""
        for raw, end in _lines(handle, start):
            summary.lines += 1
            done_to = end
            if on_bytes and end - last_report >= BLOCK:
                on_bytes(end - last_report)
                last_report = end
            if raw is None:
                summary.bad_lines += 1
                continue
            if b'"usage"' not in raw:
                stripped = raw.strip()
                if stripped and not (stripped[:1] == b"{" and stripped[-1:] == b"}"):
                    summary.bad_lines += 1
                continue
            try:
                line = _decode_line(raw)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                summary.bad_lines += 1
                continue
            msg = line.message
            if line.type != "assistant" or msg is None or msg.usage is None:
                continue
            if line.isApiErrorMessage:
                summary.skipped_api_error += 1
                continue
            if not msg.model or msg.model == "<synthetic>":
                summary.skipped_synthetic += 1
                continue
            if not msg.id:
                summary.bad_lines += 1
                continue
            summary.responses += 1
            response = f"{msg.id}:{line.requestId or ''}"
            if response == last_key:  # the next content block of the same response
                summary.duplicates += 1
                continue
            last_key = response
            seen_key = response.encode()
            cur = conn.execute("INSERT OR IGNORE INTO seen VALUES (?)", (seen_key,))
            if cur.rowcount != 1:
                summary.duplicates += 1
                continue
            try:
                payload = outcomes.payload(line, session_hint)
            except InvalidEventError:
                summary.bad_lines += 1
                conn.execute("DELETE FROM seen WHERE id = ?", (seen_key,))
                last_key = ""
                continue
            _count(summary, payload)
            pending.append(payload)
            if len(pending) >= BATCH:
                batch.offset(key, st, end, _head(handle, end, restore=True))
                batch.flush()
        if handle.tell() > done_to:
            summary.partial_lines += 1  # a half-written last line: read next time
        batch.offset(key, st, done_to, _head(handle, done_to))
        summary.bytes_read += done_to - start
        if on_bytes:
            on_bytes(st.st_size - last_report)


def _count(summary: ImportSummary, p: ProviderCompletedPayloadV1) -> None:
    summary.published += 1
    summary.input_tokens += p.input_tokens
    summary.output_tokens += p.output_tokens
    summary.cache_read_tokens += p.cache_read_tokens
    summary.cache_write_tokens += p.cache_write_5m_tokens + p.cache_write_1h_tokens
    if p.cost_usd is None:
        summary.unpriced += 1
    else:
        summary.cost_usd += p.cost_usd


def import_transcripts(
    settings: Settings,
    roots: Sequence[Path] | None = None,
    *,
    provider: str | None = None,
    files: Sequence[Path] | None = None,
    delivery: str = "sync",
    on_total: Callable[[int], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    sink: Sink | None = None,
    prices: Any | None = None,
    providers: Mapping[str, str] | None = None,
) -> ImportSummary:
    """Publish every new outcome in the transcripts under ``roots`` (default: Claude Code's).

    Raises :class:`TranscriptImportError` when outcomes cannot be published or the state
    cannot be kept (nothing is lost: the state only advances past what was published).
    """
    started = time.monotonic()
    summary = ImportSummary()
    paths = (
        list(files)
        if files is not None
        else find_transcripts(default_projects_dirs() if roots is None else roots)
    )
    summary.files = len(paths)
    if on_total:
        total = 0
        for p in paths:
            with contextlib.suppress(OSError):
                total += p.stat().st_size
        on_total(total)
    state = _State(settings.state_dir)
    batch: _Batch | None = None
    try:
        outcomes = _Outcomes(settings, state, provider, prices)
        outcomes.sessions = providers or {}
        batch = _Batch(state.conn, sink or _publisher_sink(settings, delivery, summary))
        for path in paths:
            _read_file(path, state, outcomes, batch, summary, on_bytes)
        batch.flush(reopen=False)
    except sqlite3.Error as exc:
        raise TranscriptImportError(f"import state {state.path}: {exc}") from None
    finally:
        if batch is not None:
            batch.abort()
        state.close()
    summary.elapsed = time.monotonic() - started
    return summary


def publish_turn_outcomes(
    transcript_path: str | Path,
    session_id: str | None,
    provider: str | None,
    state_dir: Path,
    *,
    settings: Settings | None = None,
) -> int:
    """For the Claude Code hook at ``Stop`` / ``SubagentStop``: publish the outcomes of the
    part of ``transcript_path`` not read yet (and of its sub-agent files), in background mode.

    Remembers ``provider`` for ``session_id`` (a later ``import claude-code`` uses it). Returns
    how many outcomes were queued; raises :class:`TranscriptImportError` on failure.
    """
    from provider_events.settings import load_settings

    base = settings or load_settings()
    if base.state_dir != state_dir:
        base = base.with_overrides(state_dir=state_dir)
    path = Path(transcript_path)
    files = [path]
    sub = path.with_suffix("") / "subagents"
    if sub.is_dir():
        files += sorted(sub.glob("*.jsonl"))
    if session_id and provider:
        state = _State(state_dir)
        try:
            state.remember_provider(session_id, provider)
        except sqlite3.Error as exc:
            raise TranscriptImportError(f"import state {state.path}: {exc}") from None
        finally:
            state.close()
    summary = import_transcripts(
        base, files=[f for f in files if f.is_file()], provider=provider, delivery="background"
    )
    return summary.published
