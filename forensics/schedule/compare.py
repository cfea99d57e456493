"""Line the actual LR up against the intended schedule, for the schedule checks.

Besides the step-by-step relative error, two one-number explanations are fitted, because most
schedule bugs are one of them:

- a time-scale factor k, actual(step) ≈ expected(step * k): k = 1/steps_per_epoch when a per-step
  schedule was stepped once per epoch, k = accumulation steps (or world size) when the schedule was
  sized in micro-batches or per rank;
- a step offset d, actual(step) ≈ expected(step + d): d = +1 when the scheduler was stepped before
  the first optimizer step (or the logger reads the LR after `scheduler.step()`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forensics.schedule.infer import clean_series
from forensics.schedule.intended import IntendedSchedule

MAX_FIT_POINTS = 2000
MAX_OFFSET = 50
MIN_COVERAGE = 0.5  # a k or d that leaves most steps outside the replay does not count


@dataclass(frozen=True, eq=False)
class ScheduleComparison:
    """Actual vs expected LR at the actual's steps, and the best time-scale and offset explanations."""

    steps: np.ndarray
    actual: np.ndarray
    expected: np.ndarray             # NaN where the intended schedule has no value (past its end)
    relative_error: np.ndarray       # |actual - expected| / |expected|
    max_relative_error: float
    residual: float                  # RMS of (actual - expected) / peak expected, over covered steps
    time_scale: float                # k in actual(step) ≈ expected(step * k)
    time_scale_residual: float
    time_scale_names: tuple[str, ...]  # what k matches: "steps per epoch (200)", "accumulation steps (4)", ...
    offset: int                      # d in actual(step) ≈ expected(step + d)
    offset_residual: float


def compare_schedule(steps, values, intended: IntendedSchedule, accumulation: int | None = None,
                     world_size: int | None = None) -> ScheduleComparison:
    """Compare a logged LR series (steps, values) with the intended schedule's group-0 LR."""
    steps, actual = clean_series(steps, values)
    expected = intended.expected_at(steps)
    tiny = 1e-12 * (np.nanmax(np.abs(expected)) if np.any(np.isfinite(expected)) else 1.0)
    relative = np.abs(actual - expected) / np.maximum(np.abs(expected), tiny)
    covered = np.isfinite(relative)
    sample = _sample(len(steps))
    fit_steps, fit_actual = steps[sample].astype(np.float64), actual[sample]
    scale, scale_residual = _fit_scale(fit_steps, fit_actual, intended)
    offset, offset_residual = _fit_offset(fit_steps, fit_actual, intended)
    return ScheduleComparison(
        steps=steps, actual=actual, expected=expected, relative_error=relative,
        max_relative_error=float(np.max(relative[covered])) if covered.any() else float("nan"),
        residual=_residual(actual, expected),
        time_scale=scale, time_scale_residual=scale_residual,
        time_scale_names=name_time_scale(scale, intended.steps_per_epoch, accumulation, world_size),
        offset=offset, offset_residual=offset_residual)


def name_time_scale(scale: float, steps_per_epoch: int | None, accumulation: int | None = None,
                    world_size: int | None = None, tolerance: float = 0.02) -> tuple[str, ...]:
    """The run counters a time-scale factor k matches (k < 1: the schedule ran slower than intended)."""
    if not np.isfinite(scale) or scale <= 0 or abs(scale - 1) <= tolerance:
        return ()
    factor = 1 / scale if scale < 1 else scale
    slower = scale < 1
    counters = {"steps per epoch": steps_per_epoch, "gradient accumulation steps": accumulation,
                "world size": world_size}
    if accumulation and world_size:
        counters["accumulation steps x world size"] = accumulation * world_size
    names = [f"{name} ({value})" for name, value in counters.items()
             if value and value > 1 and abs(factor - value) <= tolerance * value]
    direction = "schedule advanced {:.4g}x slower than intended" if slower else \
        "schedule advanced {:.4g}x faster than intended"
    return tuple(names) + (direction.format(factor),)


def _sample(count: int) -> np.ndarray:
    if count <= MAX_FIT_POINTS:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, MAX_FIT_POINTS).astype(int))


def _residual(actual: np.ndarray, expected: np.ndarray) -> float:
    valid = np.isfinite(expected) & np.isfinite(actual)
    if valid.sum() < max(2, MIN_COVERAGE * len(actual)):
        return float("inf")
    peak = float(np.max(np.abs(expected[valid]))) or 1.0
    return float(np.sqrt(np.mean(((actual[valid] - expected[valid]) / peak) ** 2)))


def _fit_scale(steps: np.ndarray, actual: np.ndarray, intended: IntendedSchedule) -> tuple[float, float]:
    """Best k on a grid holding every 1/n and n up to 1024 (exact epoch and accumulation ratios) and a log grid."""
    whole = np.arange(1, 1025, dtype=np.float64)
    grid = np.unique(np.concatenate([1 / whole, whole[:256], np.geomspace(1e-3, 1e3, 601)]))
    best = (1.0, _residual(actual, intended.expected_at(steps)))
    for scale in grid:
        residual = _residual(actual, intended.expected_at(steps * scale))
        if residual < best[1] - 1e-12:
            best = (float(scale), residual)
    return best


def _fit_offset(steps: np.ndarray, actual: np.ndarray, intended: IntendedSchedule) -> tuple[int, float]:
    best = (0, _residual(actual, intended.expected_at(steps)))
    for offset in range(-MAX_OFFSET, MAX_OFFSET + 1):
        residual = _residual(actual, intended.expected_at(steps + offset))
        if residual < best[1] - 1e-12:
            best = (offset, residual)
    return best
