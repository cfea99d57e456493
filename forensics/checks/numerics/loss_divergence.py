"""loss_divergence: the training loss rises for a sustained stretch and ends far above its minimum, never NaN."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence, row_locator
from forensics.checks.series import busiest_source, training_losses
from forensics.formatting import fmt_percent, fmt_step, fmt_value
from forensics.model.run import Run
from forensics.rolling import rolling_median

MIN_POINTS = 20
# A level is the median of this share of a stretch's values (at least LEVEL_MIN_POINTS): the loss of
# one batch is noise, the median of a window is where training is.
LEVEL_SHARE = 0.05
LEVEL_MIN_POINTS = 5
# Diverged: the final level is this many times the lowest level, and above the starting level or still
# rising at the end (STILL_RISING x the level halfway through the rise) ...
RISE = 10.0
STILL_RISING = 1.5
# ... or this many times the lowest level whatever the start (the model learned, then lost it all).
FAR_RISE = 100.0
# The rise lasts at least this share of the stretch's steps: a late spike is not a divergence.
MIN_RISE_SHARE = 0.1
# The onset: the first level after the lowest one that is this many times it.
ONSET_RISE = 2.0


@dataclass(frozen=True)
class Divergence:
    """One loss series in one process lifetime that rose far above its minimum."""

    rows: pd.DataFrame   # the series' rows in step order
    levels: np.ndarray
    lowest: int          # row of the lowest level
    onset: int           # first row after it whose level is ONSET_RISE x the lowest
    window: int          # values per level

    @property
    def rise(self) -> float:
        return float(self.levels[-1] / self.levels[self.lowest])


class LossDivergence(Check):
    """Training loss diverged: it rose for a sustained stretch and ended far above its minimum.

    **Symptom**: the level of the training loss (the median of a window of values) ends 10x or more
    above its lowest level and either above where it started or still rising at the end, or 100x
    above its lowest level, after a rise
    that lasted at least a tenth of the run, while every value stays finite (a loss that turns NaN
    is `nan_onset`). Needs no stated schedule; each loss component (`loss`, `gen_loss`,
    `box_loss`, ...) and each process lifetime is judged on its own.

    **Bad run**: ExponentialLR(gamma=1.05) with `clip_grad_norm_(1.0)`: the loss falls from 2.3 to
    0.03 by step 60, then climbs to 8,000 by step 250; clipping keeps it finite, so nothing stops.

    **Healthy run**: a noisy loss that trends down, a loss that rises a little during LR warmup and
    then falls, GAN losses that oscillate, overfitting (only the validation loss rises).

    **Fix**: lower the LR (or its peak) and check the scheduler for an LR that grows, restart from
    the checkpoint saved near the loss minimum, and watch the loss level rather than relying on
    gradient clipping, which keeps a diverging run finite but does not make it learn.
    """

    code = "loss_divergence"
    severity = "error"
    needs = ("training loss series",)

    def run(self, run: Run) -> list[Finding]:
        losses = training_losses(run)
        if losses.empty:
            raise NotApplicable("needs a training loss series; none found")
        judged, divergences = 0, []
        for _, series in losses.groupby(["tag", "segment"], observed=True, sort=False):
            rows = busiest_source(series).sort_values("step", kind="stable").drop_duplicates("step", keep="last")
            values = rows["value"].to_numpy(dtype=np.float64)
            if len(values) < MIN_POINTS or not np.isfinite(values).all() or (values <= 0).any():
                continue  # too short; non-finite is nan_onset's; a ratio means nothing for losses <= 0
            judged += 1
            divergence = _divergence(rows.reset_index(drop=True))
            if divergence is not None:
                divergences.append(divergence)
        if not judged:
            raise NotApplicable(f"needs a positive, finite training loss series with at least {MIN_POINTS} values "
                                "in one process lifetime; none found")
        if not divergences:
            return []
        divergences.sort(key=lambda d: -d.rise)
        return [self._finding(run, divergences[0], divergences[1:])]

    def _finding(self, run: Run, divergence: Divergence, others: list[Divergence]) -> Finding:
        rows, levels = divergence.rows, divergence.levels
        lowest, onset, last = rows.iloc[divergence.lowest], rows.iloc[divergence.onset], rows.iloc[-1]
        low, start, end = float(levels[divergence.lowest]), float(levels[0]), float(levels[-1])
        share = (int(last["step"]) - int(onset["step"])) / max(int(last["step"]) - int(rows["step"].iloc[0]), 1)
        message = (f"{lowest['tag']} fell from a level of {fmt_value(start)} to {fmt_value(low)} around step "
                   f"{fmt_step(int(lowest['step']))}, then rose for the last {fmt_percent(share)} of the run "
                   f"(twice its lowest level by step {fmt_step(int(onset['step']))}) and ended at a level of "
                   f"{fmt_value(end)}, {divergence.rise:,.0f}x its minimum"
                   + (f" and {end / start:,.1f}x where it started" if end >= start else "")
                   + "; every value stayed finite, so nothing stopped the run.")
        if others:
            message += " Also diverged: " + ", ".join(
                f"{other.rows['tag'].iloc[0]} ({other.rise:,.0f}x its minimum)" for other in others) + "."
        evidence = [
            _level_evidence(run, divergence, divergence.lowest, "lowest level of the loss"),
            row_evidence(run, onset, expected=f"about {fmt_value(low)}",
                         note=f"first level {ONSET_RISE:g}x the lowest: the rise begins"),
            _level_evidence(run, divergence, len(rows) - 1, f"final level, {divergence.rise:,.0f}x the lowest",
                            expected=f"about {fmt_value(low)}"),
            row_evidence(run, rows.loc[rows["value"].idxmax()], note="highest value logged"),
        ]
        return self.finding(step=int(lowest["step"]), end_step=int(last["step"]), message=message,
                            fix=self.documentation()["Fix"], evidence=evidence, confidence=0.85)


def _level_evidence(run: Run, divergence: Divergence, index: int, note: str, expected=None) -> Evidence:
    """A level as evidence: the median of the window of values around one row."""
    half = divergence.window // 2
    window = divergence.rows.iloc[max(0, index - half):index + half + 1]
    return Evidence(str(window["source"].iloc[0]), f"median of {len(window)} values: "
                    f"{row_locator(run, window.iloc[0])} .. {row_locator(run, window.iloc[-1])}",
                    float(divergence.levels[index]), expected=expected, note=note)


def _divergence(rows: pd.DataFrame) -> Divergence | None:
    """The series' divergence, if its level ends far above its minimum after a sustained rise."""
    values = rows["value"].to_numpy(dtype=np.float64)
    window = max(LEVEL_MIN_POINTS, int(round(LEVEL_SHARE * len(values)))) | 1
    levels = rolling_median(values, window, min_periods=window // 2 + 1, center=True)
    lowest = int(np.argmin(levels))
    low, start, end = float(levels[lowest]), float(levels[0]), float(levels[-1])
    if end < RISE * low:
        return None
    onset = lowest + int(np.flatnonzero(levels[lowest:] >= ONSET_RISE * low)[0])
    steps = rows["step"].to_numpy()
    halfway = float(levels[int(np.searchsorted(steps, (steps[onset] + steps[-1]) / 2))])
    if not (end >= FAR_RISE * low or end >= start or end >= STILL_RISING * halfway):
        return None
    if (steps[-1] - steps[onset]) < MIN_RISE_SHARE * max(steps[-1] - steps[0], 1):
        return None
    return Divergence(rows, levels, lowest, onset, window)
