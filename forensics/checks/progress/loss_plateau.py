"""loss_plateau: the training loss stopped improving for most of the run at a constant LR."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forensics.checks.base import Check, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.formatting import fmt_lr, fmt_percent, fmt_step, fmt_value
from forensics.model import aliases
from forensics.model.run import Run

MIN_POINTS = 50
MIN_SHARE = 0.5          # flat for at least this share of the run's steps
BAND_OF_LEVEL = 0.01     # "flat" = within 1% of the final level ...
BAND_OF_DROP = 0.05      # ... or 5% of the total improvement, whichever is wider
LR_FLAT = 0.05
SMALL_DROP = 0.2         # without an LR series, only a run that barely improved counts as stuck


class LossPlateau(Check):
    """Training loss plateaued for most of the run while the LR stayed constant.

    **Symptom**: after an early drop the (smoothed) training loss stays within a narrow band for
    at least half of the run, and the LR never changes during that stretch, so nothing could
    have moved it out of the plateau.

    **Bad run**: loss 5.83 -> 5.71 in the first 100 epochs, then 5.71 for 1,400 epochs at a constant
    LR of 0.02.

    **Healthy run**: the loss keeps improving, or flattens only while the LR anneals towards zero
    at the end of a schedule (convergence, not a plateau).

    **Fix**: add an LR schedule that decays (cosine, step) or `ReduceLROnPlateau(optimizer,
    patience=...)` stepped with the validation loss; check that the model has the capacity and the
    data the signal the loss asks for; stop runs whose loss has not moved for many epochs.
    """

    code = "loss_plateau"
    severity = "info"
    needs = ("training loss series",)

    def run(self, run: Run) -> list[Finding]:
        loss = run.series(aliases.LOSS, group=0)
        loss = loss[np.isfinite(loss["value"].to_numpy())]
        if len(loss) < MIN_POINTS:
            raise NotApplicable(f"needs a finite training loss series with at least {MIN_POINTS} points")
        busiest = loss["source"].value_counts().idxmax()
        loss = loss[loss["source"] == busiest].sort_values(["segment", "step"], kind="stable").reset_index(drop=True)
        smooth = loss["value"].rolling(max(5, len(loss) // 20), min_periods=1, center=True).median().to_numpy()
        level = float(np.median(smooth[-max(1, len(smooth) // 10):]))
        drop = float(smooth[0] - smooth.min())
        band = max(BAND_OF_LEVEL * abs(level), BAND_OF_DROP * max(drop, 0.0))
        outside = np.flatnonzero(np.abs(smooth - level) > band)
        start = int(outside[-1]) + 1 if len(outside) else 0
        if start >= len(loss):
            return []
        steps = loss["step"].to_numpy()
        share = (steps[-1] - steps[start]) / max(steps[-1] - steps[0], 1)
        if share < MIN_SHARE:
            return []
        lr_note = _lr_during(run, int(steps[start]), int(steps[-1]))
        if lr_note is None:
            return []
        if lr_note == "unknown" and drop > SMALL_DROP * abs(smooth[0]):
            return []
        start_row, end_row = loss.iloc[start], loss.iloc[-1]
        message = (f"{start_row['tag']} has stayed at {fmt_value(level)} (within {fmt_value(band)}) from step "
                   f"{fmt_step(int(steps[start]))} to {fmt_step(int(steps[-1]))}, {fmt_percent(share)} of the run"
                   + (f", at a constant LR of {lr_note}." if lr_note != "unknown" else ", with no LR logged."))
        evidence = [row_evidence(run, loss.iloc[0], note="first training loss"),
                    row_evidence(run, start_row, note="start of the plateau"),
                    row_evidence(run, end_row, expected=f"below {fmt_value(level - band)}", note="end of the run")]
        return [self.finding(step=int(steps[start]), end_step=int(steps[-1]), message=message,
                             fix=self.documentation()["Fix"], evidence=evidence, confidence=0.6)]


def _lr_during(run: Run, first: int, last: int) -> str | None:
    """The constant LR over [first, last] as text, "unknown" without an LR series, None if it moved."""
    lr = run.series(aliases.LR, group=0)
    lr = lr[(lr["step"] >= first) & (lr["step"] <= last) & np.isfinite(lr["value"].to_numpy())]
    if lr.empty:
        return "unknown"
    low, high = float(lr["value"].min()), float(lr["value"].max())
    return fmt_lr(high) if high <= low * (1 + LR_FLAT) else None
