"""Schedulers whose `get_lr` torch computes from the epoch alone (no chained state), vectorised.

CosineAnnealingWarmRestarts, OneCycleLR, CyclicLR and transformers' LambdaLR multipliers each
evaluate a formula of `last_epoch`; these functions evaluate the same formula with numpy for all
epochs at once, with the operations in the order torch's (or transformers') Python writes them,
so each value is the same IEEE double (numpy's cos/pow are the C library's on builds without
AVX-512 SVML; elsewhere they may differ by an ulp, which the tests' tolerance states).
"""

from __future__ import annotations

import math

import numpy as np

from forensics.schedule.closed_form_chainable import NoClosedForm, check_keys, integer, libm_pow, number
from forensics.schedule.hf import warmup_steps

_ONE_CYCLE_ARGS = ("max_lr", "total_steps", "epochs", "steps_per_epoch", "pct_start", "anneal_strategy",
                   "cycle_momentum", "base_momentum", "max_momentum", "div_factor", "final_div_factor",
                   "three_phase")
_CYCLIC_ARGS = ("base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma", "scale_mode",
                "cycle_momentum", "base_momentum", "max_momentum")


def warm_restarts(params: dict, base: float, count: int) -> np.ndarray:
    """CosineAnnealingWarmRestarts: eta_min + (base - eta_min) (1 + cos(pi T_cur / T_i)) / 2, where
    cycle k lasts T_0 * T_mult**k scheduler steps (torch's `step()` without an epoch)."""
    check_keys(params, ("T_0", "T_mult", "eta_min"))
    first = integer(params.get("T_0"), 1)
    growth = integer(params.get("T_mult", 1), 1)
    eta = number(params.get("eta_min", 0.0))
    t = np.arange(count, dtype=np.int64)
    if growth == 1:
        position, length = t % first, np.full(count, first, dtype=np.int64)
    else:
        starts, lengths = [0], [first]
        while starts[-1] + lengths[-1] < count:
            starts.append(starts[-1] + lengths[-1])
            lengths.append(lengths[-1] * growth)
        cycle = np.searchsorted(np.array(starts, dtype=np.int64), t, side="right") - 1
        position, length = t - np.array(starts, dtype=np.int64)[cycle], np.array(lengths, dtype=np.int64)[cycle]
    return eta + (base - eta) * (1 + np.cos(np.pi * position / length)) / 2


def one_cycle(params: dict, base_lrs: list[float], count: int) -> tuple[np.ndarray, int]:
    """OneCycleLR's get_lr per group for epochs 0..count-1, and `total_steps` (torch raises past it)."""
    check_keys(params, _ONE_CYCLE_ARGS)
    total = params.get("total_steps")
    if total is not None:
        total = integer(total, 1)
    else:
        total = integer(params.get("epochs"), 1) * integer(params.get("steps_per_epoch"), 1)
    pct_start = params.get("pct_start", 0.3)
    strategy = params.get("anneal_strategy", "cos")
    if not isinstance(pct_start, float) or not 0 <= pct_start <= 1 or strategy not in ("cos", "linear"):
        raise NoClosedForm("pct_start or anneal_strategy")  # torch raises ValueError
    div, final_div = number(params.get("div_factor", 25.0)), number(params.get("final_div_factor", 1e4))
    if div == 0 or final_div == 0 or not isinstance(params.get("three_phase", False), bool):
        raise NoClosedForm("div factors")
    if params.get("three_phase", False):
        phases = [(float(pct_start * total) - 1, "initial", "max"), (float(2 * pct_start * total) - 2, "max", "initial"),
                  (total - 1, "initial", "min")]
    else:
        phases = [(float(pct_start * total) - 1, "initial", "max"), (total - 1, "max", "min")]
    max_lrs = _per_group(params.get("max_lr"), len(base_lrs))
    shown = min(count, total + 1)
    t = np.arange(shown, dtype=np.int64)
    chosen = np.full(shown, len(phases) - 1)
    for index in reversed(range(len(phases) - 1)):
        chosen = np.where(t <= phases[index][0], index, chosen)
    values = np.full((len(base_lrs), count), np.nan)
    start_step = 0.0
    for index, (end_step, start_name, end_name) in enumerate(phases):
        here = chosen == index
        if not here.any():
            start_step = end_step
            continue
        if end_step - start_step == 0:
            raise NoClosedForm("a phase of zero length")  # torch: ZeroDivisionError
        pct = (t[here] - start_step) / (end_step - start_step)
        for group, peak in enumerate(max_lrs):
            initial = peak / div
            levels = {"initial": initial, "max": peak, "min": initial / final_div}
            start, end = levels[start_name], levels[end_name]
            if strategy == "cos":
                values[group, :shown][here] = end + (start - end) / 2.0 * (np.cos(np.pi * pct) + 1)
            else:
                values[group, :shown][here] = (end - start) * pct + start
        start_step = end_step
    return values, total


def cyclic(params: dict, base_lrs: list[float], count: int) -> np.ndarray:
    """CyclicLR (triangular, triangular2, exp_range) per group; torch replaces the LR by `base_lr`."""
    check_keys(params, _CYCLIC_ARGS)
    if "base_lr" not in params or "max_lr" not in params:
        raise NoClosedForm("base_lr and max_lr are required")
    lows = _per_group(params["base_lr"], len(base_lrs))
    highs = _per_group(params["max_lr"], len(base_lrs))
    up = float(number(params.get("step_size_up", 2000)))
    down = params.get("step_size_down")
    down = float(number(down)) if down is not None else up
    mode, gamma = params.get("mode", "triangular"), number(params.get("gamma", 1.0))
    if up <= 0 or down < 0 or mode not in ("triangular", "triangular2", "exp_range"):
        raise NoClosedForm("step sizes or mode")  # a zero ratio divides by zero; a bad mode raises
    total = up + down
    ratio = up / total
    t = np.arange(count, dtype=np.int64)
    cycle = np.floor(1 + t / total)
    x = 1.0 + t / total - cycle
    with np.errstate(divide="ignore", invalid="ignore"):  # the branch not taken may divide by zero
        scale_factor = np.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
    if mode == "triangular":
        scale = np.ones(count)
    elif mode == "triangular2":
        if count and cycle[-1] - 1 >= 1024:
            raise NoClosedForm("2.0 ** cycle overflows")  # Python raises OverflowError
        scale = 1 / np.ldexp(1.0, (cycle - 1).astype(np.int64))  # 2.0 ** k is exact either way
    else:
        if not 0 < gamma <= 1:
            raise NoClosedForm("exp_range gamma outside (0, 1]")  # gamma ** t may overflow in Python
        scale = np.power(np.full(count, float(gamma)), t.astype(np.float64))  # gamma ** last_epoch, C pow
    return np.array([low + (high - low) * scale_factor * scale for low, high in zip(lows, highs)]).reshape(
        len(base_lrs), count)


def hf_multiplier(name: str, params: dict, base: float, count: int) -> np.ndarray:
    """transformers' `get_scheduler(name)` multiplier times `base`, as LambdaLR computes it."""
    total = params.get("num_training_steps")
    if total is not None:
        total = integer(total, 0)
    if params.get("num_warmup_steps") is not None:
        number(params["num_warmup_steps"])
    warmup = integer(warmup_steps(params, total), 0)
    step = np.arange(count, dtype=np.int64)
    ramp = step.astype(np.float64) / float(max(1, warmup))
    warming = step < warmup
    if name == "constant":
        return base * np.ones(count)
    if name == "constant_with_warmup":
        return base * np.where(warming, ramp, 1.0)
    if total is None and name != "inverse_sqrt":
        raise NoClosedForm(f"{name} needs num_training_steps")  # hf_lambda raises ValueError
    if name == "linear":
        after = _at_least_zero((total - step).astype(np.float64) / float(max(1, total - warmup)))
    elif name in ("cosine", "cosine_with_restarts"):
        cycles = number(params.get("num_cycles", 0.5 if name == "cosine" else 1))
        progress = (step - warmup).astype(np.float64) / float(max(1, total - warmup))
        if name == "cosine":
            after = _at_least_zero(0.5 * (1.0 + np.cos(math.pi * float(cycles) * 2.0 * progress)))
        else:
            after = np.where(progress >= 1.0, 0.0, _at_least_zero(
                0.5 * (1.0 + np.cos(math.pi * np.remainder(float(cycles) * progress, 1.0)))))
    elif name == "polynomial":
        lr_end, power = number(params.get("lr_end", 1e-7)), number(params.get("power", 1.0))
        if total == warmup or base == 0 or power < 0:
            raise NoClosedForm("polynomial divides by zero")
        with np.errstate(invalid="ignore"):
            remaining = 1 - (step - warmup) / (total - warmup)
            decayed = ((base - lr_end) * libm_pow(np.maximum(remaining, 0.0), power) + lr_end) / base
        after = np.where(step > total, lr_end / base, decayed)
    elif name == "inverse_sqrt":
        timescale = params.get("timescale") or warmup or 10_000
        if number(timescale) <= 0:
            raise NoClosedForm("timescale")
        after = 1.0 / np.sqrt((step + timescale - warmup) / timescale)
    else:
        raise NoClosedForm(f"HF schedule {name!r}")
    return base * np.where(warming, ramp, after)


def _at_least_zero(values: np.ndarray) -> np.ndarray:
    """Python's `max(0.0, v)`: 0.0 unless v > 0 (NaN gives 0.0, unlike np.maximum)."""
    return np.where(values > 0.0, values, 0.0)


def _per_group(value, groups: int) -> list:
    """torch's `_format_param`: one value for all groups, or a list with one per group."""
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise NoClosedForm("per-group list of the wrong length")  # torch raises ValueError
        return [number(v) for v in value]
    return [number(value)] * groups
