"""HuggingFace Trainer: the Python dict `Trainer.log` prints every `logging_steps`.

The dict has no step; a tqdm counter glued in front of it (`1/13000 [`) is taken as the step,
otherwise the reader uses the last progress counter or the line's position. The end-of-training
summary (`train_runtime`, `train_loss` = mean over the run) is recognised but not turned into
series, so the run's mean loss is never mistaken for a loss at the last step.

Real lines:
    {'loss': 0.6931, 'learning_rate': 2e-05, 'epoch': 0.05}
    {'loss': 0.3290, 'reward': -2.0304, 'learning_rate': 5e-05}
      0%| | 1/13000 [00:10<36:34:36, 10.13s/it]{'loss': nan, 'reward': 5.7646, 'learning_rate': 5e-05}
    {'loss': 2.0491, 'learning_rate': 0.0001961913563176343, 'epoch': 0.28}
    {'eval_loss': 0.4200145900249481, 'eval_wer': 0.7449365679946583, 'eval_runtime': 1710.8673, 'epoch': 38.17}
"""

from __future__ import annotations

import re

from forensics.ingest.logs.formats.base import NUMBER, LineFormat, Parsed, to_float

_DICT = re.compile(r"\{'[^{}]*\}")
_PAIR = re.compile(rf"'([^']+)':\s*(?:np\.float\d*\()?'?({NUMBER})'?\)?(?=\s*[,}}])")
_COUNTER = re.compile(r"(\d+)/(\d+)\s*\[")
_SUMMARY_KEYS = ("train_runtime", "total_flos")


def parse(line: str) -> Parsed | None:
    """The dict's numeric entries; `epoch` goes to the epoch, not to a series."""
    match = _DICT.search(line)
    if not match:
        return None
    values = {key: to_float(value) for key, value in _PAIR.findall(match.group(0))}
    if not values:
        return None
    epoch = values.pop("epoch", None)
    step = values.pop("step", None)
    if any(key in values for key in _SUMMARY_KEYS):
        values = {}
    counter = _COUNTER.search(line, 0, match.start())
    progress = (int(counter.group(1)), int(counter.group(2))) if counter else None
    return Parsed(values, step=int(step) if step is not None and step == step else None, epoch=epoch,
                  progress=progress)


FORMAT = LineFormat("hf_trainer_dict", ("{'",), parse)
