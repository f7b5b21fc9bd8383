"""The HTML report: one self-contained file with inline SVG charts (no script, no network).

``write_report(path, backend, window)`` writes selections over time stacked by provider, the
model distribution, cost over time and by model, latency and quality trends, the top reasons
and the recommendations. Every piece of user-provided text is escaped, and the page's
Content-Security-Policy forbids scripts and network requests altogether.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from provider_events.analytics._answers import Backend
from provider_events.analytics._model import Window
from provider_events.analytics._recommend import RecommendOptions
from provider_events.analytics.report._build import build_report, render_report

__all__ = ["build_report", "render_report", "write_report"]


def write_report(
    path: Path,
    backend: Backend,
    window: Window,
    opts: RecommendOptions | None = None,
    now: datetime | None = None,
) -> Path:
    """Write the report atomically to ``path`` (parents created); returns the absolute path.

    ``path`` must be a regular file or a new path: a device, FIFO or directory raises
    :class:`~provider_events.errors.UnsafePathError` before anything is read or written.
    """
    from provider_events._files import check_output_path, write_atomic

    check_output_path(path)
    html = build_report(backend, window, opts, now=now)
    return write_atomic(path, html)
