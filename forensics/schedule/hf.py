"""HF Trainer schedules (`lr_scheduler_type`), which transformers builds as `LambdaLR`s.

transformers is not installed here, so its lambdas are copied below from
`transformers/optimization.py` (v4.40-4.57, unchanged in substance across those releases), one
small function each. Where a torch class gives the same curve, `torch_equivalent` returns that
class's spec and the replay uses it; `tests/test_schedule_hf.py` checks every equivalent against
the lambda numerically (max relative difference 1e-9 at every step from 1 on). The one step that
cannot match is step 0 of a warmup: HF starts at exactly 0, torch's `LinearLR` needs a start
factor above 0, so ours starts at `WARMUP_START_FACTOR` (1e-12) times the base LR.
"""

from __future__ import annotations

import math
from typing import Callable

WARMUP_START_FACTOR = 1e-12

HF_SCHEDULES = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                "inverse_sqrt")
# Canonical argument names (transformers' own) and the spellings a user may write instead.
HF_ARGUMENTS = ("num_warmup_steps", "num_training_steps", "warmup_ratio", "num_cycles", "power", "lr_end",
                "timescale")
HF_ARGUMENT_ALIASES = {
    "num_warmup_steps": "num_warmup_steps", "warmup_steps": "num_warmup_steps", "warmup": "num_warmup_steps",
    "num_training_steps": "num_training_steps", "training_steps": "num_training_steps",
    "total_steps": "num_training_steps", "max_steps": "num_training_steps",
    "warmup_ratio": "warmup_ratio", "num_cycles": "num_cycles", "power": "power", "lr_end": "lr_end",
    "timescale": "timescale",
}
# Schedules whose value depends on the training length.
NEEDS_TRAINING_STEPS = {"linear", "cosine", "cosine_with_restarts", "polynomial"}


def warmup_steps(params: dict, training_steps: int | None) -> int:
    """HF's `get_warmup_steps`: explicit steps win, else ceil(ratio * training steps)."""
    explicit = params.get("num_warmup_steps") or 0
    if explicit and explicit >= 1:
        return int(explicit)
    ratio = params.get("warmup_ratio") or (explicit if 0 < explicit < 1 else 0)
    return int(math.ceil(training_steps * ratio)) if ratio and training_steps else 0


def hf_lambda(name: str, params: dict, base_lr: float) -> Callable[[int], float]:
    """The multiplier transformers' `get_scheduler(name, ...)` applies at each step."""
    total = params.get("num_training_steps")
    warmup = warmup_steps(params, total)

    def ramp(step: int) -> float:
        return float(step) / float(max(1, warmup))

    if name == "constant":
        return lambda step: 1.0
    if name == "constant_with_warmup":
        return lambda step: ramp(step) if step < warmup else 1.0
    if total is None:
        if name != "inverse_sqrt":
            raise ValueError(f"{name} needs num_training_steps")
    if name == "linear":
        return lambda step: ramp(step) if step < warmup else max(
            0.0, float(total - step) / float(max(1, total - warmup)))
    if name == "cosine":
        cycles = params.get("num_cycles", 0.5)

        def cosine(step: int) -> float:
            if step < warmup:
                return ramp(step)
            progress = float(step - warmup) / float(max(1, total - warmup))
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(cycles) * 2.0 * progress)))
        return cosine
    if name == "cosine_with_restarts":
        cycles = params.get("num_cycles", 1)

        def restarts(step: int) -> float:
            if step < warmup:
                return ramp(step)
            progress = float(step - warmup) / float(max(1, total - warmup))
            if progress >= 1.0:
                return 0.0
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(cycles) * progress) % 1.0))))
        return restarts
    if name == "polynomial":
        lr_end, power = params.get("lr_end", 1e-7), params.get("power", 1.0)

        def polynomial(step: int) -> float:
            if step < warmup:
                return ramp(step)
            if step > total:
                return lr_end / base_lr
            pct_remaining = 1 - (step - warmup) / (total - warmup)
            return ((base_lr - lr_end) * pct_remaining ** power + lr_end) / base_lr
        return polynomial
    if name == "inverse_sqrt":
        timescale = params.get("timescale") or warmup or 10_000

        def inverse_sqrt(step: int) -> float:
            if step < warmup:
                return ramp(step)
            return 1.0 / math.sqrt((step + timescale - warmup) / timescale)
        return inverse_sqrt
    raise ValueError(f"unknown HF schedule {name!r}")


def torch_equivalent(name: str, params: dict):
    """A `ScheduleSpec` of real torch classes that gives the same LR as HF's lambda, or None."""
    from forensics.schedule.spec import ScheduleSpec  # spec imports this module

    total = params.get("num_training_steps")
    warmup = warmup_steps(params, total)
    ramp = ScheduleSpec("LinearLR", {"start_factor": WARMUP_START_FACTOR, "end_factor": 1.0, "total_iters": warmup})
    if name == "constant":
        return ScheduleSpec("ConstantLR", {"factor": 1.0, "total_iters": 0})
    if name == "constant_with_warmup":
        return ramp if warmup else ScheduleSpec("ConstantLR", {"factor": 1.0, "total_iters": 0})
    if total is None or total <= warmup:
        return None
    if name == "linear":
        decay = ScheduleSpec("LinearLR", {"start_factor": 1.0, "end_factor": 0.0, "total_iters": total - warmup})
    elif name == "cosine" and params.get("num_cycles", 0.5) == 0.5:
        decay = ScheduleSpec("CosineAnnealingLR", {"T_max": total - warmup, "eta_min": 0.0})
    else:
        return None
    if not warmup:
        return decay
    return ScheduleSpec("SequentialLR", {"milestones": [warmup]}, (ramp, decay))


def solve_training_steps(name: str, params: dict, base_lr: float, last_epoch: int,
                         last_factor: float) -> tuple[int | None, float]:
    """The `num_training_steps` that puts the multiplier at `last_factor` after `last_epoch` steps.

    Used when an HF run saved `scheduler.pt` but no `max_steps` survives: the saved `_last_lr` pins
    the horizon. Returns (steps, relative mismatch of the best candidate), or (None, inf).
    """
    if name not in NEEDS_TRAINING_STEPS or last_epoch <= 0 or not math.isfinite(last_factor):
        return None, math.inf
    best, best_error = None, math.inf
    upper = min(last_epoch * 20 + 1000, 2_000_000)
    for total in range(last_epoch, upper):
        candidate = dict(params, num_training_steps=total)
        value = hf_lambda(name, candidate, base_lr)(last_epoch)
        error = abs(value - last_factor) / max(abs(last_factor), 1e-300)
        if error < best_error:
            best, best_error = total, error
        if value > last_factor * (1 + 1e-9) and best_error < 1e-3 and name != "cosine_with_restarts":
            break  # the multiplier only grows with the horizon for the decaying schedules
    return best, best_error
