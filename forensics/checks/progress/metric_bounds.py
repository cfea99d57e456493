"""What a validation quality metric's values can mean: its direction, its scale, its bounds, chance.

An accuracy of 100% (or a top-5 accuracy that saturated while top-1 still climbs) cannot move any
more: flat there is converged. An accuracy at 1/num_classes, an mAP or F1 at 0, a WER at 100% are
what a model that learnt nothing scores: flat there is a model that is not being trained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from forensics.model import aliases

# Word patterns, matched against the words of a canonical metric name.
_ACCURACY = re.compile(r"^(acc|accuracy|top\d+|top|acc\d+|accuracy\d+|correct)$")
_AUC = re.compile(r"^(auc|auroc|roc)$")
_OVERLAP = re.compile(r"^(map|map\d*|ap|ap\d+|f1|fscore|precision|recall|iou|miou|dice|jaccard|bleu|rouge\w*|"
                      r"chrf|meteor|ndcg|mrr|hit|hits)$")
_ERROR_RATE = re.compile(r"^(wer|cer|ter|error|err|error_rate|top\d+_err)$")
_TOP_K = re.compile(r"(?:top[-_ ]?|@|acc(?:uracy)?)(\d+)")
_TRAIN_WORDS = {"train", "training", "trn"}
_NOT_QUALITY = {"loss", "best", "runtime", "time", "samples", "steps", "second", "per", "num", "tokens", "count"}


@dataclass(frozen=True)
class QualityMetric:
    """A validation metric that has a best and a worst value."""

    name: str
    kind: str                # "accuracy", "auc", "overlap" (mAP, F1, precision, BLEU, ...), "error_rate"
    higher_is_better: bool
    top_k: int = 1           # the k of a top-k accuracy

    def best(self, scale: float) -> float:
        return scale if self.higher_is_better else 0.0

    def worst(self, scale: float) -> float:
        return 0.0 if self.higher_is_better else scale


def quality_metric(name: str) -> QualityMetric | None:
    """The quality metric a canonical validation-side name is, or None (losses, timings, counters).

    Validation side means a validation word in the name (`val/acc@5`, `eval_wer`, Keras's
    `evaluation_accuracy_vs_iterations`) or YOLO's `metrics/` group (computed on the val set).
    """
    words = aliases.metric_words(name)
    validation = aliases.is_validation_metric(name) or (words[:1] == ["metrics"] and not _TRAIN_WORDS & set(words))
    if not validation or _NOT_QUALITY & set(words):
        return None
    for word in words:
        if _ERROR_RATE.match(word):
            return QualityMetric(name, "error_rate", higher_is_better=False)
    for word in words:
        if _ACCURACY.match(word):
            match = _TOP_K.search(name.lower())
            return QualityMetric(name, "accuracy", True, top_k=int(match.group(1)) if match else 1)
        if _AUC.match(word):
            return QualityMetric(name, "auc", True)
        if _OVERLAP.match(word):
            return QualityMetric(name, "overlap", True)
    return None


def metric_scale(values: np.ndarray, sibling_maxima: list[float]) -> float:
    """100 for a metric logged in percent, 1 for a fraction.

    A value above 1 says percent. A metric that never went above 1 is read as a fraction unless a
    sibling quality metric from the same file did (top-1 at 0.1% next to top-5 at 0.5% stays ambiguous:
    callers that compare with a chance level try both).
    """
    if float(np.max(np.abs(values))) > 1.0 or any(peak > 1.0 for peak in sibling_maxima):
        return 100.0
    return 1.0


def at_best(metric: QualityMetric, level: float, scale: float, tolerance: float) -> bool:
    """Whether the metric sits at its best possible value (converged: it cannot move any more)."""
    return abs(level - metric.best(scale)) <= tolerance * scale


def at_worst(metric: QualityMetric, level: float, scale: float, tolerance: float) -> bool:
    """Whether the metric sits at its worst possible value (nothing right, or every word wrong)."""
    if metric.higher_is_better:
        return abs(level) <= tolerance * scale
    return level >= (1 - tolerance) * scale


CHANCE_RELATIVE = 0.2  # within 20% of the chance level (class imbalance, a handful of lucky samples)


def chance_level(metric: QualityMetric, classes: int | None) -> float | None:
    """The fraction a model that learnt nothing scores: k/classes for (top-k) accuracy, 0.5 for AUC."""
    if metric.kind == "auc":
        return 0.5
    if metric.kind == "accuracy" and classes:
        return min(1.0, metric.top_k / classes)
    return None


def at_chance(level: float, chance: float, scale: float, ambiguous: bool) -> float | None:
    """The scale (1 or 100) under which `level` is within CHANCE_RELATIVE of `chance`, else None.

    With an ambiguous scale (every value at most 1) both readings are tried: 0.10 is 0.10% of a
    1,000-class top-1 in percent, or 10% of a 10-class top-1 as a fraction.
    """
    for candidate in ((1.0, 100.0) if ambiguous else (scale,)):
        if abs(level / candidate - chance) <= CHANCE_RELATIVE * chance:
            return candidate
    return None
