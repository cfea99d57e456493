"""grad_explosion: the gradient norm blows up far beyond its usual level."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence, row_locator
from forensics.checks.numerics.spikes import (
    LEVEL_WINDOW,
    Climb,
    first_climb,
    first_spike,
    trailing_level,
)
from forensics.checks.series import busiest_source
from forensics.formatting import fmt_step, fmt_value
from forensics.model import aliases
from forensics.model.run import Run

SPIKE = 10.0         # a value this many times the running median is a spike
EXPLOSION = 100.0    # ... and this many times, an explosion
SUSTAINED = 3        # or SPIKE for this many values in a row
CLIMB_START = 10.0   # a steady climb starts with the first value this many times the usual level ...
CLIMB_GROWTH = 30.0  # ... and is an explosion once its level is this many times its lowest level before ...
CLIMB_OVER_TYPICAL = 10.0  # ... and this many times the median of everything logged before it
# Healthy corpus and real runs reach at most ~6x and ~3x on those two ratios; clipped explosions
# 200x+ and 75x+: both thresholds sit an order of magnitude from either side.
MIN_POINTS = 20


class GradExplosion(Check):
    """Gradient norm exploded far above its running level.

    **Symptom**: the logged gradient norm jumps to 100x its running median, or stays above 10x
    for several logged steps in a row, or climbs steadily until its level (the median of 10
    values) is 30x the lowest level before it and 10x the median of everything logged before
    (clipping hides the jump: every update is capped, but the measured norm keeps growing). Levels
    and whole-run medians decide, not single values, so the verdict does not hang on the last
    bits of a run at the edge of stability.

    **Bad run**: grad norm around 0.5 for 3,000 steps, then 40, 900, 2e+04 as the LR ramps up:
    the weights are being thrown around and a NaN usually follows. Or, with
    `clip_grad_norm_(max_norm=1.0)` and an LR that keeps growing, a norm of 2 that climbs to 700
    over 100 steps while the loss stays finite.

    **Healthy run**: the grad norm moves within an order of magnitude of its recent level; single
    short spikes that settle at once are not flagged.

    **Fix**: clip gradients (`torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)`), lower the
    peak LR or lengthen warmup, and check the loss scale and input data at the onset step; a norm
    that climbs under clipping means the LR (or its schedule) is too high, clipping only hides it.
    """

    code = "grad_explosion"
    severity = "warning"
    needs = ("grad norm series",)

    def run(self, run: Run) -> list[Finding]:
        grad = run.series(aliases.GRAD_NORM, group=0)
        if len(grad) < MIN_POINTS:
            raise NotApplicable(f"needs a grad norm series with at least {MIN_POINTS} points; "
                                + ("none found" if grad.empty else f"found {len(grad)}"))
        grad = busiest_source(grad).sort_values(["segment", "step"], kind="stable").reset_index(drop=True)
        values = grad["value"].to_numpy()
        spike = first_spike(values, SPIKE, once_factor=EXPLOSION, sustained=SUSTAINED)
        climb = first_climb(values, CLIMB_START, CLIMB_GROWTH, CLIMB_OVER_TYPICAL)
        if climb is not None and (spike is None or climb.start < spike.index):
            return [self._climb_finding(run, grad, climb)]
        if spike is None:
            return []
        index, ratio, baseline = spike.index, spike.ratio, spike.baseline
        row = grad.iloc[index]
        peak = _peak_row(grad, index)
        settled = _settled_step(grad, index, baseline)
        message = (f"{row['tag']} rose to {fmt_value(float(row['value']))} at step {fmt_step(int(row['step']))}, "
                   f"{ratio:,.0f}x its running median of {fmt_value(baseline)}; it peaked at "
                   f"{fmt_value(float(peak['value']))} at step {fmt_step(int(peak['step']))}"
                   + (f" and was back near its level by step {fmt_step(settled)}." if settled is not None
                      else " and never came back to its earlier level."))
        evidence = [row_evidence(run, row, expected=f"about {fmt_value(baseline)}", note="first explosive value"),
                    row_evidence(run, peak, note="peak")]
        if index > 0:
            evidence.insert(0, row_evidence(run, grad.iloc[index - 1], note="last value at the usual level"))
        return [self.finding(step=int(row["step"]), end_step=settled if settled is not None else int(grad["step"].iloc[-1]), message=message,
                             fix=self.documentation()["Fix"], evidence=evidence, confidence=0.8)]

    def _climb_finding(self, run: Run, grad: pd.DataFrame, climb: Climb) -> Finding:
        """A steady climb: where it left its band, where its level passed the thresholds, and the peak."""
        row, confirmed = grad.iloc[climb.start], grad.iloc[climb.confirmed]
        peak = _peak_row(grad, climb.start)
        level_after = trailing_level(grad["value"].to_numpy())[climb.confirmed:]
        calm = np.flatnonzero(np.isfinite(level_after) & (level_after < 3 * climb.baseline))
        settled = int(grad["step"].iloc[climb.confirmed + calm[0]]) if len(calm) else None
        growth = climb.level / climb.baseline
        message = (f"{row['tag']} climbed steadily rather than spiking: it left its usual level at step "
                   f"{fmt_step(int(row['step']))} ({fmt_value(float(row['value']))}, {climb.ratio:,.1f}x its usual "
                   f"level of {fmt_value(climb.baseline)}, the median of every value before), and by step "
                   f"{fmt_step(int(confirmed['step']))} the median of its last {LEVEL_WINDOW} values was "
                   f"{fmt_value(climb.level)}, {growth:,.0f}x that level and {climb.level / climb.floor:,.0f}x its "
                   f"lowest level of {fmt_value(climb.floor)}; it peaked at {fmt_value(float(peak['value']))} at step {fmt_step(int(peak['step']))}"
                   + (f"; its level was back near the usual level by step {fmt_step(settled)}." if settled is not None
                      else " and its level never came back."))
        window = grad.iloc[max(0, climb.confirmed - LEVEL_WINDOW + 1):climb.confirmed + 1]
        level = Evidence(str(confirmed["source"]), f"median of {len(window)} values: "
                         f"{row_locator(run, window.iloc[0])} .. {row_locator(run, window.iloc[-1])}", climb.level,
                         expected=f"about {fmt_value(climb.baseline)}",
                         note=f"level {growth:,.0f}x the usual level before the climb")
        evidence = [row_evidence(run, row, expected=f"about {fmt_value(climb.baseline)}",
                                 note="first value out of the usual band"), level, row_evidence(run, peak, note="peak")]
        if climb.start > 0:
            evidence.insert(0, row_evidence(run, grad.iloc[climb.start - 1], note="last value at the usual level"))
        return self.finding(step=int(row["step"]), end_step=settled if settled is not None else int(grad["step"].iloc[-1]), message=message,
                            fix=self.documentation()["Fix"], evidence=evidence, confidence=0.75)


def _peak_row(grad: pd.DataFrame, index: int) -> pd.Series:
    """The row of the largest finite value from `index` on (the row at `index` if none is finite)."""
    later = grad["value"].to_numpy()[index:]
    if not np.isfinite(later).any():
        return grad.iloc[index]
    return grad.iloc[index + int(np.nanargmax(np.where(np.isfinite(later), later, -np.inf)))]


def _settled_step(grad: pd.DataFrame, index: int, baseline: float) -> int | None:
    values = grad["value"].to_numpy()
    calm = np.flatnonzero(np.isfinite(values[index:]) & (values[index:] < 3 * baseline))
    return int(grad["step"].iloc[index + calm[0]]) if len(calm) else None
