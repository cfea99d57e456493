"""Megatron-LM (and Megatron-DeepSpeed) iteration lines: `iteration N/ TOTAL | key: value | ...`.

The step is the iteration. `number of skipped iterations` > 0 (fp16 overflow) and `number of nan
iterations` > 0 also become events, since they are evidence even where the loss is not printed.

Real lines:
     iteration     5426/  250000 | consumed samples:        43408 | consumed tokens:     88899584 | elapsed time per iteration (ms): 4247.9 | learning rate: 2.999E-04 | global batch size:     8 | loss scale: 1.0 | grad norm: nan | actual seqlen:  2048 | number of skipped iterations:   0 | number of nan iterations:   0 | samples per second: 1.883 | TFLOPs: 78.36 |
     iteration     6502/  159576 | consumed samples:       216960 | consumed tokens:    444334080 | elapsed time per iteration (ms): 31074.1 | learning rate: 5.997E-05 | global batch size:    80 | lm loss: 3.876781E+00 | loss scale: 4096.0 | grad norm: 3246.595 | num zeros: 0.0 | number of skipped iterations:   0 | number of nan iterations:   0 |
    [2026-01-16 07:32:24] iteration        5/     100 | consumed samples:        10240 | elapsed time per iteration (ms): 15800.0 | throughput per GPU (TFLOP/s/GPU): 490.0 | learning rate: 4.134000E-07 | global batch size:  2048 | lm loss: 1.344240E+01 | loss scale: 1.0 | grad norm: 2.870 | number of skipped iterations:   2 | number of nan iterations:   1 |
"""

from __future__ import annotations

import re

from forensics.ingest.logs.formats.base import NUMBER, LineFormat, Parsed, to_float

_ITERATION = re.compile(r"\biteration\s+(\d+)\s*/\s*(\d+)\s*\|")
_FIELD = re.compile(rf"^\s*([A-Za-z][^:|]*?)\s*:\s*({NUMBER})\s*$")
SKIPPED = "number of skipped iterations"
NAN_ITERATIONS = "number of nan iterations"


def parse(line: str) -> Parsed | None:
    """Every `key: number` field between the bars; the iteration is the step."""
    match = _ITERATION.search(line)
    if not match:
        return None
    values = {}
    for field in line[match.end():].split("|"):
        found = _FIELD.match(field)
        if found:
            values[found.group(1)] = to_float(found.group(2))
    events = []
    if values.get(SKIPPED, 0) > 0:
        events.append(("overflow", {"skipped_iterations": int(values[SKIPPED]),
                                    "loss_scale": values.get("loss scale")}))
    if values.get(NAN_ITERATIONS, 0) > 0:
        events.append(("nan_reported", {"nan_iterations": int(values[NAN_ITERATIONS])}))
    return Parsed(values, step=int(match.group(1)), events=events)


FORMAT = LineFormat("megatron", ("iteration",), parse)
