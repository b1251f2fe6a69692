"""Small inline SVG charts for the reports: lines and steps (ECDFs, timelines) and grouped bars.

Our own ~250 lines instead of a plotting library: a report stays a few hundred kilobytes, works
offline (nothing to load from a CDN), and prints as it shows. Every text is XML-escaped here; the
templates mark the result safe. Elements carry classes (`line reference`, `bar current`,
`band firing`, `marker`, `threshold`) that the tests and a stylesheet can find.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

WIDTH = 560
HEIGHT = 250
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 58, 14, 44, 46

REFERENCE = "#4c72b0"
CURRENT = "#dd6e0f"
THRESHOLD = "#c62828"
MARKER = "#6a1b9a"
BANDS = {"pending": "#fff0c2", "firing": "#fbd4d2"}


@dataclass(frozen=True)
class Line:
    """One series: points (x, y), drawn as a line or as steps (an ECDF: y holds until next x)."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]  # None: a gap (no data at that point)
    color: str
    css: str  # the element's class, e.g. "reference", "current", "value"
    steps: bool = False
    dots: bool = False
    connect: bool = True  # False: points only (values between them unknown)


@dataclass(frozen=True)
class Rule:
    """A horizontal (threshold) or vertical (decision, D) line with its label."""

    at: float
    label: str
    color: str = THRESHOLD
    css: str = "threshold"


@dataclass(frozen=True)
class Band:
    """A shaded stretch of x (a check's pending or firing time)."""

    start: float
    end: float
    state: str  # a key of BANDS


@dataclass(frozen=True)
class Segment:
    """A vertical segment between two y values at x: where KS's D is."""

    x: float
    y0: float
    y1: float
    label: str


@dataclass
class _Frame:
    """Data-to-pixel scales of one chart."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = WIDTH
    height: int = HEIGHT
    log_y: bool = False

    def px(self, x: float) -> float:
        span = self.x1 - self.x0 or 1.0
        inner = self.width - MARGIN_LEFT - MARGIN_RIGHT
        return MARGIN_LEFT + (x - self.x0) / span * inner

    def py(self, y: float) -> float:
        lo, hi, v = self.y0, self.y1, y
        if self.log_y:
            lo, hi, v = math.log10(lo), math.log10(hi), math.log10(max(y, self.y0))
        span = hi - lo or 1.0
        inner = self.height - MARGIN_TOP - MARGIN_BOTTOM
        return self.height - MARGIN_BOTTOM - (v - lo) / span * inner


@dataclass
class _Svg:
    title: str
    parts: list[str] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT

    def add(self, text: str) -> None:
        self.parts.append(text)

    def text(self) -> str:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{self.width}" '
            f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" role="img" '
            f'aria-label="{escape(self.title)}"><title>{escape(self.title)}</title>'
            f'<rect class="canvas" x="0" y="0" width="{self.width}" height="{self.height}" '
            'fill="#fff"/>'
            f'<text x="10" y="17" font-size="13" font-weight="600" fill="#1d2433">'
            f"{escape(self.title)}</text>"
        )
        return head + "".join(self.parts) + "</svg>"


def line_chart(
    title: str,
    lines: Sequence[Line],
    *,
    x_label: str = "",
    y_label: str = "",
    time_x: bool = False,
    log_y: bool = False,
    y_range: tuple[float, float] | None = None,
    hrules: Sequence[Rule] = (),
    vrules: Sequence[Rule] = (),
    bands: Sequence[Band] = (),
    segments: Sequence[Segment] = (),
) -> str:
    """Lines (or steps) on numeric or time x (epoch seconds, labelled UTC), with threshold lines,
    vertical markers, shaded bands and D segments."""
    xs = [x for line in lines for x in line.xs] + [r.at for r in vrules]
    xs += [b.start for b in bands] + [b.end for b in bands]
    ys = [y for line in lines for y in line.ys if y is not None and math.isfinite(y)]
    ys += [r.at for r in hrules]
    if log_y:
        ys = [y for y in ys if y > 0]
    svg = _Svg(title)
    if not xs or not ys:
        svg.add(_empty())
        return svg.text()
    x0, x1 = min(xs), max(xs)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    if vrules:  # room after the last marker for its line
        x1 += (x1 - x0) * 0.02
    if y_range is not None:
        y0, y1 = y_range
    elif log_y:
        y0, y1 = 10 ** math.floor(math.log10(min(ys))), 10 ** math.ceil(math.log10(max(ys)))
        y1 = max(y1, y0 * 10)
    else:
        y0, y1 = _nice_range(min(ys), max(ys))
    frame = _Frame(x0, x1, y0, y1, log_y=log_y)
    for band in bands:
        left, right = frame.px(band.start), frame.px(band.end)
        svg.add(
            f'<rect class="band {escape(band.state)}" x="{left:.1f}" y="{MARGIN_TOP}" '
            f'width="{max(right - left, 2.0):.1f}" height="{HEIGHT - MARGIN_TOP - MARGIN_BOTTOM}" '
            f'fill="{BANDS.get(band.state, "#eee")}"><title>{escape(band.state)}</title></rect>'
        )
    svg.add(_axes(frame, x_label, y_label, time_x))
    for rule in hrules:
        y = frame.py(rule.at)
        svg.add(
            f'<line class="{escape(rule.css)}" x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" '
            f'y1="{y:.1f}" y2="{y:.1f}" stroke="{rule.color}" stroke-width="1.5" '
            f'stroke-dasharray="6 4"/><text x="{WIDTH - MARGIN_RIGHT - 4}" y="{y - 4:.1f}" '
            f'font-size="11" text-anchor="end" fill="{rule.color}">{escape(rule.label)}</text>'
        )
    for line in lines:
        svg.add(_path(frame, line))
    for rule in vrules:
        x = frame.px(rule.at)
        anchor, dx = ("end", -4) if x > WIDTH * 0.7 else ("start", 4)
        svg.add(
            f'<line class="{escape(rule.css)}" x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN_TOP}" '
            f'y2="{HEIGHT - MARGIN_BOTTOM}" stroke="{rule.color}" stroke-width="2"/>'
            f'<text x="{x + dx:.1f}" y="{MARGIN_TOP + 11}" font-size="11" text-anchor="{anchor}" '
            f'font-weight="600" fill="{rule.color}">{escape(rule.label)}</text>'
        )
    for seg in segments:
        x, top, bottom = frame.px(seg.x), frame.py(seg.y1), frame.py(seg.y0)
        anchor = "end" if x > WIDTH * 0.6 else "start"
        dx = -6 if anchor == "end" else 6
        svg.add(
            f'<line class="ks-d" x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{bottom:.1f}" '
            f'stroke="{THRESHOLD}" stroke-width="3"/><text x="{x + dx:.1f}" '
            f'y="{(top + bottom) / 2 + 4:.1f}" font-size="12" font-weight="600" '
            f'text-anchor="{anchor}" fill="{THRESHOLD}">{escape(seg.label)}</text>'
        )
    svg.add(_legend([(line.name, line.color) for line in lines]))
    return svg.text()


def bar_chart(
    title: str,
    categories: Sequence[str],
    groups: Sequence[tuple[str, Sequence[float], str, str]],
    *,
    y_label: str = "",
    x_label: str = "",
) -> str:
    """Grouped bars: for each category one bar per group (name, values, color, class)."""
    svg = _Svg(title)
    values = [v for _, vs, _, _ in groups for v in vs if math.isfinite(v)]
    if not categories or not values:
        svg.add(_empty())
        return svg.text()
    y0, y1 = _nice_range(0.0, max(values))
    frame = _Frame(0, len(categories), y0, y1)
    # Many categories have slanted labels, which take the x label's room (the title names it).
    slanted = len(categories) > 6
    svg.add(_axes(frame, "" if slanted else x_label, y_label, time_x=False, x_ticks=False))
    slot = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / len(categories)
    width = slot * 0.8 / len(groups)
    for i, category in enumerate(categories):
        for g, (name, vs, color, css) in enumerate(groups):
            v = vs[i]
            if not math.isfinite(v):
                continue
            left = MARGIN_LEFT + i * slot + slot * 0.1 + g * width
            top = frame.py(v)
            svg.add(
                f'<rect class="bar {escape(css)}" x="{left:.1f}" y="{top:.1f}" '
                f'width="{max(width - 1, 1):.1f}" height="{frame.py(0) - top:.1f}" '
                f'fill="{color}"><title>{escape(category)}: {escape(name)} {v:.3f}</title></rect>'
            )
        label = category if len(category) <= 14 else category[:13] + "\u2026"
        x = MARGIN_LEFT + (i + 0.5) * slot
        base = HEIGHT - MARGIN_BOTTOM + 12
        rotate = f' transform="rotate(-30 {x:.1f} {base})"' if slanted else ""
        anchor = "end" if rotate else "middle"
        svg.add(
            f'<text x="{x:.1f}" y="{base}" font-size="10" text-anchor="{anchor}" '
            f'fill="#374151"{rotate}>{escape(label)}</text>'
        )
    svg.add(_legend([(name, color) for name, _, color, _ in groups]))
    return svg.text()


# ------------------------------------------------------------------------------------ drawing


def _path(frame: _Frame, line: Line) -> str:
    """The line as one path (a new subpath after each gap); dots for single points."""
    commands: list[str] = []
    dots: list[str] = []
    previous: tuple[float, float] | None = None
    for x, y in zip(line.xs, line.ys, strict=True):
        if y is None or not math.isfinite(y):
            previous = None
            continue
        px, py = frame.px(x), frame.py(y)
        if previous is None:
            commands.append(f"M{px:.1f},{py:.1f}")
        elif line.steps:
            commands.append(f"H{px:.1f}V{py:.1f}")
        else:
            commands.append(f"L{px:.1f},{py:.1f}")
        if line.dots or not line.connect:
            r = 2.2 if line.connect else 3.5
            dots.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{r}" fill="{line.color}"/>')
        previous = (px, py)
    if not commands:
        return ""
    css = escape(line.css)
    if not line.connect:
        return f'<g class="line {css}"><title>{escape(line.name)}</title>{"".join(dots)}</g>'
    return (
        f'<path class="line {css}" d="{"".join(commands)}" fill="none" stroke="{line.color}" '
        f'stroke-width="2"><title>{escape(line.name)}</title></path>' + "".join(dots)
    )


def _axes(frame: _Frame, x_label: str, y_label: str, time_x: bool, x_ticks: bool = True) -> str:
    bottom, right = HEIGHT - MARGIN_BOTTOM, WIDTH - MARGIN_RIGHT
    out = [
        f'<line class="axis" x1="{MARGIN_LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}" '
        'stroke="#6b7280"/>',
        f'<line class="axis" x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT}" y1="{MARGIN_TOP}" '
        f'y2="{bottom}" stroke="#6b7280"/>',
    ]
    for y in _y_ticks(frame):
        py = frame.py(y)
        out.append(
            f'<line x1="{MARGIN_LEFT}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{MARGIN_LEFT - 5}" y="{py + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#374151">{_number(y)}</text>'
        )
    if x_ticks:
        for x in _time_ticks(frame.x0, frame.x1, 6) if time_x else _ticks(frame.x0, frame.x1, 6):
            px = frame.px(x)
            text = _clock(x) if time_x else _number(x)
            out.append(
                f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{bottom}" y2="{bottom + 4}" '
                f'stroke="#6b7280"/><text x="{px:.1f}" y="{bottom + 16}" font-size="10" '
                f'text-anchor="middle" fill="#374151">{text}</text>'
            )
    if time_x:
        x_label = x_label or f"time (UTC), {_day(frame.x0)}"
    if x_label:
        out.append(
            f'<text x="{(MARGIN_LEFT + right) / 2:.1f}" y="{HEIGHT - 8}" font-size="11" '
            f'text-anchor="middle" fill="#374151">{escape(x_label)}</text>'
        )
    if y_label:
        mid = (MARGIN_TOP + bottom) / 2
        out.append(
            f'<text x="13" y="{mid:.1f}" font-size="11" text-anchor="middle" fill="#374151" '
            f'transform="rotate(-90 13 {mid:.1f})">{escape(y_label)}</text>'
        )
    return "".join(out)


def _legend(entries: Sequence[tuple[str, str]]) -> str:
    out, x = [], float(MARGIN_LEFT)
    for name, color in entries:
        label = name if len(name) <= 40 else name[:39] + "\u2026"
        out.append(
            f'<rect x="{x:.1f}" y="25" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 13:.1f}" y="34" font-size="11" fill="#374151">{escape(label)}</text>'
        )
        x += 28 + 6.2 * len(label)
    return '<g class="legend">' + "".join(out) + "</g>"


def _empty() -> str:
    return (
        f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" font-size="12" '
        'text-anchor="middle" fill="#6b7280">no data to plot</text>'
    )


# ------------------------------------------------------------------------------------ scales


def _nice_range(lo: float, hi: float) -> tuple[float, float]:
    if lo == hi:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    ticks = _ticks(lo, hi, 5)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else (hi - lo)
    return min(lo, math.floor(lo / step) * step), max(hi, math.ceil(hi / step) * step)


def _ticks(lo: float, hi: float, count: int) -> list[float]:
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return [lo]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


# Steps a person reads on a clock: seconds, minutes, hours, days.
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
               43200, 86400, 172800, 604800)  # fmt: skip


def _time_ticks(lo: float, hi: float, count: int) -> list[float]:
    """Ticks on whole clock steps (10s, 1m, 5m, 1h...), at most about `count`."""
    step = next((s for s in _TIME_STEPS if (hi - lo) / s <= count), _TIME_STEPS[-1])
    start = math.ceil(lo / step) * step
    return [float(start + i * step) for i in range(int((hi - start) // step) + 1)]


def _y_ticks(frame: _Frame) -> list[float]:
    if frame.log_y:
        lo, hi = math.log10(frame.y0), math.log10(frame.y1)
        return [10.0**e for e in range(math.floor(lo), math.ceil(hi) + 1)]
    return _ticks(frame.y0, frame.y1, 5)


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.0e}"
    return f"{value:.4g}"


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")
