"""Geometry of the static SVG charts that every reader sees, with or without JavaScript.

Pure functions from numbers to coordinates and tick labels; the templates draw the SVG elements.
The y range never shrinks below a decade (log) or 10% of the level (linear): a nearly constant LR
must look flat, not like a ramp magnified to fill the box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from forensics.formatting import fmt_step, fmt_value

WIDTH, HEIGHT = 1000, 200
LEFT, RIGHT, TOP, BOTTOM = 72, 12, 8, 26   # margins around the plot area
MAX_Y_TICKS = 6


@dataclass(frozen=True)
class Tick:
    position: float      # x or y in SVG units
    label: str


@dataclass(frozen=True)
class Line:
    css_class: str        # "actual", "intended"
    label: str
    pieces: tuple[str, ...]   # one "x,y x,y ..." per stretch between gaps (NaN breaks a line)


@dataclass(frozen=True)
class Marker:
    kind: str             # "segment", "checkpoint", "spike", "nan", "event"
    x: float
    label: str


@dataclass(frozen=True)
class Band:
    kind: str             # "nan", "deviation", "finding"
    x: float
    width: float
    label: str


@dataclass(frozen=True)
class StaticChart:
    """An SVG chart's drawable parts, in SVG user units (viewBox 0 0 WIDTH HEIGHT)."""

    width: int
    height: int
    plot_left: int
    plot_top: int
    plot_right: int
    plot_bottom: int
    lines: tuple[Line, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    markers: tuple[Marker, ...]
    bands: tuple[Band, ...]


@dataclass(frozen=True)
class StepScale:
    """Maps steps to x between the plot's left and right edges."""

    low: int
    high: int
    left: float = LEFT
    right: float = WIDTH - RIGHT

    def x(self, step: float) -> float:
        span = (self.high - self.low) or 1
        return round(self.left + (step - self.low) / span * (self.right - self.left), 1)

    def ticks(self, count: int = 6) -> tuple[Tick, ...]:
        return tuple(Tick(self.x(step), fmt_step(step)) for step in nice_ticks(self.low, self.high, count)
                     if self.low <= step <= self.high)


def static_chart(scale: StepScale, lines: list[tuple[str, str, list, list]], log_scale: bool,
                 markers: list[tuple[str, int, str]] = (), bands: list[tuple[str, int, int, str]] = ()
                 ) -> StaticChart:
    """Lay out `lines` (css class, label, steps, values with None for gaps), markers and bands."""
    finite = [v for _, _, _, values in lines for v in values
              if v is not None and math.isfinite(v) and (v > 0 or not log_scale)]
    low, high = _y_range(finite, log_scale)
    top, bottom = TOP, HEIGHT - BOTTOM

    def y(value: float) -> float:
        level = math.log10(value) if log_scale else value
        return round(bottom - (level - low) / (high - low) * (bottom - top), 1)

    drawn = []
    for css_class, label, steps, values in lines:
        pieces, current = [], []
        for step, value in zip(steps, values):
            if value is None or not math.isfinite(value) or (log_scale and value <= 0):
                if current:
                    pieces.append(" ".join(current))
                current = []
                continue
            current.append(f"{scale.x(step)},{y(value)}")
        if current:
            pieces.append(" ".join(current))
        drawn.append(Line(css_class, label, tuple(pieces)))
    y_ticks = tuple(Tick(y(value), fmt_value(value)) for value in
                    (float(10 ** level if log_scale else level) for level in _y_tick_levels(low, high, log_scale)))
    placed_bands = tuple(Band(kind, scale.x(start), max(1.0, round(scale.x(end) - scale.x(start), 1)), label)
                         for kind, start, end, label in bands)
    return StaticChart(WIDTH, HEIGHT, LEFT, top, WIDTH - RIGHT, bottom, tuple(drawn), scale.ticks(), y_ticks,
                       tuple(Marker(kind, scale.x(step), label) for kind, step, label in markers), placed_bands)


def _y_range(finite: list[float], log_scale: bool) -> tuple[float, float]:
    if not finite:
        return (-1.0, 1.0) if log_scale else (0.0, 1.0)
    levels = [math.log10(v) for v in finite] if log_scale else finite
    low, high = min(levels), max(levels)
    minimum_span = 1.0 if log_scale else (0.1 * max(abs(low), abs(high)) or 1.0)
    if high - low < minimum_span:
        middle = (high + low) / 2
        low, high = middle - minimum_span / 2, middle + minimum_span / 2
    pad = (high - low) * 0.05
    return low - pad, high + pad


def _y_tick_levels(low: float, high: float, log_scale: bool) -> list[float]:
    if log_scale:
        decades = list(range(math.ceil(low), math.floor(high) + 1))
        stride = max(1, math.ceil(len(decades) / MAX_Y_TICKS))  # a diverging loss spans 40 decades
        return decades[::stride] if len(decades) >= 2 else [low + (high - low) * f for f in (0.1, 0.5, 0.9)]
    return [t for t in nice_ticks(low, high, 5) if low <= t <= high]


def nice_ticks(low: float, high: float, count: int) -> list:
    """Round tick values (1, 2, 5 times a power of ten) covering [low, high]."""
    span = high - low
    if span <= 0:
        return [low]
    raw = span / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(int(round(value)) if step >= 1 else round(value, 12))
        value += step
    return ticks
