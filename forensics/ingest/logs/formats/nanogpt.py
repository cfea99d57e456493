"""nanoGPT's train.py: `iter N: loss X, time Tms, mfu M%` and `step N: train loss X, val loss Y`.

Real lines:
    2023-03-22 09:30:39 iter 2920: loss 3.9883, time 1099.34ms, mfu 15.34%
    2023-03-22 09:32:52 iter 3010: loss nan, time 1019.95ms, mfu 14.12%
    2023-03-22 09:32:32 step 3000: train loss 4.0390, val loss 4.0427
    iter 0: loss 10.9767, time 23516.58ms, mfu -100.00%
"""

from __future__ import annotations

import re

from forensics.ingest.logs.formats.base import NUMBER, LineFormat, Parsed, to_float

_ITER = re.compile(rf"\biter (\d+): loss ({NUMBER})(?:, time ({NUMBER})ms)?(?:, mfu ({NUMBER})%)?")
_EVAL = re.compile(rf"\bstep (\d+): train loss ({NUMBER}), val loss ({NUMBER})")


def parse(line: str) -> Parsed | None:
    """Training loss, iteration time and MFU; or the periodic train/val loss estimate."""
    match = _ITER.search(line)
    if match:
        values = {"loss": to_float(match.group(2))}
        if match.group(3):
            values["time_ms"] = to_float(match.group(3))
        if match.group(4) and to_float(match.group(4)) >= 0:  # nanoGPT prints -100% before it can measure
            values["mfu"] = to_float(match.group(4))
        return Parsed(values, step=int(match.group(1)))
    match = _EVAL.search(line)
    if match:
        return Parsed({"train loss estimate": to_float(match.group(2)), "val loss": to_float(match.group(3))},
                      step=int(match.group(1)))
    return None


FORMAT = LineFormat("nanogpt", ("iter ", "train loss"), parse)
