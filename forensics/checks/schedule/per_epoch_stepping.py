"""per_epoch_stepping: a per-step schedule stepped once per epoch, so the LR moves in a staircase."""

from __future__ import annotations

import numpy as np

from forensics.checks.base import Check, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.schedule.alignment import align, intent_evidence
from forensics.formatting import fmt_lr, fmt_step
from forensics.model.run import Run

MIN_CHANGES = 2
CHANGE = 1e-6        # relative LR change that counts as a change
EXPLAINED = 0.25     # the 1/epoch time scale must explain the LR this much better than the schedule as is


class PerEpochStepping(Check):
    """A per-step LR schedule was stepped once per epoch: the LR moves in an epoch staircase.

    **Symptom**: the logged LR changes only every N steps (N = steps per epoch) and stays flat in
    between, while the intended schedule (OneCycleLR, cosine or linear sized in optimizer steps)
    changes every step; the run only gets through 1/N of its schedule.

    **Bad run**: `OneCycleLR(total_steps=epochs * len(loader))` with `scheduler.step()` after the
    batch loop: 12 LR values in 2,400 steps, the warmup never finishes.

    **Healthy run**: a per-step schedule stepped every optimizer step; or an epoch schedule
    (`CosineAnnealingLR(T_max=epochs)`, `StepLR`) stepped once per epoch on purpose.

    **Fix**: move `scheduler.step()` inside the batch loop, right after `optimizer.step()`; or, if
    per-epoch stepping is wanted, size the schedule in epochs (`T_max=epochs`).
    """

    code = "per_epoch_stepping"
    severity = "error"
    needs = ("LR series", "intended per-step schedule")

    def run(self, run: Run) -> list[Finding]:
        alignment = align(run)
        intended, lr, comparison = alignment.intended, alignment.lr, alignment.comparison
        if intended.interval != "step":
            raise NotApplicable(f"the intended schedule steps per {intended.interval} ({intended.interval_basis})")
        values, steps = lr["value"].to_numpy(), lr["step"].to_numpy()
        changes = np.flatnonzero(np.abs(np.diff(values)) > CHANGE * np.abs(values[:-1])) + 1
        if len(changes) < MIN_CHANGES:
            return []
        spacing = np.diff(steps[changes])
        period = int(np.median(spacing)) if len(spacing) else int(steps[changes[0]] - steps[0])
        if period < 2 or not np.all(np.abs(spacing - period) <= max(1, 0.02 * period)):
            return []
        if not (comparison.time_scale < 1 and comparison.time_scale_residual < EXPLAINED * comparison.residual):
            return []
        if intended.steps_per_epoch and period % intended.steps_per_epoch and intended.steps_per_epoch % period:
            return []
        first_change = lr.iloc[changes[0]]
        expected_here = float(intended.expected_at([first_change["step"]])[0])
        names = ", ".join(comparison.time_scale_names)
        message = (f"The LR changes only every {period:,} steps (steps {', '.join(fmt_step(int(s)) for s in steps[changes[:3]])}"
                   f"{', ...' if len(changes) > 3 else ''}) and is flat in between, although {intended.class_name} is a "
                   f"per-step schedule ({intended.spec}): scheduler.step() runs once per epoch. At step "
                   f"{fmt_step(int(first_change['step']))} the LR is {fmt_lr(float(first_change['value']))} where the "
                   f"schedule expects {fmt_lr(expected_here)}; {names}.")
        evidence = [row_evidence(run, lr.iloc[0], expected=float(intended.expected_at([steps[0]])[0]), note="first LR"),
                    row_evidence(run, lr.iloc[changes[0] - 1], expected=float(intended.expected_at([steps[changes[0] - 1]])[0]),
                                 note="last step before the first change"),
                    row_evidence(run, first_change, expected=expected_here, note="first change of LR"),
                    intent_evidence(intended)]
        return [self.finding(step=int(steps[0]), end_step=int(steps[-1]), message=message,
                             fix=self.documentation()["Fix"], evidence=evidence, confidence=0.9)]
