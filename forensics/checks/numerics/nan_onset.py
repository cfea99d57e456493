"""nan_onset: the first step at which the training loss stops being a finite number."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.numerics.precursors import first_warning_sign
from forensics.checks.series import all_training_losses, busiest_source
from forensics.formatting import fmt_lr, fmt_step, fmt_value
from forensics.model import aliases
from forensics.model.run import Run

FINITE_VALUES_SHOWN = 3
LR_NOTE = "LR at the onset; "
# Without any training loss, a grad norm non-finite on this many logged values in a row up to the
# end says the same thing (a single inf is a mixed-precision step the scaler skips).
GRAD_NORM_NAN_RUN = 3


class NanOnset(Check):
    """Training loss became NaN or infinite.

    **Symptom**: the logged training loss (or one of its components: `box_loss`, a generator or
    discriminator loss, a per-head loss) turns into `nan` or `inf` at some step; with a loop that
    does not stop, everything after it (weights, later checkpoints) is garbage. A run that logs no
    loss but whose gradient norm is non-finite on every line from some step to the end (Megatron's
    `grad norm: nan`) is reported the same way.

    **Bad run**: loss 0.41, 0.39, 3.7e+08, nan, nan, ... from step 3010 on, after the LR ramped up
    (or fp16 overflowed) and nothing stopped the loop.

    **Healthy run**: every logged training loss is finite.

    **Fix**: restart from the last checkpoint saved before the onset with a lower peak LR or a
    longer warmup, clip gradients (`torch.nn.utils.clip_grad_norm_`), prefer bf16 or a GradScaler
    over raw fp16, and make the loop stop on the first non-finite loss
    (`if not torch.isfinite(loss): raise FloatingPointError(step)`) so it cannot overwrite good
    checkpoints.
    """

    code = "nan_onset"
    severity = "error"
    needs = ("training loss series",)

    def run(self, run: Run) -> list[Finding]:
        losses = all_training_losses(run)
        if losses.empty:
            return self._grad_norm_tail(run, losses)
        values = losses["value"].to_numpy()
        nonfinite = ~np.isfinite(values)
        if not nonfinite.any():
            return self._grad_norm_tail(run, losses) if len(run.series(aliases.GRAD_NORM)) else []
        ordered = losses.assign(_nonfinite=nonfinite).sort_values(["segment", "step"], kind="stable")
        bad = ordered[ordered["_nonfinite"]]
        bad = bad[bad["segment"] == bad["segment"].iloc[0]]  # the first process (or fit) that broke
        # Sources can count in different units (timm's per-epoch summary.csv next to its per-step
        # `Train:` lines): the onset comes from the densest source of that segment that has one.
        counts = ordered[ordered["segment"] == bad["segment"].iloc[0]]["source"].astype(str).value_counts()
        densest = max(bad["source"].astype(str).unique(), key=lambda source: counts[source])
        onset = bad[bad["source"].astype(str) == densest].iloc[0]
        same_series = ordered[(ordered["source"] == onset["source"]) & (ordered["tag"] == onset["tag"])]
        before = same_series[(same_series["step"] < onset["step"]) & ~same_series["_nonfinite"]]
        after = same_series[same_series["step"] > onset["step"]]
        return [self._finding(run, onset, before, after)]

    def _grad_norm_tail(self, run: Run, losses: pd.DataFrame) -> list[Finding]:
        """The grad norm non-finite on every line from some step to the end, with no training loss
        or one that stays finite without improving (HF's `logging_nan_inf_filter` logs a stale or
        zero average instead of the NaN): the gradients, and so the weights, are gone."""
        grad = run.series(aliases.GRAD_NORM, group=0)
        if grad.empty:
            raise NotApplicable("needs a training loss series (or a grad norm when no loss is logged); none found")
        grad = busiest_source(grad).sort_values(["segment", "step"], kind="stable").reset_index(drop=True)
        finite = np.isfinite(grad["value"].to_numpy())
        tail = len(grad) - (int(np.flatnonzero(finite)[-1]) + 1 if finite.any() else 0)
        if tail < GRAD_NORM_NAN_RUN:
            return []
        onset, last = grad.iloc[len(grad) - tail], grad.iloc[-1]
        loss_after = losses[losses["step"] >= int(onset["step"])].sort_values("step", kind="stable")
        if _still_improving(loss_after["value"].to_numpy()):
            return []  # the loss keeps learning: the norm is mis-reported, not the training broken
        whole = "every one" if tail == len(grad) else f"the last {tail}"
        loss_words = ("No training loss is logged" if losses.empty else
                      f"The logged training loss stays finite without improving ({_loss_range(loss_after)} from "
                      "the onset on: a filtered or stale average such as HF's logging_nan_inf_filter logs)")
        message = (f"{loss_words}, and {onset['tag']} was {fmt_value(float(onset['value']))} on {whole} "
                   f"of its {len(grad)} logged values, from step {fmt_step(int(onset['step']))} to "
                   f"{fmt_step(int(last['step']))}: the gradients are not finite, so every update is NaN or skipped.")
        evidence = [row_evidence(run, onset, expected="finite", note="first non-finite grad norm, none finite after"),
                    row_evidence(run, last, expected="finite", note="last logged grad norm")]
        if finite.any():
            evidence.insert(1, row_evidence(run, grad.iloc[len(grad) - tail - 1], note="last finite grad norm"))
        evidence += _lr_at(run, int(onset["step"]))
        scale = busiest_source(run.series(aliases.LOSS_SCALE, group=0))
        scale = scale[scale["step"] <= int(onset["step"])]
        if len(scale):
            row = scale.loc[scale["step"].idxmax()]
            evidence.append(row_evidence(run, row, note="loss scale at the onset (1 is a dynamic scaler's floor, "
                                                         "or bf16/fp32 without scaling)"))
        warning_sign = first_warning_sign(run, int(onset["step"]))
        if warning_sign is not None:
            evidence.insert(1, warning_sign[1])
            message += f" First warning sign: {warning_sign[0]}."
        fix = self.documentation()["Fix"] + (" Log the loss on the rank that prints the iteration line "
                                             "(with pipeline parallelism only the last stage has it).")
        return [self.finding(step=int(onset["step"]), end_step=int(last["step"]), message=message, fix=fix,
                             evidence=evidence, confidence=0.7, severity="error")]

    def _finding(self, run: Run, onset: pd.Series, before: pd.DataFrame, after: pd.DataFrame) -> Finding:
        onset_step = int(onset["step"])
        after_nonfinite = int((~np.isfinite(after["value"].to_numpy())).sum())
        recovered = len(after) > 0 and math.isfinite(float(after["value"].iloc[-1]))
        end_step = int(after["step"].iloc[-1]) if len(after) else onset_step
        if recovered:
            first_finite = after[np.isfinite(after["value"].to_numpy())].iloc[0]
            end_step = int(first_finite["step"])
            outcome = (f"it came back to a finite value ({fmt_value(float(first_finite['value']))}) at step "
                       f"{fmt_step(end_step)}; {after_nonfinite} of the {len(after)} later values are non-finite")
        else:
            outcome = (f"it never recovered: {after_nonfinite} of the {len(after)} later values are non-finite"
                       if len(after) else "it was the last value logged")
        lr_evidence = _lr_at(run, onset_step)
        evidence = [row_evidence(run, onset, expected="finite", note="first non-finite training loss")]
        evidence += [row_evidence(run, row, note="last finite values before the onset")
                     for _, row in before.tail(FINITE_VALUES_SHOWN).iterrows()]
        evidence += lr_evidence
        warning_sign = first_warning_sign(run, onset_step)
        if warning_sign is not None:
            evidence.insert(1, warning_sign[1])
        evidence += _checkpoints_around(run, onset_step)
        message = (f"{onset['tag']} became {fmt_value(float(onset['value']))} at step {fmt_step(onset_step)} "
                   f"({onset['source']}); {outcome}.")
        if len(before):
            message += (" Last finite values: "
                        + ", ".join(fmt_value(float(v)) for v in before["value"].tail(FINITE_VALUES_SHOWN)) + ".")
        if lr_evidence:
            message += f" LR at the onset: {fmt_lr(lr_evidence[0].observed)} ({lr_evidence[0].note.removeprefix(LR_NOTE)})."
        if warning_sign is not None:
            message += f" First warning sign: {warning_sign[0]}."
        restart = _last_healthy_checkpoint(run, onset_step)
        fix = self.documentation()["Fix"]
        if restart is not None:
            fix = fix.replace("Restart from the last checkpoint saved before the onset",
                              f"Restart from {restart.path} (step {fmt_step(restart.global_step)}, the last checkpoint "
                              "before the onset with finite weights)")
        severity = "warning" if recovered else "error"
        return self.finding(step=onset_step, end_step=end_step, message=message, fix=fix, evidence=evidence,
                            confidence=0.99, severity=severity)


def _still_improving(values: np.ndarray) -> bool:
    """Whether a loss fell by a fifth or more from the first to the last third of these values."""
    values = values[np.isfinite(values)]
    if len(values) < 3:
        return False
    third = max(1, len(values) // 3)
    start, end = float(np.median(values[:third])), float(np.median(values[-third:]))
    return start > 0 and end < 0.8 * start


def _loss_range(loss: pd.DataFrame) -> str:
    values = loss["value"].to_numpy()
    values = values[np.isfinite(values)]
    return "no value" if not len(values) else f"{fmt_value(float(values.min()))} to {fmt_value(float(values.max()))}"


def _lr_at(run: Run, step: int) -> list[Evidence]:
    """The LR when the loss broke, next to its peak so far: a ramp that went too high shows here."""
    lr = run.series(aliases.LR, group=0)
    if lr.empty:
        return []
    lr = busiest_source(lr)  # the densest log has the LR of the onset step itself
    lr = lr[(lr["step"] <= step) & np.isfinite(lr["value"].to_numpy())]
    if lr.empty:
        return []
    lr = lr.sort_values(["segment", "step"], kind="stable")
    at_onset = lr.iloc[-1]
    peak = lr.loc[lr["value"].idxmax()]
    return [row_evidence(run, at_onset, note=LR_NOTE + _peak_text(peak))]


def _peak_text(peak: pd.Series) -> str:
    return f"peak so far {fmt_lr(float(peak['value']))} at step {fmt_step(int(peak['step']))}"


def _checkpoints_around(run: Run, step: int) -> list[Evidence]:
    """The last checkpoint with finite weights before the onset and any poisoned one after it."""
    evidence = []
    healthy = _last_healthy_checkpoint(run, step)
    if healthy is not None:
        evidence.append(Evidence(healthy.path, "ckpt key global_step", healthy.global_step,
                                 note="last checkpoint before the onset, weights all finite"))
    for checkpoint in run.checkpoints:
        if checkpoint.nonfinite_weight_values:
            evidence.append(Evidence(checkpoint.path, "model weights", f"{checkpoint.nonfinite_weight_values:,} non-finite "
                                     f"of {checkpoint.weight_values:,} values", expected="0 non-finite",
                                     note=f"checkpoint at step {fmt_step(checkpoint.global_step)}"))
            break
    return evidence


def _last_healthy_checkpoint(run: Run, step: int):
    candidates = [checkpoint for checkpoint in run.checkpoints
                  if checkpoint.global_step is not None and checkpoint.global_step < step
                  and checkpoint.weight_values and not checkpoint.nonfinite_weight_values]
    return candidates[-1] if candidates else None
