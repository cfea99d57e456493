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
