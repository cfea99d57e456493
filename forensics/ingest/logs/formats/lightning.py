"""PyTorch Lightning's tqdm progress bar: `Epoch E:  PCT%|bar| N/TOTAL [time, rate, key=value, ...]`.

The bar counts batches within the epoch (in many Lightning versions it also counts the
validation batches), so the step is rebuilt as `epoch * TOTAL + N` and said to be approximate.
`v_num` (the logger version) is not a metric.

Real lines:
    Epoch 0:  22%|██▏       | 4/18 [00:17<01:02,  4.47s/it, loss=10.072, v_num=193315]
    Epoch 0:  92%|█████████████████████████████████▉   | 932/1016 [00:33<00:03, 27.70it/s, loss=0.223, v_num=77, acc=0.875]
    Epoch 3: 100%|██████████| 469/469 [00:12<00:00, 38.21it/s, v_num=0, train_loss_step=0.101, val_loss=0.0912, train_loss_epoch=0.134]
"""

from __future__ import annotations

import re

from forensics.ingest.logs.formats.base import LineFormat, Parsed
from forensics.ingest.logs.formats.tqdm_postfix import postfix_values

_BAR = re.compile(r"\bEpoch (\d+):\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([^\]]*)\]?")
_NOT_METRICS = ("v_num",)


def parse(line: str) -> Parsed | None:
    """The postfix metrics; the step from the epoch and the bar's counter."""
    match = _BAR.search(line)
    if not match:
        return None
    epoch, done, total = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if done == 0:
        # No batch of this epoch has run: the postfix repeats the last epoch's values, and the
        # epoch label may not have moved on yet (`Epoch 0: 0/16` is drawn before `Epoch 1: 0/16`).
        return Parsed({})
    values = {key: value for key, value in postfix_values(match.group(4)).items() if key not in _NOT_METRICS}
    return Parsed(values, step=epoch * total + done, epoch=epoch,
                  step_basis=f"epoch*{total}+batch from Lightning progress bars (the bar may count validation "
                             "batches too, so steps are approximate)")


FORMAT = LineFormat("lightning_progress", ("Epoch ",), parse)
