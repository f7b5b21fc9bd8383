"""Inline SVG charts, drawn in Python: stacked areas, stacked columns, lines, horizontal bars.

Every chart is one ``<svg class="chart" data-chart=NAME>`` whose drawn marks carry the class
``mark`` (the browser test counts them) and a ``<title>`` tooltip. All text passes through
:func:`esc`; nothing here emits script or fetches anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

__all__ = [
    "Bar",
    "Series",
    "esc",
    "hbars",
    "lines",
    "nice_ticks",
    "stacked_area",
    "stacked_columns",
]

FONT = "font-family:inherit"
AXIS = "#8a94a6"
GRID = "#e6e9ef"
INK = "#1f2937"


def esc(text: object) -> str:
    """HTML/SVG-escape any text (quotes too: it may land in an attribute)."""
    return escape(str(text), quote=True)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (steps of 1, 2 or 5 times a power of ten)."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    value = start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(value, 12))
    return ticks


@dataclass(frozen=True, slots=True)
class Series:
    """A named line (or area layer) with its colour."""

    name: str
    color: str
    points: Sequence[tuple[datetime, float | None]]
    dashed: bool = False


@dataclass(frozen=True, slots=True)
class Bar:
    """One horizontal bar: label, value, colour, the text shown at its end and a tooltip."""

    label: str
    value: float
    color: str
    value_label: str
    title: str = ""


def _frame(name: str, width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg class="chart" data-chart="{esc(name)}" role="img" aria-label="{esc(label)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
        + "".join(body)
        + "</svg>"
    )


def _empty(name: str, width: int, height: int, label: str) -> str:
    return _frame(
        name,
        width,
        height,
        [
            f'<text class="empty" x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            f'fill="{AXIS}" style="{FONT};font-size:14px">No data in this window</text>'
        ],
        label,
    )


class _TimeAxes:
    """Maps times and values onto a plot area and draws grid lines and tick labels."""

    def __init__(
        self,
        width: int,
        height: int,
        start: datetime,
        end: datetime,
        top: float,
        fmt: Callable[[float], str],
        bottom: float = 0.0,
        left: int = 64,
    ) -> None:
        self.x0, self.x1 = left, width - 16
        self.y0, self.y1 = height - 30, 12
        self.start, self.end = start, end
        self.ticks = nice_ticks(bottom, top)
        self.lo, self.hi = self.ticks[0], self.ticks[-1]
        self.fmt = fmt

    def x(self, moment: datetime) -> float:
        span = (self.end - self.start).total_seconds() or 1.0
        return self.x0 + (self.x1 - self.x0) * (moment - self.start).total_seconds() / span

    def y(self, value: float) -> float:
        span = (self.hi - self.lo) or 1.0
        return self.y0 - (self.y0 - self.y1) * (value - self.lo) / span

    def draw(self) -> list[str]:
        out = []
        for t in self.ticks:
            y = self.y(t)
            out.append(
                f'<line x1="{self.x0}" x2="{self.x1}" y1="{_num(y)}" y2="{_num(y)}" '
                f'stroke="{GRID}" stroke-width="1"/>'
                f'<text x="{self.x0 - 8}" y="{_num(y + 4)}" text-anchor="end" fill="{AXIS}" '
                f'style="{FONT};font-size:11px">{esc(self.fmt(t))}</text>'
            )
        span_days = (self.end - self.start) / timedelta(days=1)
        step = timedelta(days=1) if span_days > 2.5 else timedelta(hours=6 if span_days > 1 else 3)
        if span_days > 14:  # at most ~14 labelled ticks, whatever the window
            step = timedelta(days=-(-int(span_days) // 14))
        tick = self.start.replace(minute=0, second=0, microsecond=0)
        if step >= timedelta(days=1):
            tick = tick.replace(hour=0)
        while tick < self.start:
            tick += step
        while tick <= self.end:
            x = self.x(tick)
            if x + 44 > self.x1 + 16:  # no room for the label at the right edge
                break
            if step > timedelta(days=1):
                label = tick.date().isoformat() if span_days > 60 else f"{tick:%b %d}"
            else:
                label = f"{tick:%a %d}" if step == timedelta(days=1) else f"{tick:%d %H:00}"
            out.append(
                f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{self.y1}" y2="{self.y0}" '
                f'stroke="{GRID}" stroke-width="1"/>'
                f'<text x="{_num(x + 4)}" y="{self.y0 + 18}" fill="{AXIS}" '
                f'style="{FONT};font-size:11px">{esc(label)}</text>'
            )
            tick += step
        out.append(
            f'<line x1="{self.x0}" x2="{self.x1}" y1="{self.y0}" y2="{self.y0}" '
            f'stroke="{AXIS}" stroke-width="1"/>'
        )
        return out


def _stack_axes(
    width: int,
    height: int,
    periods: Sequence[datetime],
    step: timedelta,
    layers: Sequence[tuple[str, str, Sequence[float]]],
    fmt: Callable[[float], str],
    left: int = 64,
) -> _TimeAxes | None:
    """Axes from the first period to the end of the last, up to the tallest stack of
    ``layers``; None when there is nothing to draw (no period, or every value zero)."""
    if not periods or not any(any(v for v in vs) for _, _, vs in layers):
        return None
    totals = [sum(vs[i] for _, _, vs in layers) for i in range(len(periods))]
    return _TimeAxes(width, height, periods[0], periods[-1] + step, max(totals), fmt, left=left)


def stacked_area(
    name: str,
    label: str,
    periods: Sequence[datetime],
    step: timedelta,
    layers: Sequence[tuple[str, str, Sequence[float]]],
    fmt: Callable[[float], str],
    width: int = 1240,
    height: int = 300,
) -> str:
    """Layers (name, colour, value per period) stacked over time, the first at the bottom."""
    axes = _stack_axes(width, height, periods, step, layers, fmt)
    if axes is None:
        return _empty(name, width, height, label)
    body = axes.draw()
    below = [0.0] * len(periods)
    centers = [p + step / 2 for p in periods]
    for layer_name, color, values in layers:
        above = [b + v for b, v in zip(below, values, strict=True)]
        upper = [
            f"{_num(axes.x(c))},{_num(axes.y(a))}" for c, a in zip(centers, above, strict=True)
        ]
        lower = [
            f"{_num(axes.x(c))},{_num(axes.y(b))}"
            for c, b in reversed(list(zip(centers, below, strict=True)))
        ]
        body.append(
            f'<polygon class="mark" points="{" ".join(upper + lower)}" fill="{esc(color)}" '
            f'fill-opacity="0.85" stroke="{esc(color)}" stroke-width="0.5">'
            f"<title>{esc(layer_name)}: {esc(fmt(sum(values)))} in the window</title></polygon>"
        )
        below = above
    return _frame(name, width, height, body, label)


def stacked_columns(
    name: str,
    label: str,
    periods: Sequence[datetime],
    step: timedelta,
    layers: Sequence[tuple[str, str, Sequence[float]]],
    fmt: Callable[[float], str],
    width: int = 610,
    height: int = 300,
) -> str:
    """One column per period, split into coloured layers."""
    axes = _stack_axes(width, height, periods, step, layers, fmt, left=70)
    if axes is None:
        return _empty(name, width, height, label)
    body = axes.draw()
    slot = (axes.x(periods[0] + step) - axes.x(periods[0])) * 0.72
    for i, period in enumerate(periods):
        x = axes.x(period + step / 2) - slot / 2
        base = 0.0
        for layer_name, color, values in layers:
            v = values[i]
            if v <= 0:
                continue
            y_top, y_bottom = axes.y(base + v), axes.y(base)
            body.append(
                f'<rect class="mark" x="{_num(x)}" y="{_num(y_top)}" width="{_num(slot)}" '
                f'height="{_num(max(0.5, y_bottom - y_top))}" fill="{esc(color)}">'
                f"<title>{esc(f'{period:%Y-%m-%d %H:%M}')} {esc(layer_name)}: "
                f"{esc(fmt(v))}</title></rect>"
            )
            base += v
    return _frame(name, width, height, body, label)


def lines(
    name: str,
    label: str,
    start: datetime,
    end: datetime,
    series: Sequence[Series],
    fmt: Callable[[float], str],
    width: int = 610,
    height: int = 300,
    zero_based: bool = False,
) -> str:
    """Lines over time with a dot at each point; gaps where a value is ``None``."""
    values = [v for s in series for _, v in s.points if v is not None]
    if not values:
        return _empty(name, width, height, label)
    lo, hi = (0.0 if zero_based else min(values)), max(values)
    if not zero_based:
        pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
        lo, hi = max(0.0, lo - pad), hi + pad
    axes = _TimeAxes(width, height, start, end, hi, fmt, bottom=lo)
    body = axes.draw()
    for s in series:
        runs: list[list[tuple[float, float, datetime, float]]] = [[]]
        for moment, v in s.points:
            if v is None:
                if runs[-1]:
                    runs.append([])
                continue
            runs[-1].append((axes.x(moment), axes.y(v), moment, v))
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        for run in runs:
            if len(run) > 1:
                pts = " ".join(f"{_num(x)},{_num(y)}" for x, y, _, _ in run)
                body.append(
                    f'<polyline class="mark" points="{pts}" fill="none" stroke="{esc(s.color)}" '
                    f'stroke-width="{1.4 if s.dashed else 2.2}"{dash} stroke-linejoin="round">'
                    f"<title>{esc(s.name)}</title></polyline>"
                )
            if not s.dashed:
                for x, y, moment, v in run:
                    body.append(
                        f'<circle class="mark" cx="{_num(x)}" cy="{_num(y)}" r="2.6" '
                        f'fill="{esc(s.color)}"><title>{esc(s.name)} '
                        f"{esc(f'{moment:%Y-%m-%d %H:%M}')}: {esc(fmt(v))}</title></circle>"
                    )
    return _frame(name, width, height, body, label)


def hbars(
    name: str,
    label: str,
    bars: Sequence[Bar],
    width: int = 610,
    label_width: int = 250,
    row: int = 24,
) -> str:
    """Horizontal bars with their labels on the left and values at their ends."""
    if not bars or not any(b.value > 0 for b in bars):
        return _empty(name, width, max(120, row * 4), label)
    height = row * len(bars) + 8
    top = max(b.value for b in bars)
    # ~7 px per character at 12 px: keep labels inside their column, values inside the box.
    max_chars = max(8, int((label_width - 14) / 7.0))
    room = width - label_width - 12 - 6.2 * max(len(b.value_label) for b in bars)
    body = []
    for i, b in enumerate(bars):
        y = 4 + i * row
        w = max(1.0, room * b.value / top) if b.value > 0 else 0.0
        text = b.label if len(b.label) <= max_chars else b.label[: max_chars - 1] + "…"
        body.append(
            f'<text x="{label_width - 8}" y="{y + row * 0.66:.1f}" text-anchor="end" '
            f'fill="{INK}" style="{FONT};font-size:12px">{esc(text)}'
            f"<title>{esc(b.label)}</title></text>"
        )
        if w:
            body.append(
                f'<rect class="mark" x="{label_width}" y="{y + 3}" width="{_num(w)}" '
                f'height="{row - 7}" rx="3" fill="{esc(b.color)}">'
                f"<title>{esc(b.title or b.label)}: {esc(b.value_label)}</title></rect>"
            )
        body.append(
            f'<text x="{label_width + w + 6:.1f}" y="{y + row * 0.66:.1f}" fill="{AXIS}" '
            f'style="{FONT};font-size:11.5px">{esc(b.value_label)}</text>'
        )
    return _frame(name, width, height, body, label)
