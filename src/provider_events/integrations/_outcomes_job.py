"""The detached process that publishes a turn's measured outcomes for the lean hook.

``python -m provider_events.integrations._outcomes_job EVENT SESSION TRANSCRIPT MARKER_AT``,
started by :mod:`._hook_lean` at ``Stop``: it runs the full hook's ``_publish_outcomes``
(transcript read from the import state's offset, priced, queued in background mode), one job
at a time per state directory (``hook-outcomes.lock``), then clears the session's
``outcomes_pending`` marker if it is still the one it was started for. Problems go to
``hook.log``; nothing is printed. A job that fails or is killed loses nothing: the import state
advances only with a successful publish (the next Stop reads the same lines again), and the
marker of a job that never ended has the session's next hook call start one again.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["JOB_TIMEOUT", "main"]

#: The job's own watchdog (seconds): the first Stop of a day may load the price table.
JOB_TIMEOUT = 60.0


def main(argv: list[str]) -> int:
    from provider_events.integrations._hook import (
        HookInput,
        HookLog,
        _publish_outcomes,
        _state_dir,
        _watchdog,
    )
    from provider_events.settings import load_settings, process_environ

    env = process_environ()
    log = HookLog(_state_dir(None, env))
    if len(argv) != 4:
        log.write(f"outcomes job: expected 4 arguments, got {len(argv)}")
        return 0
    event, session, transcript, marker_at = argv
    try:
        settings = load_settings(env)
    except Exception as exc:
        log.write(f"configuration problem, outcomes not published: {exc}")
        return 0
    log = HookLog(_state_dir(settings, env))
    _watchdog(JOB_TIMEOUT, log)
    try:
        import fcntl

        state_dir = Path(settings.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        lock = os.open(state_dir / "hook-outcomes.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            hook = HookInput(event, session, None, None, None, transcript_path=transcript)
            try:
                _publish_outcomes(hook, env, settings, log, None)
            finally:
                # Ran (a failure is logged; the import state did not advance, so the next
                # Stop reads the same lines): only a job that never ended is started again.
                _clear_marker(state_dir, session, marker_at)
        finally:
            os.close(lock)
    except Exception as exc:
        log.write(f"outcomes job: unexpected {type(exc).__name__}: {exc}")
    return 0


def _clear_marker(state_dir: Path, session: str, marker_at: str) -> None:
    from provider_events.integrations._claude_state import open_session

    with open_session(state_dir, session) as state:
        marker = state.get("outcomes_pending")
        if isinstance(marker, dict) and repr(marker.get("at")) == marker_at:
            del state["outcomes_pending"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
