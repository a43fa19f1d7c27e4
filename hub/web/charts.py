"""Small server-side SVG charts for the dashboard.

Why SVG from Python instead of a chart library in the browser: the page's
Content-Security-Policy allows only our own scripts and no inline styles, the
hub must work offline (no CDN), and five simple charts do not justify a
JavaScript dependency.  Colours come from CSS classes (``static/app.css``);
every label goes through :func:`markupsafe.escape`.  Each bar or point has a
``<title>`` so hovering shows the exact number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    css: str = ""
    title: str = ""


def _svg(width: int, height: int, body: list[str], label: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
        f'preserveAspectRatio="xMidYMid meet">' + "".join(body) + "</svg>"
    )


def _nice_max(value: float) -> float:
    """Axis top with four round gridline steps (4, 8, 20, 40, 100...)."""
    if value <= 0:
        return 4.0
    exp = 10 ** math.floor(math.log10(value / 4))
    for mult in (1, 2, 2.5, 5, 10):
        if mult * exp * 4 >= value:
            return max(4.0, mult * exp * 4)
    return value


def columns(bars: Sequence[Bar], *, label: str, height: int = 220, width: int = 640, every: int = 1,
            unit: str = "") -> Markup:
    """Vertical bars with a value axis (histograms, per-hour load)."""
    left, right, top, bottom = 40, 8, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max((b.value for b in bars), default=0))
    body: list[str] = []
    for i in range(5):
        v = top_value * i / 4
        y = top + plot_h - plot_h * i / 4
        body.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        body.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(_fmt(v))}</text>')
    n = max(1, len(bars))
    slot = plot_w / n
    bw = max(2.0, slot * 0.72)
    for i, b in enumerate(bars):
        h = plot_h * (b.value / top_value) if top_value else 0
        x = left + i * slot + (slot - bw) / 2
        y = top + plot_h - h
        title = b.title or f"{b.label}: {_fmt(b.value)}{unit}"
        body.append(f'<rect class="bar {escape(b.css)}" x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" '
                    f'height="{max(h, 0):.1f}" rx="2"><title>{escape(title)}</title></rect>')
        if i % every == 0:
            body.append(f'<text class="axis" x="{x + bw / 2:.1f}" y="{height - 10}" text-anchor="middle">'
                        f'{escape(b.label)}</text>')
    return _svg(width, height, body, label)


def hbars(bars: Sequence[Bar], *, label: str, width: int = 640) -> Markup:
    """Horizontal bars with the value at the end (open cases by SLA state)."""
    row, left, right, top = 34, 130, 60, 6
    height = top * 2 + row * max(1, len(bars))
    top_value = max((b.value for b in bars), default=0) or 1
    body: list[str] = []
    for i, b in enumerate(bars):
        y = top + i * row
        w = (width - left - right) * b.value / top_value
        body.append(f'<text class="label" x="{left - 10}" y="{y + row / 2 + 4:.1f}" text-anchor="end">'
                    f'{escape(b.label)}</text>')
        body.append(f'<rect class="track" x="{left}" y="{y + 6}" width="{width - left - right}" height="{row - 12}" '
                    f'rx="4"/>')
        body.append(f'<rect class="bar {escape(b.css)}" x="{left}" y="{y + 6}" width="{max(w, 0):.1f}" '
                    f'height="{row - 12}" rx="4"><title>{escape(b.title or f"{b.label}: {_fmt(b.value)}")}</title></rect>')
        body.append(f'<text class="value" x="{left + max(w, 0) + 8:.1f}" y="{y + row / 2 + 5:.1f}">'
                    f'{escape(_fmt(b.value))}</text>')
    return _svg(width, height, body, label)


def nps_trend(points: Sequence[tuple[str, float | None, float | None, int]], *, label: str, legend: tuple[str, str],
              width: int = 640, height: int = 240) -> Markup:
    """NPS (line, -100..100, left axis) over detractor share (bars, 0..100%,
    right axis).  ``points`` are (period label, nps, detractor share 0-1, responses)."""
    left, right, top, bottom = 40, 44, 14, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    body: list[str] = []
    for v in (-100, -50, 0, 50, 100):
        y = top + plot_h * (100 - v) / 200
        body.append(f'<line class="grid{" zero" if v == 0 else ""}" x1="{left}" x2="{width - right}" '
                    f'y1="{y:.1f}" y2="{y:.1f}"/>')
        body.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v}</text>')
        body.append(f'<text class="axis share" x="{width - right + 6}" y="{y + 4:.1f}">{(v + 100) // 2}%</text>')
    n = max(1, len(points))
    slot = plot_w / n
    every = max(1, round(n / 8))
    line: list[str] = []
    dots: list[str] = []
    for i, (period, nps, share, count) in enumerate(points):
        cx = left + slot * (i + 0.5)
        if share is not None:
            h = plot_h * share
            body.append(f'<rect class="bar detractor" x="{cx - slot * 0.35:.1f}" y="{top + plot_h - h:.1f}" '
                        f'width="{slot * 0.7:.1f}" height="{h:.1f}" rx="2"><title>{escape(period)}: '
                        f'{share * 100:.0f}% ({count})</title></rect>')
        if nps is not None:
            cy = top + plot_h * (100 - nps) / 200
            line.append(f"{cx:.1f},{cy:.1f}")
            dots.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="3.5"><title>{escape(period)}: NPS '
                        f'{nps:.0f} ({count})</title></circle>')
        if i % every == 0:
            body.append(f'<text class="axis" x="{cx:.1f}" y="{top + plot_h + 16:.1f}" text-anchor="middle">'
                        f'{escape(period)}</text>')
    if len(line) > 1:
        body.append(f'<polyline class="line" points="{" ".join(line)}"/>')
    body.extend(dots)
    ly = height - 10
    body.append(f'<line class="line" x1="{left}" x2="{left + 22}" y1="{ly - 4}" y2="{ly - 4}"/>')
    body.append(f'<text class="label" x="{left + 28}" y="{ly}">{escape(legend[0])}</text>')
    body.append(f'<rect class="bar detractor" x="{left + 150}" y="{ly - 10}" width="14" height="12" rx="2"/>')
    body.append(f'<text class="label" x="{left + 170}" y="{ly}">{escape(legend[1])}</text>')
    return _svg(width, height, body, label)


def donut(share: float | None, *, label: str, caption: str, width: int = 240) -> Markup:
    """One share as a ring with the percentage in the middle."""
    r, cx, cy = 80, width / 2, 100
    circumference = 2 * math.pi * r
    value = 0.0 if share is None else max(0.0, min(1.0, share))
    body = [f'<circle class="ring-track" cx="{cx}" cy="{cy}" r="{r}"/>']
    if value > 0:
        body.append(f'<circle class="ring" cx="{cx}" cy="{cy}" r="{r}" stroke-dasharray="{circumference * value:.1f} '
                    f'{circumference:.1f}" transform="rotate(-90 {cx} {cy})"><title>{value * 100:.0f}%</title></circle>')
    text = "-" if share is None else f"{value * 100:.0f}%"
    body.append(f'<text class="big" x="{cx}" y="{cy + 10}" text-anchor="middle">{escape(text)}</text>')
    body.append(f'<text class="label" x="{cx}" y="{cy + 118}" text-anchor="middle">{escape(caption)}</text>')
    return _svg(width, 230, body, label)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 or abs(value) >= 10 else f"{value:.1f}"


def load_curve(points: Sequence[tuple[str, int, int, float, bool]], *, label: str, legend: tuple[str, str, str],
               width: int = 1280, height: int = 260) -> Markup:
    """Planned callbacks per hour (bars, left axis; a tick at the hour's capacity) against
    the expected inbound (line, right axis).  ``points`` are (hour label, planned,
    capacity, expected inbound, peak); labels of a new day carry the day."""
    left, right, top, bottom = 40, 48, 14, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    top_planned = _nice_max(max([p[1] for p in points] + [p[2] for p in points] + [0]))
    top_inbound = _nice_max(max([p[3] for p in points] + [0]))
    body: list[str] = []
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        body.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        body.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                    f'{escape(_fmt(top_planned * i / 4))}</text>')
        body.append(f'<text class="axis share" x="{width - right + 6}" y="{y + 4:.1f}">'
                    f'{escape(_fmt(top_inbound * i / 4))}</text>')
    n = max(1, len(points))
    slot = plot_w / n
    bw = max(2.0, slot * 0.7)
    line: list[str] = []
    for i, (hour, planned, capacity, inbound, peak) in enumerate(points):
        x = left + i * slot + (slot - bw) / 2
        h = plot_h * planned / top_planned
        css = "peak" if peak else "business"
        body.append(f'<rect class="bar {css}" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bw:.1f}" '
                    f'height="{h:.1f}" rx="2"><title>{escape(hour)}: {planned} / {capacity}</title></rect>')
        cy = top + plot_h - plot_h * capacity / top_planned
        body.append(f'<line class="grid zero" x1="{x:.1f}" x2="{x + bw:.1f}" y1="{cy:.1f}" y2="{cy:.1f}"/>')
        line.append(f"{x + bw / 2:.1f},{top + plot_h - plot_h * inbound / top_inbound:.1f}")
        if " " in hour or i == 0:
            body.append(f'<text class="axis" x="{x + bw / 2:.1f}" y="{top + plot_h + 16:.1f}" text-anchor="start">'
                        f'{escape(hour)}</text>')
    if len(line) > 1:
        body.append(f'<polyline class="line" points="{" ".join(line)}"/>')
    ly = height - 10
    body.append(f'<rect class="bar business" x="{left}" y="{ly - 10}" width="14" height="12" rx="2"/>')
    body.append(f'<text class="label" x="{left + 20}" y="{ly}">{escape(legend[0])}</text>')
    body.append(f'<line class="line" x1="{left + 200}" x2="{left + 222}" y1="{ly - 4}" y2="{ly - 4}"/>')
    body.append(f'<text class="label" x="{left + 228}" y="{ly}">{escape(legend[1])}</text>')
    body.append(f'<line class="grid zero" x1="{left + 400}" x2="{left + 422}" y1="{ly - 4}" y2="{ly - 4}"/>')
    body.append(f'<text class="label" x="{left + 428}" y="{ly}">{escape(legend[2])}</text>')
    return _svg(width, height, body, label)
