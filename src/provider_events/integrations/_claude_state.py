"""What the Claude Code hook remembers between its calls, per session, in the state directory.

``<state dir>/claude-sessions/<hash of the session id>.json`` holds a small JSON object:

* ``session_model``: the ``model`` SessionStart reported (display suffix stripped);
* ``turn``: the open turn, written at UserPromptSubmit: ``prompt_id``, ``at`` (when the prompt
  was submitted, RFC 3339) and ``offset`` (the transcript's size then);
* ``offset``: how far the main transcript has been read;
* ``agents``: per sub-agent id, how far its transcript has been read.

Each hook call reads and rewrites the file under an exclusive ``flock``, so hooks running at
once for one session (parallel sub-agents) never lose each other's update. The state is a
best-effort memory: an unreadable or damaged file reads as empty, and the hook then falls back
to what it can learn without it. Files untouched for :data:`KEEP_DAYS` days are removed at
SessionStart. Import-light: standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["KEEP_DAYS", "open_session", "prune_sessions", "session_path"]

KEEP_DAYS = 7
MAX_STATE_BYTES = 64 * 1024
MAX_AGENTS = 64
_PRUNE_SCAN = 500


def session_path(state_dir: Path, session_id: str) -> Path:
    digest = hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()[:32]
    return state_dir / "claude-sessions" / f"{digest}.json"


@contextlib.contextmanager
def open_session(state_dir: Path, session_id: str) -> Iterator[dict[str, Any]]:
    """The session's state as a dict, locked; changes are written back when the block ends.

    Raises ``OSError`` when the state directory cannot be used (the caller logs it).
    """
    path = session_path(state_dir, session_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.read(fd, MAX_STATE_BYTES + 1)
        state: dict[str, Any] = {}
        if raw and len(raw) <= MAX_STATE_BYTES:
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                state = doc
        before = json.dumps(state, sort_keys=True)
        yield state
        agents = state.get("agents")
        if isinstance(agents, dict) and len(agents) > MAX_AGENTS:
            state["agents"] = dict(list(agents.items())[-MAX_AGENTS:])
        after = json.dumps(state, sort_keys=True)
        if after != before:
            data = after.encode()
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, data)
    finally:
        os.close(fd)  # releases the lock


def prune_sessions(state_dir: Path, keep_days: float = KEEP_DAYS) -> int:
    """Remove session files not touched for ``keep_days``; returns how many (never raises)."""
    folder = state_dir / "claude-sessions"
    cutoff = time.time() - keep_days * 86400
    removed = 0
    try:
        entries = os.scandir(folder)
    except OSError:
        return 0
    with entries:
        for i, entry in enumerate(entries):
            if i >= _PRUNE_SCAN:
                break
            try:
                if entry.name.endswith(".json") and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
    return removed
