"""Infer a schedule from the logged LR alone, when no source states one.

Each known family is fitted to the LR with `scipy.optimize.least_squares` on a small numpy model of
its curve (fitting needs thousands of evaluations; stepping torch for each would be too slow). The
best fit is then written as a torch spec and *replayed with the real torch class*, and the residual
and confidence reported come from that replay, not from the fitting model. Families are compared
by BIC with a noise floor, so a simpler family wins when a richer one fits no better.

An inferred schedule describes what the run did; it cannot reveal a schedule that was never
applied (a stuck LR infers as `constant`). Confidence stays low when the fit is poor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forensics.schedule.spec import ScheduleSpec

# Relative noise we expect in a logged LR (float32, or 4 significant digits in text logs).
NOISE_FLOOR = 1e-4
MIN_POINTS = 5
MAX_FIT_POINTS = 4000


@dataclass(frozen=True)
class Fit:
    """One family's best fit: its torch spec, the base LR it needs, and its fitting residual."""

    family: str
    spec: ScheduleSpec
    base_lr: float
    parameters: int
    nrmse: float           # RMS of (model - LR) / peak LR, from the fitting model
    horizon: int | None


def clean_series(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by step, one value per step (the last logged), finite values only."""
    steps = np.asarray(steps, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    if not len(steps):
        return steps, values
    last = np.append(steps[1:] != steps[:-1], True)
    steps, values = steps[last], values[last]
    finite = np.isfinite(values)
    return steps[finite], values[finite]


def fit_families(steps: np.ndarray, values: np.ndarray) -> list[Fit]:
    """Every family's fit, best (lowest BIC) first. Empty when the series is too short."""
    steps, values = clean_series(steps, values)
    if len(steps) < MIN_POINTS or not np.any(values > 0):
        return []
    if len(steps) > MAX_FIT_POINTS:  # even subsample keeps both ends
        keep = np.unique(np.linspace(0, len(steps) - 1, MAX_FIT_POINTS).astype(int))
        steps, values = steps[keep], values[keep]
    peak = float(np.max(np.abs(values)))
    x, y = steps.astype(float), values / peak
    fits = [fit for fitter in _FITTERS if (fit := fitter(x, y, peak)) is not None]
    count = len(x)
    return sorted(fits, key=lambda fit: count * math.log(fit.nrmse ** 2 + NOISE_FLOOR ** 2)
                  + fit.parameters * math.log(count))


def confidence_from_residual(nrmse: float, points: int) -> float:
    """0..0.9: high only for a near-exact fit on enough points (inference never claims certainty)."""
    quality = math.exp(-max(nrmse - NOISE_FLOOR, 0.0) / 0.02)
    coverage = min(1.0, points / 20)
    return round(0.9 * quality * coverage, 3)


def _nrmse(model: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((model - y) ** 2)))


def _solve(model, x: np.ndarray, y: np.ndarray, starts: list[list[float]], lower: list[float],
           upper: list[float]) -> tuple[np.ndarray, float] | None:
    from scipy.optimize import least_squares  # imported only when a fit is needed (~0.5 s)

    best = None
    for start in starts:
        start = np.clip(start, np.array(lower) + 1e-12, np.array(upper) - 1e-12)
        try:
            result = least_squares(lambda p: model(x, p) - y, start, bounds=(lower, upper), max_nfev=400)
        except ValueError:
            continue
        error = _nrmse(model(x, result.x), y)
        if best is None or error < best[1]:
            best = (result.x, error)
    return best


def _constant(x, y, peak):
    level = float(np.median(y))
    return Fit("constant", ScheduleSpec("ConstantLR", {"factor": 1.0, "total_iters": 0}), level * peak, 1,
               _nrmse(np.full_like(y, level), y), None)


def _exponential(x, y, peak):
    positive = y > 0
    if positive.sum() < MIN_POINTS:
        return None
    slope, intercept = np.polyfit(x[positive], np.log(y[positive]), 1)
    model = lambda x, p: p[0] * np.exp(p[1] * x)  # noqa: E731
    solved = _solve(model, x, y, [[math.exp(intercept), slope]], [0, -1.0], [10, 1.0])
    if solved is None:
        return None
    (a, rate), error = solved
    return Fit("exponential", ScheduleSpec("ExponentialLR", {"gamma": float(f"{math.exp(rate):.10g}")}),
               a * peak, 2, error, None)


def _piecewise(x, y, peak):
    """StepLR / MultiStepLR: flat stretches separated by multiplicative drops."""
    ratio = y[1:] / np.where(y[:-1] == 0, np.nan, y[:-1])
    jumps = np.flatnonzero(np.abs(ratio - 1) > 1e-3)
    if not 1 <= len(jumps) <= 30 or len(jumps) > len(x) / 3:
        return None
    milestones = [int(x[i + 1]) for i in jumps]
    gammas = ratio[jumps]
    gamma = float(np.exp(np.mean(np.log(gammas))))
    level = float(y[0])
    model = level * gamma ** np.searchsorted(np.array(milestones), x, side="right")
    error = _nrmse(model, y)
    gaps = np.diff([0] + milestones)
    gamma = float(f"{gamma:.6g}")
    if len(set(gaps.tolist())) == 1:
        spec = ScheduleSpec("StepLR", {"step_size": int(gaps[0]), "gamma": gamma})
        return Fit("step", spec, level * peak, 3, error, None)
    spec = ScheduleSpec("MultiStepLR", {"milestones": milestones, "gamma": gamma})
    return Fit("multistep", spec, level * peak, 2 + len(milestones), error, milestones[-1])


def _cos_decay(progress):
    return 0.5 * (1 + np.cos(np.pi * np.clip(progress, 0, None)))


def _cosine(x, y, peak):
    span = x[-1] + 1

    def model(x, p):
        return p[1] + (p[0] - p[1]) * _cos_decay(x / p[2])
    solved = _solve(model, x, y, [[y[0], y[-1] * 0.5, span], [y[0], 0, span * 1.5]], [0, 0, 2], [2, 1, span * 20])
    if solved is None:
        return None
    (a, eta, t_max), error = solved
    spec = ScheduleSpec("CosineAnnealingLR", {"T_max": int(round(t_max)), "eta_min": float(f"{eta * peak:.6g}")})
    return Fit("cosine", spec, a * peak, 3, error, int(round(t_max)))


def _warmup_then(decay: str):
    """Linear warmup from start*peak to peak over W steps, then cosine or linear decay to 0 at T.

    A shift d (|d| <= 50 steps) is fitted too and left out of the spec: skipped first steps (AMP
    overflow) or a logger reading the LR a step late move the whole curve, which is the comparison's
    offset to report, not part of the schedule.
    """
    def fitter(x, y, peak):
        top = int(np.argmax(y))
        if top == 0 or top >= len(x) - 2:
            return None
        span = x[-1] + 1
        warm = max(x[top], 1.0)

        def model(x, p):
            a, w, t, s, d = p
            x = x - d
            rise = a * np.clip(s + (1 - s) * x / w, 0, None)
            progress = (x - w) / max(t - w, 1.0)
            fall = a * (_cos_decay(progress) if decay == "cosine" else np.clip(1 - progress, 0, None))
            return np.where(x < w, rise, fall)

        # Start factor and shift trade off against each other along the ramp, so fit one or the
        # other: a free start factor (torch LinearLR warmups), or a ramp from 0 (HF) that may be shifted.
        free_start = _solve(lambda x, p: model(x, [*p, 0.0]), x, y,
                            [[1, warm, span, 0.01], [1, warm, span * 1.2, 0.1]],
                            [0, 1, 2, 1e-12], [2, span * 2, span * 20, 1])
        from_zero = _solve(lambda x, p: model(x, [p[0], p[1], p[2], 0.0, p[3]]), x, y,
                           [[1, warm, span, 0.0], [1, warm, span * 1.2, 1.0]],
                           [0, 1, 2, -50], [2, span * 2, span * 20, 50])
        candidates = [(np.append(f[0], 0.0), f[1]) for f in [free_start] if f is not None]
        candidates += [(np.array([*f[0][:3], 0.0, f[0][3]]), f[1]) for f in [from_zero] if f is not None]
        if not candidates:
            return None
        (a, w, t, s, shift), error = min(candidates, key=lambda c: c[1] * (1 + 1e-3) if c[0][4] else c[1])
        w, t = int(round(w)), int(round(t))
        if t <= w:
            return None
        ramp = ScheduleSpec("LinearLR", {"start_factor": float(f"{max(s, 1e-12):.6g}"), "end_factor": 1.0,
                                         "total_iters": w})
        tail = ScheduleSpec("CosineAnnealingLR", {"T_max": t - w, "eta_min": 0.0}) if decay == "cosine" else \
            ScheduleSpec("LinearLR", {"start_factor": 1.0, "end_factor": 0.0, "total_iters": t - w})
        spec = ScheduleSpec("SequentialLR", {"milestones": [w]}, (ramp, tail))
        return Fit(f"warmup_{decay}", spec, a * peak, 5, error, t)
    return fitter


def _linear_decay(x, y, peak):
    span = x[-1] + 1

    def model(x, p):
        return p[0] * (1 + (p[1] - 1) * np.clip(x / p[2], 0, 1))
    solved = _solve(model, x, y, [[y[0], 0.0, span], [y[0], max(y[-1] / max(y[0], 1e-12), 0), span]],
                    [0, 0, 1], [2, 1, span * 20])
    if solved is None:
        return None
    (a, end, total), error = solved
    spec = ScheduleSpec("LinearLR", {"start_factor": 1.0, "end_factor": float(f"{end:.6g}"),
                                     "total_iters": int(round(total))})
    return Fit("linear", spec, a * peak, 3, error, int(round(total)))


def _polynomial(x, y, peak):
    span = x[-1] + 1

    def model(x, p):
        return p[0] * np.clip(1 - x / p[1], 0, None) ** p[2]
    solved = _solve(model, x, y, [[y[0], span, 2.0], [y[0], span * 1.5, 0.5]], [0, 2, 0.05], [2, span * 20, 10])
    if solved is None:
        return None
    (a, total, power), error = solved
    spec = ScheduleSpec("PolynomialLR", {"total_iters": int(round(total)), "power": float(f"{power:.6g}")})
    return Fit("polynomial", spec, a * peak, 3, error, int(round(total)))


def _inverse_sqrt(x, y, peak):
    top = int(np.argmax(y))
    span = x[-1] + 1

    def model(x, p):
        a, w = p
        return np.where(x < w, a * x / w, a / np.sqrt(np.maximum(x, 1e-9) / w))
    solved = _solve(model, x, y, [[1, max(x[top], 1)], [1, span / 10]], [0, 1], [2, span * 2])
    if solved is None:
        return None
    (a, w), error = solved
    spec = ScheduleSpec("inverse_sqrt", {"num_warmup_steps": int(round(w))})
    return Fit("inverse_sqrt", spec, a * peak, 2, error, None)


def _one_cycle(x, y, peak):
    top = int(np.argmax(y))
    if top == 0 or top >= len(x) - 2:
        return None
    span = x[-1] + 1

    def model(x, p):
        a, total, pct, div, final = p
        up_end = pct * total - 1
        initial, minimum = a / div, a / div / final
        rise = initial + (a - initial) * (1 - np.cos(np.pi * np.clip(x / up_end, 0, 1))) / 2
        progress = np.clip((x - up_end) / max(total - 1 - up_end, 1.0), 0, 1)
        fall = minimum + (a - minimum) * (1 + np.cos(np.pi * progress)) / 2
        return np.where(x <= up_end, rise, fall)
    start_div = max(1.0 / max(y[0], 1e-6), 1.0)
    solved = _solve(model, x, y, [[1, span, max(x[top] / span, 0.05), start_div, 1e4],
                                  [1, span, 0.3, 25, 1e4]],
                    [0, 10, 0.01, 1, 1], [2, span * 20, 0.99, 1e5, 1e8])
    if solved is None:
        return None
    (a, total, pct, div, final), error = solved
    spec = ScheduleSpec("OneCycleLR", {"max_lr": float(f"{a * peak:.6g}"), "total_steps": int(round(total)),
                                       "pct_start": float(f"{pct:.4g}"), "div_factor": float(f"{div:.6g}"),
                                       "final_div_factor": float(f"{final:.6g}")})
    return Fit("one_cycle", spec, a * peak / div, 5, error, int(round(total)))


_FITTERS = (_constant, _exponential, _piecewise, _cosine, _warmup_then("cosine"), _warmup_then("linear"),
            _linear_decay, _polynomial, _inverse_sqrt, _one_cycle)
