"""grad_explosion: the gradient norm blows up far beyond its usual level."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forensics.checks.base import Check, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.numerics.spikes import first_spike
from forensics.formatting import fmt_step, fmt_value
from forensics.model import aliases
from forensics.model.run import Run

SPIKE = 10.0         # a value this many times the running median is a spike
EXPLOSION = 100.0    # ... and this many times, an explosion
SUSTAINED = 3        # or SPIKE for this many values in a row
MIN_POINTS = 20


class GradExplosion(Check):
    """Gradient norm exploded far above its running level.

    **Symptom**: the logged gradient norm jumps to 100x its running median, or stays above 10x
    for several logged steps in a row.

    **Bad run**: grad norm around 0.5 for 3,000 steps, then 40, 900, 2e+04 as the LR ramps up:
    the weights are being thrown around and a NaN usually follows.

    **Healthy run**: the grad norm moves within an order of magnitude of its recent level; single
    short spikes that settle at once are not flagged.

    **Fix**: clip gradients (`torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)`), lower the
    peak LR or lengthen warmup, and check the loss scale and input data at the onset step.
    """

    code = "grad_explosion"
    severity = "warning"
    needs = ("grad norm series",)

    def run(self, run: Run) -> list[Finding]:
        grad = run.series(aliases.GRAD_NORM, group=0)
        if len(grad) < MIN_POINTS:
            raise NotApplicable(f"needs a grad norm series with at least {MIN_POINTS} points; "
                                + ("none found" if grad.empty else f"found {len(grad)}"))
        busiest = grad["source"].value_counts().idxmax()
        grad = grad[grad["source"] == busiest].sort_values(["segment", "step"], kind="stable").reset_index(drop=True)
        spike = first_spike(grad["value"].to_numpy(), SPIKE, once_factor=EXPLOSION, sustained=SUSTAINED)
        if spike is None:
            return []
        index, ratio, baseline = spike.index, spike.ratio, spike.baseline
        row = grad.iloc[index]
        values = grad["value"].to_numpy()
        later = values[index:]
        peak_index = index + int(np.nanargmax(np.where(np.isfinite(later), later, -np.inf))) if np.isfinite(later).any() else index
        peak = grad.iloc[peak_index]
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
        return [self.finding(step=int(row["step"]), end_step=settled or int(grad["step"].iloc[-1]), message=message,
                             fix=self.documentation()["Fix"], evidence=evidence, confidence=0.8)]


def _settled_step(grad: pd.DataFrame, index: int, baseline: float) -> int | None:
    values = grad["value"].to_numpy()
    calm = np.flatnonzero(np.isfinite(values[index:]) & (values[index:] < 3 * baseline))
    return int(grad["step"].iloc[index + calm[0]]) if len(calm) else None
