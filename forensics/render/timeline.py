"""The run's timeline as an SVG: one lane per segment (process start, restart, rewind, gap), the
checkpoints on their global step, and crash/warning events from the logs when the report has them."""

from __future__ import annotations

from dataclasses import dataclass

from forensics.formatting import fmt_step
from forensics.render.static_chart import WIDTH, StepScale, Tick
from forensics.report.model import Report

LANE_HEIGHT, LANE_GAP, TOP = 18, 6, 6
LABEL_WIDTH = 150
CRASH_KINDS = ("traceback", "crash", "error", "oom", "killed")


@dataclass(frozen=True)
class Lane:
    y: float
    x: float
    width: float
    kind: str
    label: str       # left of the lane: "#1 restart"
    title: str       # tooltip: steps and reason


@dataclass(frozen=True)
class Pin:
    kind: str        # "checkpoint", "crash", "event"
    x: float
    label: str


@dataclass(frozen=True)
class TimelineView:
    width: int
    height: int
    plot_left: int
    axis_y: float
    lanes: tuple[Lane, ...]
    pins_y: float
    pins: tuple[Pin, ...]
    ticks: tuple[Tick, ...]
    unplaced_checkpoints: tuple[str, ...]


def timeline_view(report: Report) -> TimelineView | None:
    """Lanes and pins over the run's step range; None when the run has no steps at all."""
    if report.first_step is None or report.last_step is None:
        return None
    scale = StepScale(report.first_step, report.last_step, left=LABEL_WIDTH, right=WIDTH - 12)
    lanes = []
    for row, segment in enumerate(report.segments):
        start = segment.start_step if segment.start_step is not None else report.first_step
        end = segment.end_step if segment.end_step is not None else start
        x = scale.x(start)
        rewound = (f", rewound from step {fmt_step(segment.rewound_from_step)}"
                   if segment.rewound_from_step is not None else "")
        lanes.append(Lane(TOP + row * (LANE_HEIGHT + LANE_GAP), x, max(2.0, round(scale.x(end) - x, 1)),
                          segment.kind, f"#{segment.index} {segment.kind}",
                          f"segment {segment.index}: steps {fmt_step(start)}–{fmt_step(end)}{rewound}; {segment.reason}"))
    pins_y = TOP + len(lanes) * (LANE_HEIGHT + LANE_GAP) + 8
    pins = [Pin("checkpoint", scale.x(c.global_step), f"{c.path} (step {fmt_step(c.global_step)})")
            for c in report.checkpoints if c.global_step is not None]
    for event in getattr(report, "events", None) or ():
        step, kind, text = _field(event, "step"), str(_field(event, "kind") or "event"), _field(event, "text") or ""
        if isinstance(step, int) and report.first_step <= step <= report.last_step:
            pin_kind = "crash" if any(word in kind for word in CRASH_KINDS) else "event"
            pins.append(Pin(pin_kind, scale.x(step), f"{kind} at step {fmt_step(step)}: {str(text)[:200]}"))
    unplaced = tuple(c.path for c in report.checkpoints if c.global_step is None)
    axis_y = pins_y + 14
    return TimelineView(WIDTH, int(axis_y + 20), LABEL_WIDTH, axis_y, tuple(lanes), pins_y, tuple(pins),
                        scale.ticks(), unplaced)


def _field(event, name: str):
    """Events may arrive as dataclasses or as JSON-ready dicts."""
    return event.get(name) if isinstance(event, dict) else getattr(event, name, None)
