"""The HTML report: one self-contained file with inline SVG charts (no script, no network).

``write_report(path, backend, window)`` writes selections over time stacked by provider, the
model distribution, cost over time and by model, latency and quality trends, the top reasons
and the recommendations. Every piece of user-provided text is escaped, and the page's
Content-Security-Policy forbids scripts and network requests altogether.
"""

from __future__ import annotations

import os
import tempfile
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
    """Write the report atomically to ``path`` (parents created); returns the absolute path."""
    html = build_report(backend, window, opts, now=now)
    target = Path(path).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
