"""warmup_missing: full LR from the first step, and the run was unstable right away."""

from __future__ import annotations

import numpy as np

from forensics.checks.base import Check, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.numerics.spikes import first_spike
from forensics.checks.series import busiest_source
from forensics.formatting import fmt_lr, fmt_step, fmt_value
from forensics.model import aliases
from forensics.model.run import Run

FULL_LR = 0.5          # the first LR is at least half the peak
EARLY_SHARE = 0.05     # instability within the first 5% of steps ...
EARLY_MIN_STEPS = 50   # ... but never a window shorter than this
LOSS_SPIKE = 3.0
SCALE_SHARE = 0.25     # a spike must climb by this share of the starting loss
JUMP_WINDOW = 10       # a jump against everything before it, in the values the running median cannot judge yet


class WarmupMissing(Check):
    """No LR warmup: the run starts at full LR and is unstable from the first steps.

    **Symptom**: the very first logged LR is already (close to) the peak LR, and within the first
    few percent of training the loss spikes or rises above its starting value.

    **Bad run**: AdamW at 1e-3 from step 0 on a transformer: the loss jumps from 2.3 to 9.8 in the
    first 40 steps before it starts to fall.

    **Healthy run**: the LR ramps up from a small value; or it starts at full LR and the early
    loss falls without spikes (many small models need no warmup).

    **Fix**: warm the LR up over the first 1-5% of steps, e.g. `SequentialLR(optimizer,
    [LinearLR(optimizer, start_factor=0.01, total_iters=warmup_steps), main_schedule],
    milestones=[warmup_steps])`, or `OneCycleLR`'s own warmup (`pct_start`).
    """

    code = "warmup_missing"
    severity = "warning"
    needs = ("LR series", "training loss series")

    def run(self, run: Run) -> list[Finding]:
        lr = run.series(aliases.LR, group=0)
        loss = run.series(aliases.LOSS, group=0)
        if len(lr) < 2 or len(loss) < 20:
            raise NotApplicable("needs an LR series and a training loss series with at least 20 points")
        lr = lr[np.isfinite(lr["value"].to_numpy())].sort_values(["segment", "step"], kind="stable")
        if lr.empty:
            raise NotApplicable("the LR series holds no finite value")
        first_lr, peak_lr = float(lr["value"].iloc[0]), float(np.nanmax(lr["value"].to_numpy()))
        if not peak_lr > 0 or first_lr < FULL_LR * peak_lr:
            return []
        loss = loss[loss["segment"] == loss["segment"].min()]  # the run's first start, not a resume
        loss = busiest_source(loss)
        loss = loss.sort_values("step", kind="stable").reset_index(drop=True)
        steps = loss["step"].to_numpy()
        horizon = steps[0] + max(EARLY_MIN_STEPS, EARLY_SHARE * (steps[-1] - steps[0]))
        early = loss[loss["step"] <= horizon].reset_index(drop=True)
        values = early["value"].to_numpy()
        start_level = float(np.median(values[:5]))
        spike = first_spike(values, LOSS_SPIKE, sustained=1)
        if spike and not _at_loss_scale(values[spike.index], spike.baseline, start_level):
            spike = None
        rose = np.flatnonzero(~np.isfinite(values) | (values > 1.5 * start_level))
        rose = rose[rose >= 5]
        jump = _first_jump(values)
        if jump is not None and not _at_loss_scale(values[jump], float(np.median(values[:jump])), start_level):
            jump = None
        candidates = [index for index in ((spike.index if spike else None), (int(rose[0]) if len(rose) else None),
                                          jump) if index is not None]
        if not candidates:
            return []
        first = min(candidates)
        if first == jump:  # in the first few values, "the start" is what came before the jump
            start_level = float(np.median(values[:jump]))
        unstable = early.iloc[first]
        message = (f"The LR starts at {fmt_lr(first_lr)}, {first_lr / peak_lr:.0%} of its peak {fmt_lr(peak_lr)}, "
                   f"with no warmup, and the loss became unstable at step {fmt_step(int(unstable['step']))} "
                   f"({fmt_value(float(unstable['value']))} against {fmt_value(start_level)} at the start).")
        evidence = [row_evidence(run, lr.iloc[0], expected=f"well below {fmt_lr(peak_lr)}", note="first LR"),
                    row_evidence(run, early.iloc[0], note="first loss"),
                    row_evidence(run, unstable, expected=f"below {fmt_value(start_level)}", note="early instability")]
        return [self.finding(step=int(lr["step"].iloc[0]), end_step=int(unstable["step"]), message=message,
                             fix=self.documentation()["Fix"], evidence=evidence, confidence=0.7)]


def _at_loss_scale(value: float, baseline: float, start_level: float) -> bool:
    """Whether a spike rises by a real share of the loss's starting level. Near zero a loss is
    noisy in ratio (0.003 -> 0.012 is 4x) while it sits 100x below where it began: no instability."""
    return not np.isfinite(value) or value - baseline >= SCALE_SHARE * start_level


def _first_jump(values: np.ndarray) -> int | None:
    """The first of the first JUMP_WINDOW values that is LOSS_SPIKE x the median of all before it.

    The running median behind `first_spike` needs 10 values and the "rose" rule takes the first 5 as
    its baseline, so a jump at step 2 (the classic no-warmup blow-up) would hide in both.
    """
    for index in range(1, min(JUMP_WINDOW, len(values))):
        before = values[:index][np.isfinite(values[:index])]
        if len(before) and np.isfinite(values[index]) and values[index] > LOSS_SPIKE * float(np.median(before)) > 0:
            return index
    return None
