"""schedule_too_fast: an epoch-sized schedule stepped every batch, so the LR collapses in epoch one."""

from __future__ import annotations

import numpy as np

from forensics.checks.base import Check, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.schedule.alignment import align, intent_evidence
from forensics.errors import ForensicsError
from forensics.formatting import fmt_lr, fmt_step
from forensics.model.run import Run
from forensics.schedule import IntendedSchedule, ScheduleComparison, parse_spec, replay

DEPARTED = 2.0     # actual and expected differ by this factor
EXPLAINED = 0.25


class ScheduleTooFast(Check):
    """An epoch-based LR schedule was stepped every batch: it ran through in the first epoch(s).

    **Symptom**: the schedule is sized in epochs (`CosineAnnealingLR(T_max=epochs)`,
    `StepLR(step_size=30)`, `MultiStepLR(milestones=[30, 60])`) but the LR moves every optimizer
    step, so the whole schedule is spent within the first epoch(s) and the rest of training runs at
    the final (tiny) LR, or cycles.

    **Bad run**: `CosineAnnealingLR(T_max=100)` for 100 epochs with `scheduler.step()` inside the
    batch loop: the LR reaches its minimum after 100 batches.

    **Healthy run**: the epoch schedule is stepped once per epoch; or the schedule is sized in
    optimizer steps (`T_max=epochs * len(loader)`).

    **Fix**: call `scheduler.step()` once per epoch (after the batch loop), or re-size the schedule
    in optimizer steps: `T_max = epochs * steps_per_epoch`.
    """

    code = "schedule_too_fast"
    severity = "error"
    needs = ("LR series", "intended per-epoch schedule")

    def run(self, run: Run) -> list[Finding]:
        alignment = align(run)
        intended, lr, comparison = alignment.intended, alignment.lr, alignment.comparison
        if intended.interval != "epoch":
            raise NotApplicable(f"the intended schedule steps per {intended.interval} ({intended.interval_basis})")
        scaled = comparison.time_scale > 1 and comparison.time_scale_residual < EXPLAINED * comparison.residual
        per_step = _per_step_residual(intended, comparison)
        stepped_per_step = per_step is not None and per_step < EXPLAINED * comparison.residual
        if not (scaled or stepped_per_step):
            return []
        if scaled:
            how = f"about {comparison.time_scale:,.0f}x faster than intended ({', '.join(comparison.time_scale_names)})"
        else:
            how = (f"stepped once per optimizer step instead of once per epoch ({intended.steps_per_epoch or '?'} "
                   f"steps): replayed that way it matches the logged LR to {per_step:.2g} of its peak, against "
                   f"{comparison.residual:.2g} for the per-epoch schedule")
        actual, expected = comparison.actual, comparison.expected
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.maximum(actual / expected, expected / actual)
        departed = np.flatnonzero(np.isfinite(ratio) & (ratio > DEPARTED))
        if not len(departed):
            return []
        onset = int(departed[0])
        row = alignment.row_at(onset)
        message = (f"The LR follows {intended.class_name} {how}: at step {fmt_step(int(row['step']))} it is "
                   f"{fmt_lr(float(actual[onset]))} where the per-epoch schedule {intended.spec} expects "
                   f"{fmt_lr(float(expected[onset]))}. The scheduler is stepped every batch.")
        evidence = [row_evidence(run, lr.iloc[0], expected=float(expected[0]), note="first LR"),
                    row_evidence(run, row, expected=float(expected[onset]), note=f"first step {DEPARTED:.0f}x off the schedule"),
                    row_evidence(run, lr.iloc[-1], expected=float(expected[-1]), note="last LR of the first segment"),
                    intent_evidence(intended)]
        return [self.finding(step=int(row["step"]), end_step=int(lr["step"].iloc[-1]), message=message,
                             fix=self.documentation()["Fix"], evidence=evidence, confidence=0.85)]


def _per_step_residual(intended: IntendedSchedule, comparison: ScheduleComparison) -> float | None:
    """RMS misfit (relative to the peak LR) of the logged LR against the intended schedule replayed with
    one scheduler step per optimizer step: small when an epoch schedule was stepped every batch.

    The time-scale fit cannot show this when the batch-stepped schedule runs far past the end of
    the replayed per-epoch one (k = steps per epoch leaves most steps outside it).
    """
    steps, actual = comparison.steps, comparison.actual
    if not len(steps) or steps.min() < 0:
        return None
    try:
        replayed = replay(parse_spec(intended.spec), list(intended.base_lrs), int(steps.max()) + 1, "step")
    except ForensicsError:
        return None
    expected = replayed.lrs[0][steps.astype(np.int64)]
    valid = np.isfinite(expected) & np.isfinite(actual)
    if valid.sum() < max(2, len(actual) // 2):
        return None
    peak = float(np.max(np.abs(expected[valid]))) or 1.0
    return float(np.sqrt(np.mean(((actual[valid] - expected[valid]) / peak) ** 2)))
