"""Reading a Claude Code transcript incrementally: the assistant lines written since an offset.

A transcript (``transcript_path`` of the hook JSON, and ``agent_transcript_path`` for a
sub-agent) is a JSON Lines file Claude Code appends to. Every API response it received is an
``assistant`` line whose ``message`` holds the ``model`` that was requested (never with a
display suffix such as ``[1m]``), the message ``id`` and the ``usage``; the line itself holds
``requestId``, ``isSidechain`` (a sub-agent's line), ``agentId`` and ``timestamp``. Lines that
Claude Code writes itself, not from an API response, carry the model ``<synthetic>`` and are
skipped.

:func:`read_assistant_records` reads from a byte offset, within a byte and a time bound, and
returns where the next read should start. Only whole lines are consumed: a half-written last
line is left for the next read. A file shorter than the offset was replaced, and is read from
the start. Import-light (standard library only): the Claude Code hook calls it on every turn.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SYNTHETIC_MODEL",
    "AssistantRecord",
    "TranscriptRead",
    "read_assistant_records",
    "transcript_size",
]

SYNTHETIC_MODEL = "<synthetic>"
DEFAULT_MAX_BYTES = 16 << 20
DEFAULT_MAX_SECONDS = 1.0
_CHUNK = 1 << 20
_MAX_LINE = 64 << 20  # one line larger than this is skipped whole, never held in memory twice


@dataclass(frozen=True, slots=True)
class AssistantRecord:
    """One ``assistant`` line: the answer to one API request (or one block of it)."""

    model: str
    message_id: str | None
    request_id: str | None
    sidechain: bool
    agent_id: str | None
    timestamp: str | None
    usage: Mapping[str, Any] | None = None
    #: ``message.stop_reason`` (``tool_use``: the turn goes on with another request).
    stop_reason: str | None = None


@dataclass(frozen=True, slots=True)
class TranscriptRead:
    """What one read found, and where the next one starts."""

    records: list[AssistantRecord] = field(default_factory=list)
    #: The offset after the last whole line consumed: pass it to the next read.
    offset: int = 0
    #: The ``timestamp`` of the first line read (any type), if any.
    first_timestamp: str | None = None
    #: The read stopped at the byte or time bound; more whole lines may follow ``offset``.
    truncated: bool = False
    #: Lines that were not JSON objects (skipped).
    bad_lines: int = 0


def transcript_size(path: str | os.PathLike[str] | None) -> int | None:
    """The current size of a transcript, ``None`` when it cannot be read."""
    if not path:
        return None
    try:
        return os.stat(path).st_size
    except (OSError, ValueError):
        return None


def _text(value: Any, limit: int = 200) -> str | None:
    if isinstance(value, str) and value and len(value) <= limit:
        return value
    return None


def _record(doc: Mapping[str, Any]) -> AssistantRecord | None:
    message = doc.get("message")
    if not isinstance(message, dict):
        return None
    model = message.get("model")
    if not isinstance(model, str) or not model.strip() or model == SYNTHETIC_MODEL:
        return None
    model = model.strip()
    if len(model) > 200 or any(ord(c) < 32 for c in model):
        return None
    usage = message.get("usage")
    return AssistantRecord(
        model=model,
        message_id=_text(message.get("id")),
        request_id=_text(doc.get("requestId")),
        sidechain=doc.get("isSidechain") is True,
        agent_id=_text(doc.get("agentId")),
        timestamp=_text(doc.get("timestamp"), 64),
        usage=usage if isinstance(usage, dict) else None,
        stop_reason=_text(message.get("stop_reason"), 64),
    )


def read_assistant_records(
    path: str | os.PathLike[str],
    offset: int = 0,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> TranscriptRead:
    """The assistant records of the whole lines written to ``path`` after ``offset``.

    Reads at most ``max_bytes`` (rounded to whole lines) for at most ``max_seconds``. Raises
    ``OSError`` when the file cannot be opened; every problem inside it is skipped.
    """
    deadline = time.monotonic() + max_seconds
    records: list[AssistantRecord] = []
    first_timestamp: str | None = None
    bad = 0
    # O_NONBLOCK: a FIFO named as a transcript must not block the open; only regular files
    # are read (a device such as /dev/zero would be read to the byte bound for nothing).
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    with os.fdopen(fd, "rb") as fh:
        size = info.st_size
        if offset < 0 or offset > size:
            offset = 0  # replaced or truncated since: read it again from the start
        fh.seek(offset)
        base = offset  # the file offset of the first byte not yet consumed
        read = 0
        pending = b""
        skipping = False  # inside a line longer than _MAX_LINE
        truncated = False
        while True:
            if read >= max_bytes or time.monotonic() > deadline:
                truncated = True
                break
            chunk = fh.read(min(_CHUNK, max_bytes - read))
            if not chunk:
                break
            read += len(chunk)
            data = pending + chunk
            start = 0
            while (end := data.find(b"\n", start)) >= 0:
                line = data[start:end]
                start = end + 1
                if skipping:
                    skipping = False
                    continue
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                if not isinstance(doc, dict):
                    bad += 1
                    continue
                if first_timestamp is None:
                    first_timestamp = _text(doc.get("timestamp"), 64)
                if doc.get("type") == "assistant":
                    record = _record(doc)
                    if record is not None:
                        records.append(record)
            base += start
            pending = data[start:]
            if len(pending) > _MAX_LINE:
                base += len(pending)
                pending = b""
                skipping = True
    return TranscriptRead(records, base, first_timestamp, truncated, bad)
