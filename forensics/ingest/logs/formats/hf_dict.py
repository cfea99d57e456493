"""HuggingFace Trainer: the Python dict `Trainer.log` prints every `logging_steps`, and its start-up banner.

The dict has no step; a tqdm counter glued in front of it (`1/13000 [`) is taken as the step,
otherwise the reader turns the dict's fractional `epoch` into a step with the banner's counters
(`Total optimization steps = N` over `Num Epochs = E`, see `steps.StepAxis`), or uses the last
progress counter or the line's position. The end-of-training summary (`train_runtime`,
`train_loss` = mean over the run) is recognised but not turned into series, so the run's mean loss
is never mistaken for a loss at the last step. Banner lines give no values, only `facts` (for the
step axis) and a `stated_fact` event each (for `forensics.model.stated`).

Real lines:
    {'loss': 0.6931, 'learning_rate': 2e-05, 'epoch': 0.05}
    {'loss': 0.3290, 'reward': -2.0304, 'learning_rate': 5e-05}
      0%| | 1/13000 [00:10<36:34:36, 10.13s/it]{'loss': nan, 'reward': 5.7646, 'learning_rate': 5e-05}
    {'loss': 2.0491, 'learning_rate': 0.0001961913563176343, 'epoch': 0.28}
    {'eval_loss': 0.4200145900249481, 'eval_wer': 0.7449365679946583, 'eval_runtime': 1710.8673, 'epoch': 38.17}
      Num examples = 60,000
      Num Epochs = 3
      Instantaneous batch size per device = 8
      Total train batch size (w. parallel, distributed & accumulation) = 64
      Gradient Accumulation steps = 8
      Total optimization steps = 2,811
"""

from __future__ import annotations

import re

from forensics.ingest.logs.formats.base import NUMBER, LineFormat, Parsed, to_float

STATED_FACT_EVENT = "stated_fact"

_DICT = re.compile(r"\{'[^{}]*\}")
_PAIR = re.compile(rf"'([^']+)':\s*(?:np\.float\d*\()?'?({NUMBER})'?\)?(?=\s*[,}}])")
_COUNTER = re.compile(r"(\d+)/(\d+)\s*\[")
_SUMMARY_KEYS = ("train_runtime", "total_flos")
# Trainer._inner_training_loop's banner (numbers printed with `:,`), as facts for the step axis.
_BANNER = {
    "  Num examples = ": "num_examples",
    "  Num Epochs = ": "num_epochs",
    "  Num update steps per epoch = ": "num_update_steps_per_epoch",   # transformers 5.x
    "  Instantaneous batch size per device = ": "per_device_batch_size",
    "  Total train batch size (w. parallel, distributed & accumulation) = ": "total_batch_size",
    "  Gradient Accumulation steps = ": "gradient_accumulation_steps",
    "  Total optimization steps = ": "total_optimization_steps",
}
_BANNER_VALUE = re.compile(r"\s*(\d[\d,]*)\s*$")


def parse(line: str) -> Parsed | None:
    """The dict's numeric entries; `epoch` goes to the epoch, not to a series. A banner line's counter."""
    match = _DICT.search(line)
    if not match:
        return _banner(line)
    values = {key: to_float(value) for key, value in _PAIR.findall(match.group(0))}
    if not values:
        return None
    epoch = values.pop("epoch", None)
    step = values.pop("step", None)
    if any(key in values for key in _SUMMARY_KEYS):
        values = {}
    # The bar's state when the dict was printed is its last redraw before the dict: a resumed
    # Trainer draws `0/N` and then its restored position on the same line.
    counter = None
    for counter in _COUNTER.finditer(line, 0, match.start()):
        pass
    progress = (int(counter.group(1)), int(counter.group(2))) if counter else None
    return Parsed(values, step=int(step) if step is not None and step == step else None, epoch=epoch,
                  progress=progress)


def _banner(line: str) -> Parsed | None:
    for label, fact in _BANNER.items():
        start = line.find(label)
        if start >= 0:
            value = _BANNER_VALUE.match(line, start + len(label))
            if not value:
                return None
            number = int(value.group(1).replace(",", ""))
            # The fact goes to the step axis and, as a `stated_fact` event with its line, to the run's
            # stated facts (forensics.model.stated): the banner states the run's horizon and accumulation.
            return Parsed(facts={fact: number}, events=[(STATED_FACT_EVENT, {"fact": fact, "value": number})])
    return None


FORMAT = LineFormat("hf_trainer_dict", ("{'", *_BANNER), parse)
