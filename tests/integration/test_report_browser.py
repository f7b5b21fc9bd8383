"""The HTML report in a real headless Chromium: loads cleanly, every chart renders, screenshot.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-separated JSON), so no websocket library is needed. Install the
browser with ``dev/install-chromium.sh`` (``make deps``). The screenshot is written to
``artifacts/report.png``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provider_events.analytics._model import Window
from provider_events.analytics._synth import Selection, synthetic_selections
from provider_events.analytics.report import write_report
from tests.analytics_reference import ReferenceBackend

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
END = datetime(2025, 11, 13, 12, 30, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'
CHARTS = {
    "selections-over-time",
    "model-distribution",
    "cost-over-time",
    "cost-by-model",
    "latency-trend",
    "quality-trend",
    "top-reasons",
    "recommendation-savings",
}


class Chromium:
    """Headless Chromium with a DevTools protocol session over a pipe."""

    def __init__(self, binary: str, width: int = 1400, height: int = 1000) -> None:
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        theirs_read, ours_write = os.pipe()
        ours_read, theirs_write = os.pipe()

        def child_fds() -> None:  # Chromium reads commands on fd 3 and answers on fd 4
            a, b = os.dup(theirs_read), os.dup(theirs_write)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--window-size={width},{height}",
                f"--user-data-dir={self._profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=child_fds,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(theirs_read)
        os.close(theirs_write)
        self._read, self._write = ours_read, ours_write
        self._buffer = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._read], [], [], left)
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)  # type: ignore[no-any-return]

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})  # type: ignore[no-any-return]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._receive(deadline))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone: the kill below settles it
            self.call("Browser.close")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._read)
        os.close(self._write)
        shutil.rmtree(self._profile, ignore_errors=True)


@pytest.fixture(scope="module")
def chromium_binary() -> str:
    """Debian's Chromium (``dev/install-chromium.sh`` installs it)."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: run dev/install-chromium.sh (make deps)")
    return path


@pytest.fixture
def browser(chromium_binary: str) -> Iterator[Chromium]:
    b = Chromium(chromium_binary)
    try:
        yield b
    finally:
        b.close()


def _open(browser: Chromium, url: str) -> str:
    """Attach to the page, enable the domains we watch, load ``url``; returns the session."""
    targets = browser.call("Target.getTargets")["targetInfos"]
    target = next(t["targetId"] for t in targets if t["type"] == "page")
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session=session)
    browser.call("Page.navigate", {"url": url}, session=session)
    browser.wait_for("Page.loadEventFired")
    return session


def _evaluate(browser: Chromium, session: str, expression: str) -> Any:
    result = browser.call(
        "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session
    )
    assert "exceptionDetails" not in result, result
    return result["result"]["value"]


def _problems(browser: Chromium) -> list[str]:
    """Console errors and warnings, uncaught exceptions and error log entries of the page."""
    out = []
    for e in browser.events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning"):
            out.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            out.append(f"exception: {params.get('exceptionDetails')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            out.append(f"log: {params['entry'].get('text')} ({params['entry'].get('url')})")
    return out


_CHART_PROBE = """JSON.stringify([...document.querySelectorAll('svg.chart')].map(svg => {
  const box = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll('.mark')];
  const drawn = marks.filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; });
  return {name: svg.dataset.chart, width: box.width, height: box.height,
          marks: marks.length, drawn: drawn.length,
          empty: svg.querySelectorAll('text.empty').length};
}))"""


def _selections() -> list[Selection]:
    week = list(synthetic_selections(6000, end=END, days=7, seed=3))
    hostile = Selection(
        "claude",
        "claude-sonnet-4-5-20250929",
        "hostile-1",
        HOSTILE,
        {"cost_per_token": 6e-6, "latency_ms": 900, "quality_score": 0.95, "input_tokens": 900},
        "acme-us",
        END - timedelta(hours=5),
    )
    return [*week, *[hostile] * 400]


def test_report_renders_every_chart_without_errors(browser: Chromium, tmp_path: Path) -> None:
    """The report loads with no console error or network request and draws every chart."""
    backend = ReferenceBackend(_selections())
    window = Window.of(END - timedelta(days=7), END)
    path = write_report(tmp_path / "report.html", backend, window, now=END)
    url = path.as_uri()
    session = _open(browser, url)

    charts = json.loads(_evaluate(browser, session, _CHART_PROBE))
    assert {c["name"] for c in charts} == CHARTS
    for chart in charts:
        assert chart["width"] > 300 and chart["height"] > 100, chart
        assert chart["marks"] > 0 and chart["drawn"] == chart["marks"], chart
        assert chart["empty"] == 0, chart
    assert _evaluate(browser, session, "document.scripts.length") == 0
    assert _evaluate(browser, session, "document.querySelectorAll('img').length") == 0
    assert HOSTILE in _evaluate(browser, session, "document.body.textContent")

    requests = [
        e["params"]["request"]["url"]
        for e in browser.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    assert requests and all(r == url for r in requests), requests
    assert _problems(browser) == []

    metrics = browser.call("Page.getLayoutMetrics", session=session)
    height = metrics["cssContentSize"]["height"]
    shot = browser.call(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1400, "height": height, "scale": 1},
        },
        session=session,
    )
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(png)


def test_empty_report_loads_cleanly(browser: Chromium, tmp_path: Path) -> None:
    """A window without selections gives a page that says so, with no browser errors."""
    path = write_report(
        tmp_path / "empty.html", ReferenceBackend([]), Window.of(END - timedelta(days=1), END)
    )
    session = _open(browser, path.as_uri())
    text = _evaluate(browser, session, "document.body.innerText")
    assert "No selections in this window" in text
    assert _problems(browser) == []
