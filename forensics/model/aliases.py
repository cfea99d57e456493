"""Map the many names a metric is logged under to one canonical metric name.

Training code logs the same quantity as `lr`, `learning_rate`, `lr-AdamW`, `Learning Rate`,
`train/lr`, `x/lr0`, `lr/group1`... Checks ask for `lr`; this module is the only place that
knows the spellings. Param groups stay apart through `MetricName.group`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Canonical names the checks ask for.
LR = "lr"
LOSS = "loss"
VAL_LOSS = "val_loss"
GRAD_NORM = "grad_norm"
LOSS_SCALE = "loss_scale"
MOMENTUM = "momentum"

_VALIDATION_WORDS = {"val", "valid", "validation", "eval", "evaluation", "test", "dev"}
_TRAIN_WORDS = {"train", "training", "trn"}

# Words that, once a tag is split into words, name the quantity.
_LR_WORDS = ("lr", "learning_rate", "learningrate", "learning rate")
_GRAD_NORM_WORDS = ("grad_norm", "gradient_norm", "grad norm", "gradnorm", "grad_norm_total", "total_norm", "gnorm")
_LOSS_SCALE_WORDS = ("loss_scale", "loss scale", "lossscale", "grad_scale", "scaler_scale", "scale")
_LOSS_WORDS = ("loss", "lm loss", "lm_loss", "epoch_loss", "train_loss", "total_loss", "loss_total")

_GROUP_SUFFIX = re.compile(r"(?:^|[/_\-\s.])(?:pg|group|param_group|g)?(\d+)$")


@dataclass(frozen=True)
class MetricName:
    """A canonical metric name plus the param-group index it belongs to (0 when not stated)."""

    name: str
    group: int = 0


def canonical_metric(tag: str, context: str = "") -> MetricName:
    """Return the canonical metric for a logged tag.

    `context` is where the tag was found (e.g. the event file's folder `logs/validation`): Keras
    writes `epoch_loss` for both training and validation and tells them apart only by folder.
    Tags that are not one of the known quantities keep their own (normalised) name.
    """
    normalized = tag.strip().lower()
    # A log read from several interleaved ranks tags its series `rank1/loss`: the rank is not part of the name.
    normalized = re.sub(r"^rank\d+/", "", normalized)
    words = re.split(r"[/\s:|]+", normalized)
    context_words = set(re.split(r"[/\\\s]+", context.lower()))
    is_validation = bool(_VALIDATION_WORDS & (set(words[:-1]) | context_words)) or _has_val_prefix(words[-1])
    last = words[-1]

    lr_group = _lr_group(normalized, words)
    if lr_group is not None:
        return MetricName(LR, lr_group)
    if "momentum" in last or last in ("beta1", "betas_0"):
        return MetricName(MOMENTUM, _trailing_group(last))
    # Lightning's `grad_norm(module, norm_type=2)` logs `grad_2.0_norm_total` (and per-parameter
    # `grad_2.0_norm/<name>`, which stay apart).
    if last in _GRAD_NORM_WORDS or normalized.endswith("grad norm") or re.fullmatch(r"grad_[\d.]+_norm_total", last):
        return MetricName(GRAD_NORM)
    if last in _LOSS_SCALE_WORDS and last != "scale" or normalized.endswith("loss scale"):
        return MetricName(LOSS_SCALE)
    if last == "scale" and any(w in ("scaler", "amp", "grad_scaler") for w in words[:-1]):
        return MetricName(LOSS_SCALE)
    # `Loss/train`, `train/loss`, `val_loss`: a loss word once the split words are set aside.
    quantity_words = [w for w in words if w not in _TRAIN_WORDS | _VALIDATION_WORDS]
    is_validation = is_validation or bool(_VALIDATION_WORDS & set(words))
    if len(quantity_words) == 1 and _strip_split_prefix(quantity_words[0]) in _LOSS_WORDS or normalized.endswith("lm loss"):
        return MetricName(VAL_LOSS if is_validation else LOSS)
    if context_words & _VALIDATION_WORDS and not set(words) & _VALIDATION_WORDS and not _has_val_prefix(words[0]):
        return MetricName(f"val/{normalized}")  # Keras: validation/epoch_accuracy
    return MetricName(normalized)


_NAME_WORDS = re.compile(r"[/\\\s:|_\-.@]+")
_ADVERSARIAL_WORDS = {"gen", "generator", "disc", "discriminator", "critic", "adv", "adversarial", "g", "d"}
_NOT_A_LOSS_WORDS = {"scale", "scaler", "weight", "weights", "coef", "coefficient", "best", "min", "lowest", "num",
                     "count"}


def metric_words(name: str) -> list[str]:
    """A canonical metric name split into lower-case words (`train/box_loss` -> train, box, loss)."""
    return [word for word in _NAME_WORDS.split(name.lower()) if word]


def is_validation_metric(name: str) -> bool:
    """Whether a canonical metric name is measured on held-out data (`val/...`, `eval_...`, `test_...`)."""
    words = metric_words(name)
    return bool(words) and (words[0] in _VALIDATION_WORDS or bool(set(words) & (_VALIDATION_WORDS - {"dev"})))


def is_training_loss(name: str) -> bool:
    """Whether a canonical metric is a training loss: the canonical `loss` or a component of it.

    Components keep their own names (`train/box_loss`, `loss_cls`, `train_gen_loss`, `d_loss`,
    `loss/ce`) and count as training losses for NaN and divergence; validation losses, loss
    scales and loss weights do not, nor does a `best_loss` that only records the minimum so far.
    """
    if name == LOSS:
        return True
    words = metric_words(name)
    if not any(word in ("loss", "losses") for word in words) or name in (VAL_LOSS, LOSS_SCALE):
        return False
    return not is_validation_metric(name) and not _NOT_A_LOSS_WORDS & set(words)


# Values a logger writes once for its own bookkeeping, at a step that says nothing about training:
# Lightning's TensorBoardLogger writes `hp_metric` -1 at step 0 in every new version folder.
_BOOKKEEPING_TAGS = {"hp_metric"}


def is_bookkeeping(name: str) -> bool:
    """Whether a series is a logger's placeholder rather than a measurement of training."""
    return name.rsplit("/", 1)[-1] in _BOOKKEEPING_TAGS


def is_adversarial_loss(name: str) -> bool:
    """A GAN's generator/discriminator loss: it measures a two-player balance, not progress, so a
    flat one is an equilibrium, not a plateau."""
    words = set(metric_words(name))
    return bool(words & _ADVERSARIAL_WORDS) and is_training_loss(name)


def _lr_group(normalized: str, words: list[str]) -> int | None:
    """Param-group index if the tag names a learning rate, else None."""
    if normalized in _LR_WORDS or normalized.endswith("learning rate") or normalized.endswith("learning_rate"):
        return 0
    for word in words:
        # lr, lr0, lr_1, lr-AdamW, lr-AdamW/pg2, learning_rate_2, lr/group0
        match = re.fullmatch(r"(?:lr|learning_rate|learningrate)(?:[-_]?(\d+)|-[a-z0-9_]+)?", word)
        if match:
            if match.group(1) is not None:
                return int(match.group(1))
            return _group_after(words, word)
    return None


def _group_after(words: list[str], lr_word: str) -> int:
    """Group index written as a following word: `lr/group1`, `lr-Adam/pg2`."""
    following = words[words.index(lr_word) + 1 :]
    for word in following:
        match = re.fullmatch(r"(?:pg|group|param_group|g)?(\d+)", word)
        if match:
            return int(match.group(1))
    return 0


def _trailing_group(word: str) -> int:
    match = _GROUP_SUFFIX.search(word)
    return int(match.group(1)) if match else 0


def _has_val_prefix(word: str) -> bool:
    return any(word.startswith(prefix + "_") for prefix in _VALIDATION_WORDS)


def _strip_split_prefix(word: str) -> str:
    """`train_loss` -> `loss`, `val_loss` -> `loss`, `eval_loss` -> `loss`."""
    for prefix in _TRAIN_WORDS | _VALIDATION_WORDS:
        if word.startswith(prefix + "_"):
            return word[len(prefix) + 1 :]
    return word
