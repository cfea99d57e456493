"""JSON objects, one per line (mmengine `vis_data/*.json`, custom loggers, W&B-style history).

The step is the first of `step`, `global_step`, `_step`, `iteration`, `iter`, `it`,
`trainer/global_step` present; without one the reader falls back on the epoch or position.
Nested objects and strings are not series. Epoch seconds in `_timestamp` (W&B), `timestamp` or
`time` are the record's wall time (`time` only when it is a clock, not mmengine's seconds per iteration).

Real lines:
    {"lr": 0.0001, "data_time": 0.0215, "loss": 2.3467, "loss_cls": 1.1322, "loss_bbox": 1.2145, "time": 0.4306, "epoch": 1, "iter": 50, "memory": 3620, "step": 50}
    {"coco/bbox_mAP": 0.22, "coco/bbox_mAP_50": 0.367, "coco/bbox_mAP_75": 0.23, "coco/bbox_mAP_s": 0.121, "coco/bbox_mAP_m": 0.253, "coco/bbox_mAP_l": 0.277, "step": 1}
    {"progress":29.8,"loss":1.022334,"lr":0.034541,"words":170684,"eta":"0h0m","eta_msec":0}
"""

from __future__ import annotations

import json

from forensics.ingest.logs.formats.base import LineFormat, Parsed, to_number, to_step
from forensics.ingest.logs.timestamps import epoch_seconds

CLOCK_KEYS = ("_timestamp", "timestamp", "time")
STEP_KEYS = ("step", "global_step", "_step", "iteration", "iter", "it", "trainer/global_step")
_NOT_SERIES = frozenset(STEP_KEYS) | {"epoch", "_timestamp", "_runtime", "timestamp", "time_stamp"}


def parse(line: str) -> Parsed | None:
    """Numeric top-level fields; the step from the first step-like key."""
    start = line.find("{")
    if start < 0 or line[:start].strip():
        return None
    try:
        record = json.loads(line[start:])
    except ValueError:  # a RecursionError (absurd nesting) reaches the log reader, which reports the line
        return None
    return parse_record(record)


def parse_record(record) -> Parsed | None:
    """One decoded JSON object as a parsed line (shared with the JSON-lines metric-file reader)."""
    if not isinstance(record, dict):
        return None
    step = next((to_number(record[key]) for key in STEP_KEYS if key in record and to_number(record[key]) is not None),
                None)
    values = {str(key): number for key, raw in record.items() if key not in _NOT_SERIES
              for number in [to_number(raw) if not isinstance(raw, str) else None] if number is not None}
    if not values:
        return None
    clock_key, wall_time = next(((key, clock) for key in CLOCK_KEYS if key in record and not isinstance(record[key], str)
                                 for clock in [epoch_seconds(to_number(record[key]))] if clock is not None), (None, None))
    if clock_key == "time":
        values.pop("time", None)  # a clock, not seconds per iteration
    return Parsed(values, step=to_step(step), epoch=to_number(record.get("epoch")), wall_time=wall_time)


FORMAT = LineFormat("json_lines", ("{",), parse)
