"""lr_runaway: the LR grows without bound."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forensics.checks.base import Check, Evidence, Finding
from forensics.checks.evidence import row_evidence, row_locator
from forensics.checks.schedule.lr_trajectory import LrTrajectory, lr_trajectory, stated_schedule_explains
from forensics.formatting import fmt_lr, fmt_step
from forensics.model.run import Run
from forensics.rolling import rolling_median

# The LR's starting level: the median of its positive values over this first share of training
# (a warmup from 0 is then judged against where it warmed up to, not against 0).
START_SHARE = 0.1
# Runaway: the LR ends this many times above its starting level (two orders of magnitude) ...
GROWTH = 100.0
# ... and this many times above its highest level in the first half of training: still growing.
# A linear warmup that never ends gains at most 2x in its second half, OneCycle and CyclicLR none.
LATE_GROWTH = 10.0
# Or its level passes this, above any LR an optimizer is trained with, after growing GROWTH-fold.
INSANE_LR = 100.0
# A level is the median of this many neighbouring values, so one odd logged value never decides.
LEVEL_POINTS = 5
# The onset: the first level this many times its starting level.
ONSET_GROWTH = 10.0


@dataclass(frozen=True)
class Runaway:
    """Where the LR started, where it took off, and how far it went."""

    start_level: float
    onset: int          # first row whose level is ONSET_GROWTH x the starting level
    top: int            # row of the highest level
    top_level: float
    first_half_top: int  # row of the highest level in the first half of training
    still_growing: bool


class LrRunaway(Check):
    """Learning rate grew without bound.

    **Symptom**: the logged LR ends 100x or more above its starting level and is still growing
    at the end (10x above its highest level in the first half of the run), or it passes 100, above
    any LR an optimizer trains with. Needs no stated schedule: no schedule in use grows that way.

    **Bad run**: ExponentialLR(gamma=1.05) stepped per batch (meant gamma=0.95): the LR goes from
    1e-3 to 189 in 250 steps while the loss climbs from 2.3 to 8,000 under gradient clipping.

    **Healthy run**: a linear or exponential warmup that reaches its peak and then stays or decays,
    OneCycle's 25x ramp, CyclicLR going up and down between its bounds, a constant LR.

    **Fix**: use a decay factor below 1 (`ExponentialLR(gamma=0.95)`), check `LambdaLR` factors and
    warmup lengths in optimizer steps (a warmup longer than the run never ends), cap the LR
    (`max_lr`), and restart from the checkpoint saved before the LR took off. An LR range test
    (LR finder) grows like this on purpose: analyse the training run instead.
    """

    code = "lr_runaway"
    severity = "error"
    needs = ("LR series",)

    def run(self, run: Run) -> list[Finding]:
        trajectory = lr_trajectory(run)
        runaway = _runaway(trajectory)
        if runaway is None:
            return []
        grown = trajectory.rows.iloc[runaway.onset:]
        if stated_schedule_explains(run, grown) is not None:
            return []  # the user stated this very schedule (--schedule)
        return [self._finding(run, trajectory, runaway)]

    def _finding(self, run: Run, trajectory: LrTrajectory, runaway: Runaway) -> Finding:
        rows = trajectory.rows
        onset, top = rows.iloc[runaway.onset], rows.iloc[runaway.top]
        growth = runaway.top_level / runaway.start_level
        message = (f"LR grew from a starting level of {fmt_lr(runaway.start_level)} to {fmt_lr(runaway.top_level)} "
                   f"around step {fmt_step(int(top['step']))}, {growth:.1e}x ({np.log10(growth):.1f} orders of "
                   f"magnitude); it passed {ONSET_GROWTH:g}x its start at step {fmt_step(int(onset['step']))}")
        if runaway.still_growing:
            half_top = float(_levels(trajectory.values)[runaway.first_half_top])
            message += (f" and was still growing at the end, {runaway.top_level / half_top:,.0f}x its highest "
                        f"level in the first half of the run ({fmt_lr(half_top)})")
        if runaway.top_level >= INSANE_LR:
            message += f"; an LR above {INSANE_LR:g} is one no optimizer trains with"
        message += "."
        evidence = [
            self._start_evidence(run, trajectory, runaway),
            row_evidence(run, onset, expected=f"about {fmt_lr(runaway.start_level)}",
                         note=f"first level {ONSET_GROWTH:g}x the starting level"),
        ]
        if runaway.still_growing:
            evidence.append(row_evidence(run, rows.iloc[runaway.first_half_top],
                                         note="highest level in the first half of the run"))
        evidence.append(row_evidence(run, top, expected=f"<= {fmt_lr(runaway.start_level * GROWTH)}",
                                     note="highest level of the LR"))
        if runaway.top != len(rows) - 1:
            evidence.append(row_evidence(run, rows.iloc[-1], note="last LR value logged"))
        return self.finding(step=int(onset["step"]), end_step=int(rows["step"].iloc[-1]), message=message,
                            fix=self.documentation()["Fix"], evidence=evidence, confidence=0.9)

    @staticmethod
    def _start_evidence(run: Run, trajectory: LrTrajectory, runaway: Runaway) -> Evidence:
        opening = _opening(trajectory)
        rows = trajectory.rows.iloc[opening]
        return Evidence(str(rows["source"].iloc[0]), f"median of {len(rows)} values: {row_locator(run, rows.iloc[0])}"
                        f" .. {row_locator(run, rows.iloc[-1])}", runaway.start_level,
                        note=f"starting level: the LR over the first {START_SHARE:.0%} of training")


def _levels(values: np.ndarray) -> np.ndarray:
    """Median of LEVEL_POINTS neighbouring values at each row."""
    return rolling_median(values, LEVEL_POINTS, min_periods=1, center=True)


def _opening(trajectory: LrTrajectory) -> np.ndarray:
    """Indices of the positive LR values in the first START_SHARE of training (at least the first three)."""
    positive = np.flatnonzero(trajectory.values > 0)
    early = positive[trajectory.progress[positive] - trajectory.progress[0] <= START_SHARE * trajectory.span]
    return early if len(early) >= 3 else positive[:3]


def _runaway(trajectory: LrTrajectory) -> Runaway | None:
    """The runaway, if the LR's growth is one no schedule makes."""
    opening = _opening(trajectory)
    if not len(opening):
        return None
    start_level = float(np.median(trajectory.values[opening]))
    levels = _levels(trajectory.values)
    top = int(np.argmax(levels))
    top_level = float(levels[top])
    if top_level < GROWTH * start_level:
        return None
    half = int(np.searchsorted(trajectory.progress - trajectory.progress[0], trajectory.span / 2, side="right"))
    half = max(1, min(half, len(levels) - 1))
    first_half_top = int(np.argmax(levels[:half]))
    end_level = float(levels[-1])
    still_growing = (end_level >= GROWTH * start_level and end_level >= LATE_GROWTH * float(levels[first_half_top])
                     and end_level >= top_level / 2)
    if not still_growing and top_level < INSANE_LR:
        return None
    onset = int(np.flatnonzero(levels >= ONSET_GROWTH * start_level)[0])
    return Runaway(start_level, onset, top, top_level, first_half_top, still_growing)
