"""torch's chainable schedulers as update sequences (see `closed_form_ops`), one function per class.

Each function mirrors the class's `get_lr` in torch 2.x `torch/optim/lr_scheduler.py`, branch by
branch and in the same float order, for scheduler calls 0..count-1 of one param group (call 0 is
the constructor's initial step). What torch returns unchanged is `lr * 1.0`. Each class also has
its `_get_closed_form_lr` at epoch 0, the value `SequentialLR` sets at a milestone.

Parameters outside the domain checked here (torch would refuse them, divide by zero, or the
mirror is not proven) raise `NoClosedForm`; the replay then steps the real torch scheduler.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter

import numpy as np

from forensics.schedule.closed_form_ops import ADD, AFFINE, MUL, Updates


class NoClosedForm(Exception):
    """This spec is replayed with torch step by step (the reason is the message)."""


def check_keys(params: dict, allowed: tuple[str, ...]) -> None:
    """Refuse arguments the mirror does not know (torch would raise TypeError for a wrong one)."""
    unknown = set(params) - set(allowed)
    if unknown:
        raise NoClosedForm(f"arguments {sorted(unknown)}")


def integer(value, minimum: int) -> int:
    """A plain int >= minimum (bools and floats go to torch, whose handling differs by class)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NoClosedForm(f"integer {value!r}")
    return value


def number(value) -> float:
    """A finite int or float, kept as given (torch computes with it as given)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NoClosedForm(f"number {value!r}")
    return value


def libm_pow(base: np.ndarray, exponent: float) -> np.ndarray:
    """`x ** exponent` as Python computes it (C `pow`): numpy's scalar-exponent fast paths for
    2, 0.5 and -1 use x*x, sqrt and 1/x, which differ from `pow` in the last bit about 0.1% of the time."""
    return np.power(base, np.full(np.shape(base), float(exponent)))


def _steps(count: int) -> np.ndarray:
    return np.arange(count, dtype=np.int64)


def step_lr(params: dict, base: float, count: int) -> Updates:
    """StepLR: lr * gamma when last_epoch is a positive multiple of step_size."""
    check_keys(params, ("step_size", "gamma"))
    size = integer(params.get("step_size"), 1)
    gamma = number(params.get("gamma", 0.1))
    t = _steps(count)
    return Updates.multiply(np.where((t > 0) & (t % size == 0), float(gamma), 1.0))


def step_lr_at_zero(params: dict, base: float) -> float:
    return base * params.get("gamma", 0.1) ** (0 // params["step_size"])


def multistep_lr(params: dict, base: float, count: int) -> Updates:
    """MultiStepLR: lr * gamma ** (times the epoch is listed) at each milestone, including epoch 0."""
    check_keys(params, ("milestones", "gamma"))
    milestones = params.get("milestones")
    if not isinstance(milestones, (list, tuple)):
        raise NoClosedForm("milestones")
    counts = Counter(integer(m, -2**62) for m in milestones)
    gamma = number(params.get("gamma", 0.1))
    factors = np.ones(count)
    try:
        for epoch, times in counts.items():
            if 0 <= epoch < count:
                factors[epoch] = gamma ** times
    except OverflowError as error:
        raise NoClosedForm(str(error)) from None
    return Updates.multiply(factors)


def multistep_lr_at_zero(params: dict, base: float) -> float:
    return base * params.get("gamma", 0.1) ** bisect_right(sorted(params["milestones"]), 0)


def constant_lr(params: dict, base: float, count: int) -> Updates:
    """ConstantLR: lr * factor at epoch 0, lr * (1 / factor) at epoch total_iters (if > 0).

    With total_iters=0 torch never restores the LR (the epoch-0 branch comes first); mirrored."""
    check_keys(params, ("factor", "total_iters"))
    factor = number(params.get("factor", 1.0 / 3))
    total = integer(params.get("total_iters", 5), -2**62)
    if not 0 <= factor <= 1 or (factor == 0 and 0 < total < count):
        raise NoClosedForm("factor")  # torch: ValueError, or 1/0 at total_iters
    factors = np.ones(count)
    if count:
        factors[0] = factor
    if 0 < total < count:
        factors[total] = 1.0 / factor
    return Updates.multiply(factors)


def constant_lr_at_zero(params: dict, base: float) -> float:
    factor, total = params.get("factor", 1.0 / 3), params.get("total_iters", 5)
    return base * (factor + (0 >= total) * (1 - factor))


def linear_lr(params: dict, base: float, count: int) -> Updates:
    """LinearLR: lr * start_factor at epoch 0, then torch's chainable ratio up to total_iters."""
    check_keys(params, ("start_factor", "end_factor", "total_iters"))
    start = number(params.get("start_factor", 1.0 / 3))
    end = number(params.get("end_factor", 1.0))
    total = integer(params.get("total_iters", 5), 0)
    if not (0 < start <= 1 and 0 <= end <= 1):
        raise NoClosedForm("factors")  # torch raises ValueError
    factors = np.ones(count)
    if count:
        factors[0] = start
    t = np.arange(1, min(total, count - 1) + 1, dtype=np.int64)
    difference = end - start
    factors[t] = 1.0 + difference / (total * start + (t - 1) * difference)
    return Updates.multiply(factors)


def linear_lr_at_zero(params: dict, base: float) -> float:
    start, end, total = params.get("start_factor", 1.0 / 3), params.get("end_factor", 1.0), params.get("total_iters", 5)
    if total == 0:
        raise NoClosedForm("LinearLR(total_iters=0) at a SequentialLR milestone divides by zero")
    return base * (start + (end - start) * min(total, 0) / total)


def exponential_lr(params: dict, base: float, count: int) -> Updates:
    """ExponentialLR: unchanged at epoch 0, then lr * gamma."""
    check_keys(params, ("gamma",))
    gamma = number(params.get("gamma"))
    factors = np.full(count, float(gamma))
    if count:
        factors[0] = 1.0
    return Updates.multiply(factors)


def exponential_lr_at_zero(params: dict, base: float) -> float:
    return base * params["gamma"] ** 0


def polynomial_lr(params: dict, base: float, count: int) -> Updates:
    """PolynomialLR: lr * ((1 - t/T) / (1 - (t-1)/T)) ** power for 1 <= t <= T, then unchanged."""
    check_keys(params, ("total_iters", "power"))
    total = integer(params.get("total_iters", 5), 0)
    power = number(params.get("power", 1.0))
    if power < 0:
        raise NoClosedForm("negative power")  # 0.0 ** negative raises in Python
    factors = np.ones(count)
    t = np.arange(1, min(total, count - 1) + 1, dtype=np.int64)
    factors[t] = libm_pow((1.0 - t / total) / (1.0 - (t - 1) / total), power)
    return Updates.multiply(factors)


def polynomial_lr_at_zero(params: dict, base: float) -> float:
    total, power = params.get("total_iters", 5), params.get("power", 1.0)
    if total == 0:
        raise NoClosedForm("PolynomialLR(total_iters=0) at a SequentialLR milestone divides by zero")
    return base * (1.0 - min(total, 0) / total) ** power


def cosine_annealing_lr(params: dict, base: float, count: int) -> Updates:
    """CosineAnnealingLR's recursive form (not its closed form: they differ past T_max).

    At epoch t >= 1: `(1 + cos(pi t/T)) / (1 + cos(pi (t-1)/T)) * (lr - eta_min) + eta_min`, except
    one step after each trough ((t - 1 - T) % 2T == 0), where torch adds
    `(base_lr - eta_min) * (1 - cos(pi/T)) / 2`. That additive restart makes the second half-period
    differ from the closed form by up to 1e-5 relative for large T, which is why it is mirrored."""
    check_keys(params, ("T_max", "eta_min"))
    period = integer(params.get("T_max"), 1)
    eta = number(params.get("eta_min", 0.0))
    t = _steps(count)
    cosine_term = 1 + np.cos(np.pi * t / period)          # same expression as torch, per epoch
    after_trough = (t - 1 - period) % (2 * period) == 0
    after_trough[:1] = False
    ratio = np.ones(count)
    ratio[1:] = cosine_term[1:] / np.where(after_trough[1:], 1.0, cosine_term[:-1])
    if np.any(cosine_term[:-1][~after_trough[1:]] == 0):
        raise NoClosedForm("a cosine term of exactly 0 off the trough step")  # torch: ZeroDivisionError
    kind = np.full(count, MUL if eta == 0 else AFFINE, np.int8)
    a = ratio
    if count:
        kind[0], a[0] = MUL, 1.0  # the constructor's step leaves the LR as it is
    kind[after_trough] = ADD
    a[after_trough] = (base - eta) * (1 - math.cos(math.pi / period)) / 2
    b = np.where(kind == AFFINE, float(eta), 0.0)
    return Updates(kind, a, b)


def cosine_annealing_lr_at_zero(params: dict, base: float) -> float:
    eta, period = params.get("eta_min", 0.0), params["T_max"]
    return eta + (base - eta) * (1 + math.cos(math.pi * 0 / period)) / 2


CHAINABLE = {
    "StepLR": (step_lr, step_lr_at_zero),
    "MultiStepLR": (multistep_lr, multistep_lr_at_zero),
    "ConstantLR": (constant_lr, constant_lr_at_zero),
    "LinearLR": (linear_lr, linear_lr_at_zero),
    "ExponentialLR": (exponential_lr, exponential_lr_at_zero),
    "PolynomialLR": (polynomial_lr, polynomial_lr_at_zero),
    "CosineAnnealingLR": (cosine_annealing_lr, cosine_annealing_lr_at_zero),
}
