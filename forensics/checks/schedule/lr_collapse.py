"""lr_collapse: the LR falls by many orders of magnitude while training goes on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forensics.checks.base import Check, Evidence, Finding
from forensics.checks.evidence import row_evidence
from forensics.checks.schedule.lr_trajectory import LrTrajectory, lr_trajectory, stated_schedule_explains
from forensics.formatting import fmt_lr, fmt_percent, fmt_step
from forensics.model.run import Run

# Collapsed: at or below this fraction of the running peak (four orders of magnitude) ...
COLLAPSE = 1e-4
# ... give or take the last bits: 0.01 * 0.1**4 is 1.0000000000000002e-06, and float32 logs round further.
LAST_BITS = 1e-6
# A collapse that lasts this share of training is no end-of-schedule anneal: cosine, linear and OneCycle
# schedules spend under 1% of their steps below 1e-4 of their peak, even OneCycle's 2.5e5x final drop.
MIN_SHARE = 0.25
# An LR below this absolute value is one no schedule means to train with (it is 0 to float32 weights);
# reaching it with this share of training still to go is a collapse even when the rest is shorter.
NEGLIGIBLE_LR = 1e-12
MIN_SHARE_AFTER_NEGLIGIBLE = 0.05


@dataclass(frozen=True)
class Collapse:
    """A contiguous stretch of rows below COLLAPSE x the running peak."""

    peak: int        # row of the running peak the stretch is measured against
    start: int       # first collapsed row
    end: int         # last collapsed row
    lowest: int      # row of the smallest LR in the stretch
    share: float     # share of training spent collapsed
    negligible: int | None  # first row below NEGLIGIBLE_LR (positive) in the stretch


class LrCollapse(Check):
    """Learning rate collapsed by many orders of magnitude while training went on.

    **Symptom**: the logged LR falls to 1e-4 of its running peak or less and stays there for a quarter
    of the run or more (or reaches values below 1e-12, which no schedule trains with, with training
    still going on well after): every step after that changes the weights by nothing while the loop
    keeps spending compute. Needs no stated schedule.

    **Bad run**: StepLR(step_size=30, gamma=0.1), meant per epoch but stepped per batch: the LR goes
    0.1, 0.01, ... and is 1.6e-25 by step 720 of 1,250 while the loss is still logged every step.

    **Healthy run**: cosine or linear decay that reaches 0 (or ~1e-9) on the last steps, a OneCycle
    ending at max_lr/(25*1e4), linear warmup starting at exactly 0, step decay by 10x two or three
    times; or a collapse that the schedule stated with `--schedule` expects.

    **Fix**: step per-epoch schedulers (StepLR, MultiStepLR, ExponentialLR sized in epochs) once per
    epoch, outside the batch loop, or size `step_size`/`milestones`/`gamma` in optimizer steps; give
    decaying schedules a floor (`eta_min`, `min_lr`); stop the run (or restart from the checkpoint
    before the collapse) once the LR is negligible instead of training on at zero.
    """

    code = "lr_collapse"
    severity = "error"
    needs = ("LR series",)

    def run(self, run: Run) -> list[Finding]:
        trajectory = lr_trajectory(run)
        collapse = _longest_collapse(trajectory)
        if collapse is None:
            return []
        stretch = trajectory.rows.iloc[collapse.start:collapse.end + 1]
        if stated_schedule_explains(run, stretch) is not None:
            return []  # the user stated this very schedule (--schedule)
        return [self._finding(run, trajectory, collapse)]

    def _finding(self, run: Run, trajectory: LrTrajectory, collapse: Collapse) -> Finding:
        rows = trajectory.rows
        peak, start, lowest = rows.iloc[collapse.peak], rows.iloc[collapse.start], rows.iloc[collapse.lowest]
        peak_lr, lowest_lr = float(peak["value"]), float(lowest["value"])
        drop_text = ("to exactly 0" if lowest_lr <= 0 else
                     f"to {fmt_lr(lowest_lr)} (step {fmt_step(int(lowest['step']))}), a {peak_lr / lowest_lr:.1e}x drop "
                     f"({np.log10(peak_lr / lowest_lr):.1f} orders of magnitude)")
        recovered = collapse.end < len(rows) - 1
        end_step = int(rows["step"].iloc[collapse.end])
        message = (f"LR fell from its peak {fmt_lr(peak_lr)} (step {fmt_step(int(peak['step']))}) {drop_text}; "
                   f"it was at or below {COLLAPSE:g} of that peak from step {fmt_step(int(start['step']))} "
                   + (f"to {fmt_step(end_step)}" if recovered else "to the end of the run")
                   + f" ({fmt_percent(collapse.share)} of training)")
        training_end = trajectory.later_loss if trajectory.later_loss is not None else rows.iloc[-1]
        if not recovered:
            end_step = int(training_end["step"])
            message += f" while training went on to step {fmt_step(end_step)}"
        message += "."
        evidence = [
            row_evidence(run, peak, note="running peak of the LR"),
            row_evidence(run, start, expected=f"> {fmt_lr(COLLAPSE * peak_lr)}",
                         note=f"first value at or below {COLLAPSE:g} of the peak"),
        ]
        if collapse.negligible is not None and collapse.negligible != collapse.start:
            evidence.append(row_evidence(run, rows.iloc[collapse.negligible], expected=f">= {NEGLIGIBLE_LR:g}",
                                         note="first value below any LR a schedule trains with"))
        if collapse.lowest not in (collapse.start, collapse.negligible):
            evidence.append(row_evidence(run, lowest, note="lowest LR of the collapse"))
        went_on = self._training_went_on(run, trajectory, collapse)
        if went_on not in evidence:
            evidence.append(went_on)
        return self.finding(step=int(start["step"]), end_step=end_step, message=message,
                            fix=self.documentation()["Fix"], evidence=evidence, confidence=0.9)

    @staticmethod
    def _training_went_on(run: Run, trajectory: LrTrajectory, collapse: Collapse) -> Evidence:
        """The last row showing the loop still ran while the LR was collapsed."""
        if collapse.end < len(trajectory.rows) - 1 or trajectory.later_loss is None:
            row = trajectory.rows.iloc[collapse.end]
            note = "last collapsed LR value logged: the loop was still running"
            if collapse.end == collapse.lowest:
                return row_evidence(run, row, note="lowest LR of the collapse")  # the same row, already listed
            return row_evidence(run, row, note=note)
        return row_evidence(run, trajectory.later_loss, note="training loss still logged after the collapse")


def _longest_collapse(trajectory: LrTrajectory) -> Collapse | None:
    """The collapsed stretch that lasts longest, if one lasts long enough to be a collapse."""
    values = trajectory.values
    peak = np.maximum.accumulate(values)
    collapsed = (peak > 0) & (values <= COLLAPSE * peak * (1 + LAST_BITS))
    best = None
    for start, end in _stretches(collapsed):
        until = None if end == len(values) - 1 else end + 1  # a stretch lasts until the LR came back
        share = trajectory.share_from(start, until)
        tiny = np.flatnonzero((values[start:end + 1] > 0) & (values[start:end + 1] < NEGLIGIBLE_LR))
        negligible = start + int(tiny[0]) if len(tiny) else None
        long_enough = share >= MIN_SHARE or (
            negligible is not None and trajectory.share_from(negligible, until) >= MIN_SHARE_AFTER_NEGLIGIBLE)
        if not long_enough or (best is not None and share <= best.share):
            continue
        stretch = values[start:end + 1]
        lowest = start + int(np.argmin(stretch))
        peak_row = int(np.flatnonzero(values[:start] == peak[start])[-1])
        best = Collapse(peak_row, start, end, lowest, share, negligible)
    return best


def _stretches(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of every run of True values."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.diff(padded)
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))
