"""timm's train.py: `Train: EPOCH [ BATCH/BATCHES (PCT%)]  Loss: VAL (AVG)  Time: ...  LR: ...`.

timm prints no optimizer step, so the step is rebuilt from its counters as
`epoch * batches_per_epoch + batch_index` (both 0-based). `Test:` lines give the running
validation loss and accuracy; they state no step and take the last training step seen.

Real lines:
    Train: 0 [   0/33 (  0%)]  Loss: 8.863 (8.86)  Time: 1.663s,    9.62/s  (1.663s,    9.62/s)  LR: 5.000e-04  Data: 0.460 (0.460)
    Train: 0 [  50/10009 (  0%)]  Loss:  6.927876 (6.9180)  Time: 1.462s,   87.53/s  (1.896s,   67.51/s)  LR: 1.000e-06  Data: 0.026 (0.199)
    Train: 3 [ 100/391 ( 26%)]  Loss: 0.6931 (0.7012)  Time: 0.190s, 1347.37/s  (0.197s, 1299.49/s)  LR: 1.000e-03  Data: 0.011 (0.017)
    Test: [   0/29]  Time: 0.560 (0.560)  Loss:  0.6912 (0.6912)  Acc@1: 81.2500 (81.2500)  Acc@5: 96.8750 (96.8750)
"""

from __future__ import annotations

import re

from forensics.ingest.logs.formats.base import NUMBER, LineFormat, Parsed, to_float

_TRAIN = re.compile(r"\bTrain: (\d+) \[\s*(\d+)/(\d+) \(\s*\d+%\)\]")
_TEST = re.compile(r"\bTest: \[\s*(\d+)/(\d+)\]")
_LOSS = re.compile(rf"\bLoss:\s+({NUMBER})\s+\(\s*({NUMBER})\)")
_LR = re.compile(rf"\bLR:\s+({NUMBER})")
_RATE = re.compile(rf"\bTime: {NUMBER}s,\s+({NUMBER})/s")
_ACC = re.compile(rf"\b(Acc@\d+):\s+{NUMBER}\s+\(\s*({NUMBER})\)")


def parse(line: str) -> Parsed | None:
    """Loss (this batch), LR and samples/s of a Train line; running averages of a Test line."""
    train = _TRAIN.search(line)
    if train:
        epoch, batch, batches = (int(group) for group in train.groups())
        values = {}
        if loss := _LOSS.search(line):
            values["loss"] = to_float(loss.group(1))
        if lr := _LR.search(line):
            values["lr"] = to_float(lr.group(1))
        if rate := _RATE.search(line):
            values["samples_per_second"] = to_float(rate.group(1))
        return Parsed(values, step=epoch * batches + batch, epoch=epoch,
                      step_basis=f"epoch*{batches}+batch from timm progress counters")
    test = _TEST.search(line)
    if test:
        values = {}
        if loss := _LOSS.search(line):
            values["val/loss"] = to_float(loss.group(2))
        for name, average in _ACC.findall(line):
            values[f"val/{name.lower()}"] = to_float(average)
        return Parsed(values)
    return None


FORMAT = LineFormat("timm", ("Train:", "Test:"), parse)
