"""The intended LR schedule as the page shows it: where it came from, its spec, and its points.

`Report.intended_schedule` is a JSON-ready dict (None when no source of intent was found). We read it
tolerantly: points may be `[[step, lr], ...]`, `[{"step": s, "lr": v}, ...]`, or parallel `steps`
and `lrs` lists, so the page keeps working while the schedule reconstruction evolves.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass

# The logged LR is "off schedule" where it differs from the intended one by more than this factor.
DEVIATION_FACTOR = 1.2
MAX_BANDS = 50
_POINT_KEYS = ("points", "expected_lr", "expected", "lr_points", "intended_lr")


@dataclass(frozen=True)
class IntendedView:
    """The intended schedule: provenance, spec rows for a table, and the expected LR points."""

    source: str
    spec_rows: tuple[tuple[str, str], ...]
    other_rows: tuple[tuple[str, str], ...]
    steps: tuple[int, ...]
    lrs: tuple[float, ...]

    def window(self, low: int, high: int) -> tuple[list[int], list[float]]:
        """Points inside [low, high], plus the neighbours just outside so the line reaches the edges."""
        start = max(0, bisect.bisect_left(self.steps, low) - 1)
        end = min(len(self.steps), bisect.bisect_right(self.steps, high) + 1)
        return list(self.steps[start:end]), list(self.lrs[start:end])


def intended_view(schedule: dict | None) -> IntendedView | None:
    """The view of `Report.intended_schedule`, or None when there is none."""
    if not schedule:
        return None
    steps, lrs = _points(schedule)
    spec = schedule.get("spec")
    spec_rows = tuple((str(k), _text(v)) for k, v in spec.items()) if isinstance(spec, dict) else (
        (("spec", _text(spec)),) if spec is not None else ())
    skipped = {"source", "source_detail", "spec", "steps", "lrs", *_POINT_KEYS}
    other_rows = tuple((str(k), _text(v)) for k, v in schedule.items() if k not in skipped and v not in (None, [], {}))
    source = _text(schedule.get("source", "unknown"))
    if schedule.get("source_detail"):
        source = f"{source}: {_text(schedule['source_detail'])}"
    return IntendedView(source, spec_rows, other_rows, steps, lrs)


def _points(schedule: dict) -> tuple[tuple[int, ...], tuple[float, ...]]:
    raw = next((schedule[key] for key in _POINT_KEYS if isinstance(schedule.get(key), list)), None)
    pairs = []
    if raw is not None:
        for point in raw:
            if isinstance(point, dict):
                step, lr = point.get("step"), point.get("lr", point.get("value"))
            elif isinstance(point, (list, tuple)) and len(point) >= 2:
                step, lr = point[0], point[1]
            else:
                continue
            pairs.append((step, lr))
    elif isinstance(schedule.get("steps"), list):
        values = schedule.get("lrs") or schedule.get("lr") or schedule.get("values") or []
        pairs = list(zip(schedule["steps"], values))
    clean = sorted((int(step), float(lr)) for step, lr in pairs
                   if isinstance(step, (int, float)) and isinstance(lr, (int, float)) and math.isfinite(lr))
    return tuple(step for step, _ in clean), tuple(lr for _, lr in clean)


def _text(value) -> str:
    if isinstance(value, str):
        return value
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def deviation_bands(actual_steps, actual_values, intended_steps, intended_values) -> list[tuple[int, int]]:
    """Step ranges where the logged LR is off the intended one by more than DEVIATION_FACTOR.

    The intended LR is interpolated linearly between its points; runs of deviating logged points
    become one band each (at most MAX_BANDS).
    """
    if len(intended_steps) < 1:
        return []
    bands: list[tuple[int, int]] = []
    start = previous = None
    for step, value in zip(actual_steps, actual_values):
        expected = _interpolate(intended_steps, intended_values, step)
        off = (value is not None and expected is not None and expected > 0 and value > 0
               and max(value / expected, expected / value) > DEVIATION_FACTOR)
        if off and start is None:
            start = step
        if not off and start is not None:
            bands.append((start, previous))
            start = None
        previous = step
    if start is not None:
        bands.append((start, previous))
    return bands[:MAX_BANDS]


def _interpolate(steps, values, step: int) -> float | None:
    if step < steps[0] or step > steps[-1]:
        return None
    index = bisect.bisect_left(steps, step)
    if steps[index] == step:
        return values[index]
    left, right = index - 1, index
    fraction = (step - steps[left]) / (steps[right] - steps[left])
    return values[left] + fraction * (values[right] - values[left])
