"""Spike detection shared by the numerics checks: a value far above its own recent level."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forensics.rolling import rolling_median

WINDOW = 50  # the running median looks back over this many earlier values


@dataclass(frozen=True)
class Spike:
    """The first value that rose `ratio` times above the running median `baseline`."""

    index: int
    ratio: float
    baseline: float


def running_median(values: np.ndarray) -> np.ndarray:
    """Median of the WINDOW values before each position (NaN until 10 finite values exist)."""
    medians = rolling_median(values, WINDOW, min_periods=10)
    return np.concatenate(([np.nan], medians[:-1])) if len(medians) else medians


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
    """A value that left its usual band (`start`, `ratio` x the usual level `baseline`) and the
    sustained climb after it: the level (median of LEVEL_WINDOW values) reached `level` at
    `confirmed`, `level / floor` times the lowest level before it."""

    start: int
    ratio: float
    baseline: float
    confirmed: int
    level: float
    floor: float


LEVEL_WINDOW = 10  # a climb is judged by the median of this many values, so one spike is not a level


def trailing_level(values: np.ndarray) -> np.ndarray:
    """Median of the LEVEL_WINDOW values up to each position (non-finite values left out)."""
    return rolling_median(values, LEVEL_WINDOW, min_periods=LEVEL_WINDOW // 2)


TYPICAL_HISTORY_SHARE = 0.1  # the usual level needs a tenth of the run (and 10 values) behind it


def typical_level(values: np.ndarray) -> np.ndarray:
    """Median of every finite value before each position: the run's usual level so far, which a
    climb moves far more slowly than a 50-value running median. NaN until a tenth of the run (at
    least 10 values) is behind it, so the grad norm's healthy rise from a small initial value in the
    first steps is judged against the level it settles at, not against its first few values."""
    finite = np.where(np.isfinite(values), values, np.nan)
    history = max(10, int(len(values) * TYPICAL_HISTORY_SHARE))
    if not len(values):
        return finite
    medians = rolling_median(finite, len(values), min_periods=history)  # a window of the whole run: expanding
    return np.concatenate(([np.nan], medians[:-1]))


def first_climb(values: np.ndarray, start_factor: float, growth: float, over_typical: float = 10.0) -> Climb | None:
    """The first sustained climb: the level (median of LEVEL_WINDOW values) rose to `growth` x the
    lowest level before it and to `over_typical` x the median of everything logged before it.

    Catches explosions that grow steadily (clipped gradients, an LR growing past stability), whose
    single values never jump far above a running median that climbs with them. Both references
    lag the climb by construction (a minimum and a whole-run median), so how far the level got
    decides, not how fast a moving baseline caught up with it; a norm that only comes back from a
    dip to its usual level fails the second test. The climb starts at the first value after the
    lowest level that is `start_factor` x the usual level of that time.
    """
    level = trailing_level(values)
    typical = typical_level(values)
    floor = pd.Series(level).cummin().shift(LEVEL_WINDOW).to_numpy()  # lowest level a window or more before
    with np.errstate(invalid="ignore"):
        confirmed = np.flatnonzero(np.isfinite(level) & np.isfinite(floor) & np.isfinite(typical) & (floor > 0)
                                   & (level >= growth * floor) & (level >= over_typical * typical))
    if not len(confirmed):
        return None
    at = int(confirmed[0])
    base = float(floor[at])
    lowest = int(np.flatnonzero(level[: at - LEVEL_WINDOW + 1] == base)[-1])
    usual = float(typical[lowest]) if np.isfinite(typical[lowest]) else base
    usual = max(usual, base)
    with np.errstate(invalid="ignore"):
        out = np.flatnonzero(np.isfinite(values[lowest:at + 1]) & (values[lowest:at + 1] > start_factor * usual))
    start = lowest + int(out[0]) if len(out) else at
    return Climb(start, float(values[start] / usual), usual, at, float(level[at]), base)
