"""Spike detection shared by the numerics checks: a value far above its own recent level."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

WINDOW = 50  # the running median looks back over this many earlier values


@dataclass(frozen=True)
class Spike:
    """The first value that rose `ratio` times above the running median `baseline`."""

    index: int
    ratio: float
    baseline: float


def running_median(values: np.ndarray) -> np.ndarray:
    """Median of the WINDOW values before each position (NaN until 10 finite values exist)."""
    finite = np.where(np.isfinite(values), values, np.nan)
    return pd.Series(finite).rolling(WINDOW, min_periods=10).median().shift(1).to_numpy()


def first_spike(values: np.ndarray, factor: float, once_factor: float | None = None,
                sustained: int = 1) -> Spike | None:
    """The first value above `factor` x the running median for `sustained` values in a row
    (non-finite values count as above), or above `once_factor` x even once."""
    baseline = running_median(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(baseline > 0, values / baseline, np.nan)
    above = (ratio > factor) | (~np.isfinite(values) & np.isfinite(baseline))
    for index in np.flatnonzero(above):
        run_length = 0
        while index + run_length < len(values) and above[index + run_length]:
            run_length += 1
        huge = once_factor is not None and np.isfinite(ratio[index]) and ratio[index] > once_factor
        if huge or run_length >= sustained:
            shown = float(ratio[index]) if np.isfinite(ratio[index]) else float("inf")
            return Spike(int(index), shown, float(baseline[index]))
    return None


@dataclass(frozen=True)
class Climb:
    """A value that left its usual band (`start`, `ratio` x the running median `baseline`) and the
    sustained climb after it: the level (median of LEVEL_WINDOW values) reached `level` at `confirmed`."""

    start: int
    ratio: float
    baseline: float
    confirmed: int
    level: float


LEVEL_WINDOW = 10  # a climb is judged by the median of this many values, so one spike is not a level
SETTLE = 10        # this many values in a row back near the baseline end a climb


def trailing_level(values: np.ndarray) -> np.ndarray:
    """Median of the LEVEL_WINDOW values up to each position (non-finite values left out)."""
    finite = np.where(np.isfinite(values), values, np.nan)
    return pd.Series(finite).rolling(LEVEL_WINDOW, min_periods=LEVEL_WINDOW // 2).median().to_numpy()


def first_climb(values: np.ndarray, start_factor: float, growth: float, calm_factor: float = 3.0) -> Climb | None:
    """The first sustained climb: a value above `start_factor` x the running median after which the
    level rises to `growth` x that median before SETTLE values in a row are back below `calm_factor` x it.

    Catches explosions that grow steadily (clipped gradients, an LR growing past stability), whose
    single values never jump far above a running median that climbs with them.
    """
    baseline = running_median(values)
    level = trailing_level(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(baseline > 0, values / baseline, np.nan)
    candidates = np.flatnonzero(np.isfinite(ratio) & (ratio > start_factor))
    scanned_to = -1
    for start in candidates:
        if start <= scanned_to:
            continue  # inside a climb already examined: it belongs to that episode
        base = float(baseline[start])
        calm_run = 0
        index = start
        for index in range(start, len(values)):
            if np.isfinite(level[index]) and level[index] >= growth * base:
                return Climb(int(start), float(ratio[start]), base, int(index), float(level[index]))
            calm_run = calm_run + 1 if np.isfinite(values[index]) and values[index] < calm_factor * base else 0
            if calm_run >= SETTLE:
                break
        scanned_to = index
    return None
