"""`key value`, `key=value` and `key: value` lines, with counters such as `step 120/600` or `epoch 3`.

This is the catch-all for hand-written loops (our own sample runs print
`epoch 0 step 10/600 loss 0.6931 lr 4.737e-04 grad_norm 0.26`) and for fairseq's simple format.
To keep configuration dumps (`Namespace(lr=0.1, ...)`, `optimizer=AdamW(lr=0.01)`) from turning
into metric values, text inside parentheses is ignored, lines that name arguments or configs are
skipped, and a line must carry at least one metric-like key (loss, lr, accuracy, norm, ...).
The step is the value of `step`, `global_step`, `iter`, `iteration`, `num_updates` or `update`.

Real lines:
    epoch 0 step 10/600 loss 0.6931 lr 4.737e-04 grad_norm 0.26
    epoch 0 validation loss 0.6872 accuracy 0.5078
    | epoch 001:    450 / 1891 loss=11.521, nll_loss=10.881, ppl=1886.05, wps=52922, ups=0.5, wpb=104928, bsz=5325, num_updates=445, lr=8.90889e-05, gnorm=1.543, clip=0%, oom=0, loss_scale=2.000, wall=882, train_wall=756
    2020-07-17 04:08:14 | INFO | train_inner | epoch 001:    100 / 2952087 loss=16.348, ppl=83437.5, wps=8640.2, ups=4.66, wpb=1854, bsz=2, num_updates=100, lr=1e-06, gnorm=4.215, loss_scale=128, train_wall=22, wall=120
    step=1200 loss=2.0312 lr=2.9e-04 grad_norm=0.87
    Epoch 10 loss 12.3880 | train 2.1s | Acc 9.32% | infer 4.4s
"""

from __future__ import annotations

import re

from forensics.ingest.logs.formats.base import NUMBER, LineFormat, Parsed, to_float, to_step

_PARENTHESES = re.compile(r"\([^()]*\)")
_QUALIFIER = r"(?:train|training|val|valid|validation|eval|test|lm|grad|learning|loss|global)"
_NOT_A_NAME = r"(?!(?:is|are|was|were|of|at|in|for|to|on|became|becomes|from)\b)"
PAIR = re.compile(rf"(?<![\w./-])((?:{_QUALIFIER}[ _]{_NOT_A_NAME})?[A-Za-z_][\w./@-]*)\s*(?:[=:]\s*|\s+)({NUMBER})(%?)"
                   rf"(?:\s*/\s*(\d+))?(?![\w.])", re.IGNORECASE)
STEP_KEYS = {"step", "global_step", "iter", "iteration", "num_updates", "update", "it", "global step"}
COUNTER_KEYS = STEP_KEYS | {"epoch", "batch", "seed"}
_METRIC_WORD = re.compile(r"loss|lr|learning|acc|norm|scale|ppl|perplex|f1|map|wer|bleu|reward|score|grad",
                          re.IGNORECASE)
_CONFIG_WORDS = re.compile(r"\b(?:namespace|args|arguments|config|hparams|hyperparam\w*|settings?|options?)\b",
                           re.IGNORECASE)


# Lowercase substrings one of which a metric line must contain: a cheap test before any regex.
_METRIC_HINTS = ("loss", "lr", "learning", "acc", "norm", "scale", "ppl", "perplex", "f1", "map", "wer", "bleu",
                 "reward", "score", "grad")


def parse(line: str) -> Parsed | None:
    """Counters become step/epoch; other numeric pairs become values when a metric-like key is among them."""
    lowered = line.lower()
    for hint in _METRIC_HINTS:
        if hint in lowered:
            break
    else:
        return None
    if _CONFIG_WORDS.search(line):
        return None
    text = _PARENTHESES.sub(" ", line) if "(" in line else line
    values: dict[str, float] = {}
    step = epoch = None
    for key, number, _percent, _total in PAIR.findall(text):
        lowered = key.lower()
        if lowered in STEP_KEYS and step is None:
            step = to_step(to_float(number)) if number.replace(".", "", 1).isdigit() else None
        elif lowered == "epoch" and epoch is None:
            epoch = to_float(number)
        elif lowered not in COUNTER_KEYS:
            values[key] = to_float(number)
    if not any(_METRIC_WORD.search(key) for key in values):
        return None
    return Parsed(values, step=step, epoch=epoch)


FORMAT = LineFormat("key_value", (), parse)
