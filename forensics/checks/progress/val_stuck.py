"""val_stuck: a validation metric frozen at one value while the training loss improves."""

from __future__ import annotations

import re

import numpy as np

from forensics.checks.base import Check, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.formatting import fmt_step, fmt_value
from forensics.model import aliases
from forensics.model.run import Run

MIN_EVALUATIONS = 5
FROZEN = 0.005          # max - min of a 0..1 metric (x100 for percentages)
TRAINING_GAIN = 0.2     # training loss fell by at least this share
_VALIDATION = re.compile(r"^(val|valid|validation|eval|test)[/_]")
_QUALITY = re.compile(r"acc|top1|top-1|top5|map|f1|auc|precision|recall|wer|bleu")


class ValStuck(Check):
    """Validation metric stuck at one value while the training loss improves.

    **Symptom**: a validation quality metric (accuracy, mAP, F1, ...) shows the same value at every
    evaluation, often the chance level, while the training loss keeps falling: the evaluated model
    is not the trained one, or evaluation is broken.

    **Bad run**: validation accuracy 0.10% at every epoch (chance for 1,000 classes) while training
    accuracy climbs to 42%: validation ran on an EMA copy whose weights were never updated.

    **Healthy run**: validation metrics move with training, even if they lag or get worse late
    (that is overfitting, a different problem).

    **Fix**: evaluate the model you train (`model.eval()` on the same module, or update the EMA copy
    every step and sync its buffers), and check the validation data, labels and metric code on a
    handful of batches by hand.
    """

    code = "val_stuck"
    severity = "error"
    needs = ("validation quality metric series", "training loss series")

    def run(self, run: Run) -> list[Finding]:
        metrics = [name for name in run.metrics if _VALIDATION.match(name) and _QUALITY.search(name)]
        if not metrics:
            raise NotApplicable("needs a validation accuracy-like metric (val/accuracy, eval_acc, ...); none found")
        gain = _training_gain(run)
        if gain is None:
            raise NotApplicable("needs a training loss series to compare validation against")
        if gain < TRAINING_GAIN:
            raise NotApplicable(f"the training loss fell by {gain:.0%} only, so a flat validation metric is no "
                                "contradiction")
        findings, tested = [], 0
        for name in metrics:
            values = run.series(name)
            values = values[np.isfinite(values["value"].to_numpy())].sort_values("step", kind="stable")
            if len(values) < MIN_EVALUATIONS:
                continue
            tested += 1
            spread = float(values["value"].max() - values["value"].min())
            scale = 100.0 if values["value"].abs().max() > 1.0 else 1.0
            if spread > FROZEN * scale:
                continue
            first, last = values.iloc[0], values.iloc[-1]
            message = (f"{first['tag']} stayed at {fmt_value(float(first['value']))} for all {len(values)} evaluations "
                       f"(steps {fmt_step(int(first['step']))} to {fmt_step(int(last['step']))}) while the training "
                       f"loss fell by {gain:.0%}.")
            findings.append(self.finding(
                step=int(first["step"]), end_step=int(last["step"]), message=message, fix=self.documentation()["Fix"],
                evidence=[row_evidence(run, first, note="first evaluation"),
                          row_evidence(run, last, expected=f"different from {fmt_value(float(first['value']))}",
                                       note="last evaluation")],
                confidence=0.8))
        if not tested:
            raise NotApplicable(f"no validation metric has {MIN_EVALUATIONS} finite evaluations")
        return findings


def _training_gain(run: Run) -> float | None:
    """Relative fall of the training loss from its first to its last tenth."""
    loss = run.series(aliases.LOSS, group=0)
    values = loss["value"].to_numpy()
    values = values[np.isfinite(values)]
    if len(values) < 10:
        return None
    tenth = max(1, len(values) // 10)
    start, end = float(np.median(values[:tenth])), float(np.median(values[-tenth:]))
    return (start - end) / abs(start) if start else None
