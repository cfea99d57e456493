"""val_stuck: a validation metric frozen at a value a learning model would leave, while training improves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.progress.metric_bounds import (
    CHANCE_RELATIVE,
    QualityMetric,
    at_best,
    at_chance,
    at_worst,
    chance_level,
    metric_scale,
    quality_metric,
)
from forensics.checks.series import busiest_source, training_loss_parts
from forensics.formatting import fmt_step, fmt_value
from forensics.model import aliases
from forensics.model.run import Run

MIN_EVALUATIONS = 5
FROZEN = 0.005          # max - min of a 0..1 metric (x100 for percentages): it never moved
TRAINING_GAIN = 0.2     # a training loss fell by at least this share
# A validation loss whose max - min is below this share of its level comes from weights that never
# changed: a deterministic evaluation of a trained model moves by orders of magnitude more.
LOSS_FROZEN = 1e-3
LOW_ACCURACY = 0.5 * (1 + CHANCE_RELATIVE)  # at or below a balanced binary task's chance level


@dataclass(frozen=True)
class Training:
    """How much the training loss that improved most fell, and where that is seen."""

    gain: float
    tag: str
    first: pd.Series
    last: pd.Series


@dataclass(frozen=True)
class ValidationLoss:
    """What the validation loss did: "frozen", "never_finite" or "moved", in words, with evidence."""

    state: str
    description: str
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class Verdict:
    """Severity, the reason in words, and the evidence beyond the metric's own values."""

    severity: str
    reason: str
    confidence: float
    evidence: tuple[Evidence, ...] = ()


class ValStuck(Check):
    """Validation metric stuck at a chance-like value while the training loss improves.

    **Symptom**: a validation quality metric (accuracy, mAP, F1, WER, ...) shows the same value at
    every evaluation from the first one on, while a training loss falls by 20% or more, and the value
    is one a model that learnt nothing scores: the chance level for the stated number of classes, 0
    (or a 100% error rate), or the validation loss is frozen with it. The evaluated model is not the
    trained one, or evaluation is broken. A metric at its best possible value (100% accuracy, a
    saturated top-5) or one that improved and then settled is converged, not stuck. A flat metric with
    nothing to tell the two apart is only noted (info); a flat accuracy at or below 60% with no
    validation loss is a warning.

    **Bad run**: validation accuracy 0.10% at every epoch (chance for 1,000 classes) while training
    accuracy climbs to 42%: validation ran on an EMA copy whose weights were never updated, and its
    validation loss is the same 6.9078 every time.

    **Healthy run**: validation metrics move with training, even if they lag or get worse late
    (overfitting); accuracy at 1.0 on a separable task; top-5 at 100% while top-1 rises from 88 to
    92; accuracy settled at 93% while the training loss keeps falling.

    **Fix**: evaluate the model you train (`model.eval()` on the same module, or update the EMA copy
    every step and sync its buffers), and check the validation data, labels and metric code on a
    handful of batches by hand.
    """

    code = "val_stuck"
    severity = "error"
    needs = ("validation quality metric series", "training loss series")

    def run(self, run: Run) -> list[Finding]:
        metrics = [metric for metric in map(quality_metric, run.metrics) if metric is not None]
        if not metrics:
            raise NotApplicable("needs a validation accuracy-like metric (val/accuracy, eval_acc, eval_wer, "
                                "metrics/mAP, ...); none found")
        training = _training(run)
        if training is None:
            raise NotApplicable("needs a training loss series to compare validation against")
        if training.gain < TRAINING_GAIN:
            raise NotApplicable(f"the training loss fell by {training.gain:.0%} only, so a flat validation metric "
                                "is no contradiction")
        series = {metric.name: _evaluations(run, metric.name) for metric in metrics}
        tested = [metric for metric in metrics if len(series[metric.name]) >= MIN_EVALUATIONS]
        if not tested:
            raise NotApplicable(f"no validation metric has {MIN_EVALUATIONS} finite evaluations")
        validation_loss = _validation_loss(run)
        findings = []
        for metric in tested:
            values = series[metric.name]
            siblings = [float(frame["value"].abs().max()) for name, frame in series.items()
                        if name != metric.name and len(frame) and frame["source"].iloc[0] == values["source"].iloc[0]]
            observed = values["value"].to_numpy()
            scale = metric_scale(observed, siblings)
            if float(observed.max() - observed.min()) > FROZEN * scale:
                continue  # it moved: learning, or improved and then settled
            level = float(np.median(observed))
            if at_best(metric, level, scale, FROZEN):
                continue  # at its maximum: converged, it cannot move any more
            verdict = self._verdict(run, metric, level, scale, ambiguous=scale == 1.0 and observed.max() <= 1.0,
                                    validation_loss=validation_loss)
            if verdict is not None:
                findings.append(self._finding(run, values, training, verdict))
        return findings

    def _verdict(self, run: Run, metric: QualityMetric, level: float, scale: float, ambiguous: bool,
                 validation_loss: ValidationLoss | None) -> Verdict | None:
        """Why this flat value means a model that is not learning, and how sure that is."""
        signs: list[tuple[str, tuple[Evidence, ...]]] = []
        if at_worst(metric, level, scale, FROZEN):
            signs.append(("its worst possible value (" + ("nothing right" if metric.higher_is_better
                                                          else "every prediction wrong") + ")", ()))
        classes = run.stated.get("num_classes")
        count = int(classes.value) if classes is not None and _positive_int(classes.value) else None
        chance = chance_level(metric, count)
        reading = at_chance(level, chance, scale, ambiguous) if chance is not None else None
        if reading is not None:
            unit = "%" if reading == 100.0 else ""
            if metric.kind == "accuracy":
                signs.append((f"the chance level {fmt_value(chance * reading)}{unit} with {count} classes "
                              f"({classes.where()})",
                              (Evidence(classes.source, classes.locator, count, note="number of classes"),)))
            else:
                signs.append((f"the chance level {fmt_value(chance * reading)}{unit} of a ranking metric", ()))
        if validation_loss is not None:
            if validation_loss.state in ("frozen", "never_finite"):
                reason = f"the validation loss is {validation_loss.description} too" + (
                    f", and the value is {signs[0][0]}" if signs else "")
                return Verdict("error", reason, 0.9, validation_loss.evidence + sum((s[1] for s in signs), ()))
            if signs:  # the evaluated model changes, but scores no better than chance
                return Verdict("warning", f"the value is {signs[0][0]}, although the validation loss moves "
                               f"({validation_loss.description}): check the validation labels and the metric code",
                               0.6, validation_loss.evidence + signs[0][1])
            return None  # the evaluated model changes: the metric converged or is too coarse to move
        if signs:
            return Verdict("error", f"the value is {signs[0][0]}", 0.8, signs[0][1])
        if metric.kind == "accuracy" and level <= LOW_ACCURACY * scale:
            return Verdict("warning", f"the value is at or below {fmt_value(LOW_ACCURACY * scale)}, where the "
                           "chance level of any balanced task lies; no validation loss or number of classes is "
                           "logged to say more", 0.5)
        return Verdict("info", "nothing in the run tells a model that converged by its first evaluation from one "
                       "that is never updated: log the validation loss, or state num_classes in a config", 0.3)

    def _finding(self, run: Run, values: pd.DataFrame, training: Training, verdict: Verdict) -> Finding:
        first, last = values.iloc[0], values.iloc[-1]
        spread = float(values["value"].max() - values["value"].min())
        message = (f"{first['tag']} stayed at {fmt_value(float(first['value']))} (spread {fmt_value(spread)}) for all "
                   f"{len(values)} evaluations (steps {fmt_step(int(first['step']))} to {fmt_step(int(last['step']))}) "
                   f"while {training.tag} fell by {training.gain:.0%}; {verdict.reason}.")
        evidence = [row_evidence(run, first, note="first evaluation"),
                    row_evidence(run, last, expected=f"different from {fmt_value(float(first['value']))}",
                                 note="last evaluation"),
                    *verdict.evidence,
                    row_evidence(run, training.first, note="training loss at the start"),
                    row_evidence(run, training.last, note=f"training loss at the end ({training.gain:.0%} lower)")]
        return self.finding(step=int(first["step"]), end_step=int(last["step"]), message=message,
                            fix=self.documentation()["Fix"], evidence=evidence, confidence=verdict.confidence,
                            severity=verdict.severity)


def _evaluations(run: Run, name: str) -> pd.DataFrame:
    """The finite values of one metric from its busiest source, in step order."""
    values = busiest_source(run.series(name))
    values = values[np.isfinite(values["value"].to_numpy())]
    return values.sort_values(["segment", "step"], kind="stable").reset_index(drop=True)


def _training(run: Run) -> Training | None:
    """The training loss that fell most, from the median of its first to that of its last tenth.

    Adversarial losses (a GAN's generator and discriminator) measure a balance, not progress.
    """
    best = None
    for name, frame in training_loss_parts(run).items():
        if aliases.is_adversarial_loss(name):
            continue
        frame = _evaluations(run, name)
        if len(frame) < 10:
            continue
        tenth = max(1, len(frame) // 10)
        start, end = float(frame["value"].iloc[:tenth].median()), float(frame["value"].iloc[-tenth:].median())
        if not start:
            continue
        gain = (start - end) / abs(start)
        if best is None or gain > best.gain:
            best = Training(gain, str(frame["tag"].iloc[0]), frame.iloc[0], frame.iloc[-1])
    return best


def _validation_loss(run: Run) -> ValidationLoss | None:
    """How the validation loss behaved ("frozen at ...", "never finite", "moved from A to B"), or None.

    A frozen validation loss next to a frozen metric says the evaluated weights never changed.
    """
    names = [aliases.VAL_LOSS] + [name for name in run.metrics if name != aliases.VAL_LOSS
                                  and aliases.is_validation_metric(name) and "loss" in aliases.metric_words(name)]
    for name in names:
        frame = busiest_source(run.series(name))
        if len(frame) < MIN_EVALUATIONS:
            continue
        frame = frame.sort_values(["segment", "step"], kind="stable")
        finite = frame[np.isfinite(frame["value"].to_numpy())]
        first, last = frame.iloc[0], frame.iloc[-1]
        if finite.empty:
            return ValidationLoss("never_finite", f"never finite ({fmt_value(float(first['value']))} at all "
                                  f"{len(frame)} evaluations)",
                                  (row_evidence(run, first, expected="finite", note="validation loss, first evaluation"),
                                   row_evidence(run, last, expected="finite", note="validation loss, last evaluation")))
        if len(finite) < MIN_EVALUATIONS:
            continue
        low, high = float(finite["value"].min()), float(finite["value"].max())
        level = float(finite["value"].abs().median())
        first, last = finite.iloc[0], finite.iloc[-1]
        if high - low <= LOSS_FROZEN * level:
            return ValidationLoss("frozen", f"frozen at {fmt_value(float(first['value']))} (spread "
                                  f"{fmt_value(high - low)} over {len(finite)} evaluations)",
                                  (row_evidence(run, first, note="validation loss, first evaluation"),
                                   row_evidence(run, last, expected=f"different from {fmt_value(float(first['value']))}",
                                                note="validation loss, last evaluation")))
        return ValidationLoss("moved", f"{first['tag']} went from {fmt_value(float(first['value']))} to "
                              f"{fmt_value(float(last['value']))}",
                              (row_evidence(run, first, note="validation loss, first evaluation"),
                               row_evidence(run, last, note="validation loss, last evaluation")))
    return None


def _positive_int(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 2 and float(value).is_integer()
