r"""mmdetection / mmcv text logs (`Epoch [E][I/N]  lr: ...`) and mmengine (`Epoch(train) [E][I/N]`, `Iter(train) [I/N]`).

Epochs and iterations are 1-based in these logs, so an epoch-based line's step is
`(epoch-1) * iters_per_epoch + iter`; an iteration-based line's step is the iteration. `eta`,
`time`, `data_time` and `memory` are kept out of the series except `time` (seconds per iteration).

Real lines:
    2022-08-29 23:03:22,363 - mmdet - INFO - Epoch [20][450/643]\tlr: 9.833e-03, eta: 13 days, 10:21:10, time: 7.100, data_time: 0.420, memory: 8932, loss_cls: 0.4362, loss_vehicle: 0.2186, loss_person: 0.3475, loss_sign: 0.2305, loss_light: 0.2657, loss_bbox: 0.9103, loss_obj: 0.3098, loss: 2.7187
    2024-04-12 09:11:31,106 - mmrotate - INFO - Epoch [1][1250/3912]        lr: 5.000e-03, eta: 3:55:18, time: 0.302, data_time: 0.005, memory: 3400, loss_cls: 0.9365, loss_bbox: 1.6119, loss: 2.5484, grad_norm: 3.4181
    04/21 21:03:53 - mmengine - INFO - Epoch(train) [1][10/90]  lr: 1.000e-02  eta: 0:00:25  time: 0.010  data_time: 0.000  memory: 0  loss: 11.4723
    03/26 00:14:52 - mmengine - INFO - Epoch(train) [100][1100/4309]  base_lr: 2.0000e-03 lr: 5.9600e-05  eta: 11:49:00  time: 0.9560  data_time: 0.0067  memory: 8324  grad_norm: 1008.2837  loss: 1114.3051  loss_cls: 404.7534  loss_bbox: 330.3293  loss_dfl: 379.2225
"""

from __future__ import annotations

import re

from forensics.ingest.logs.formats.base import LineFormat, Parsed, pairs_with_colon

_EPOCH = re.compile(r"\bEpoch(?:\((train|val|test)\))?\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]")
_ITER = re.compile(r"\bIter\((train|val|test)\)\s*\[\s*(\d+)/(\d+)\]")
_NOT_SERIES = frozenset({"eta", "data_time", "memory"})


def parse(line: str) -> Parsed | None:
    """The `key: value` fields after the counters; validation fields are tagged `val/...`."""
    epoch_match = _EPOCH.search(line)
    if epoch_match:
        mode, epoch, index, per_epoch = epoch_match.groups()
        epoch, index, per_epoch = int(epoch), int(index), int(per_epoch)
        values = _values(line[epoch_match.end():], mode)
        if mode in ("val", "test"):
            return Parsed(values, epoch=epoch)
        return Parsed(values, step=(epoch - 1) * per_epoch + index, epoch=epoch,
                      step_basis=f"(epoch-1)*{per_epoch}+iter from mmdet counters")
    iter_match = _ITER.search(line)
    if iter_match:
        mode, index, _ = iter_match.groups()
        values = _values(line[iter_match.end():], mode)
        return Parsed(values) if mode in ("val", "test") else Parsed(values, step=int(index))
    return None


def _values(text: str, mode: str | None) -> dict[str, float]:
    values = pairs_with_colon(text, _NOT_SERIES)
    if mode in ("val", "test"):
        return {f"val/{key}": value for key, value in values.items()}
    return values


FORMAT = LineFormat("mmdet", ("Epoch", "Iter("), parse)
