"""DeepSpeed: fp16 loss-scale overflow lines and the engine's `step=N, skipped=K, lr=[...]` line.

An overflow line gives the new loss scale (a `loss_scale` value; the overflow itself becomes an
event); it states no step, so the reader uses a glued progress counter or the last step seen.

Real lines:
    [2023-04-28 06:51:30,648] [INFO] [loss_scaler.py:181:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768
      1%|█         | 7/1184 [00:24<1:07:59,  3.47s/it][2021-02-04 15:06:23,182] [INFO] [stage2.py:1357:step] [deepscale] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 67108864.0, reducing to 33554432.0
    [2021-01-26 22:05:35,108] [INFO] [logging.py:60:log_dist] [Rank 0] Overflow detected. Skipping step. Attempted loss scale: 1, reducing to 1
    [2023-04-28 06:59:46,878] [INFO] [logging.py:96:log_dist] [Rank 0] step=510, skipped=8, lr=[9.993e-05, 9.993e-05], mom=[(0.9, 0.95), (0.9, 0.95)]
"""

from __future__ import annotations

import re

from forensics.ingest.logs.formats.base import NUMBER, LineFormat, Parsed, to_float, to_step

_OVERFLOW = re.compile(rf"Skipping step\. Attempted loss scale: ({NUMBER}), reducing to ({NUMBER})")
_ENGINE = re.compile(r"\bstep=(\d+), skipped=(\d+), lr=\[([^\]]*)\]")
_COUNTER = re.compile(r"(\d+)/(\d+)\s*\[")


def parse(line: str) -> Parsed | None:
    """The new loss scale of an overflow, or the engine's step, skipped count and per-group LRs."""
    overflow = _OVERFLOW.search(line)
    if overflow:
        counter = _COUNTER.search(line, 0, overflow.start())
        return Parsed({"loss_scale": to_float(overflow.group(2))},
                      progress=(int(counter.group(1)), int(counter.group(2))) if counter else None)
    engine = _ENGINE.search(line)
    if engine:
        values = {"skipped": float(engine.group(2))}
        for group, text in enumerate(part for part in engine.group(3).split(",") if part.strip()):
            try:
                values["lr" if group == 0 else f"lr/group{group}"] = to_float(text)
            except ValueError:  # a garbled LR list (found by benchmarks/fuzz_log_registry.py): that group is skipped
                continue
        return Parsed(values, step=to_step(int(engine.group(1))))
    return None


FORMAT = LineFormat("deepspeed", ("Skipping step", "skipped="), parse)
