"""loss_plateau: the training loss stopped improving for most of the run at a constant LR."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence, row_locator
from forensics.checks.series import busiest_source, training_loss_parts
from forensics.formatting import fmt_lr, fmt_percent, fmt_step, fmt_value
from forensics.model import aliases
from forensics.model.run import Run

MIN_POINTS = 50
MIN_SHARE = 0.5          # flat for at least this share of the run's steps
WINDOW_SHARE = 1 / 12    # the loss is judged by its trailing mean over this share of the logged values
BAND_OF_LEVEL = 0.01     # "at its final level" = within 1% of it ...
BAND_OF_DROP = 0.05      # ... or 5% of the early improvement ...
NOISE_Z = 3.0            # ... or 3 standard errors of a window mean, whichever is widest
LR_FLAT = 0.05
SMALL_DROP = 0.2         # without an LR series, only a run that barely improved counts as stuck


class LossPlateau(Check):
    """Training loss plateaued for most of the run while the LR stayed constant.

    **Symptom**: after an early drop the training loss, averaged over a window of 1/12 of the
    logged values, reaches its final level and makes no further net progress for at least half of
    the run, and the LR never changes during that stretch, so nothing could have moved it out of
    the plateau.

    **Bad run**: loss 5.83 -> 5.71 in the first 100 epochs, then 5.71 for 1,400 epochs at a constant
    LR of 0.02.

    **Healthy run**: the loss keeps improving, or flattens only while the LR anneals towards zero
    at the end of a schedule (convergence, not a plateau).

    **Fix**: add an LR schedule that decays (cosine, step) or `ReduceLROnPlateau(optimizer,
    patience=...)` stepped with the validation loss; check that the model has the capacity and the
    data the signal the loss asks for; stop runs whose loss has not moved for many epochs.
    """

    code = "loss_plateau"
    severity = "info"
    needs = ("training loss series",)

    def run(self, run: Run) -> list[Finding]:
        candidates = _losses_to_judge(run)
        if not candidates:
            raise NotApplicable(f"needs a finite training loss series with at least {MIN_POINTS} points"
                                + ("; a GAN's adversarial losses measure a balance, not progress"
                                   if any(aliases.is_adversarial_loss(name) for name in training_loss_parts(run)) else ""))
        findings = [self._plateau(run, loss) for loss in candidates]
        if any(finding is None for finding in findings):
            return []  # one part of the loss still improves: training does
        if len(findings) > 1:
            others = ", ".join(str(loss["tag"].iloc[0]) for loss in candidates[1:])
            findings[0] = replace(findings[0], message=findings[0].message + f" So did every other component ({others}).")
        return [findings[0]]

    def _plateau(self, run: Run, loss: pd.DataFrame) -> Finding | None:
        """The finding for one training loss series, or None when it kept improving or the LR moved."""
        plateau = find_plateau(loss["value"].to_numpy())
        if plateau is None:
            return None
        start, window = plateau.start, plateau.window
        steps = loss["step"].to_numpy()
        share = (steps[-1] - steps[start]) / max(steps[-1] - steps[0], 1)
        if share < MIN_SHARE:
            return None
        lr_note = _lr_during(run, int(steps[start]), int(steps[-1]))
        if lr_note is None:
            return None
        if lr_note == "unknown" and plateau.drop > SMALL_DROP * abs(float(loss["value"].iloc[:window].mean())):
            return None
        start_row, end_row = loss.iloc[start], loss.iloc[-1]
        middle = start + (len(loss) - start) // 2
        message = (f"The mean of {start_row['tag']} over {window} logged values fell to {fmt_value(plateau.reached)} "
                   f"by step {fmt_step(int(steps[start]))}, within {fmt_value(plateau.band)} of its final level "
                   f"{fmt_value(plateau.level)} (the mean of the last {window}), and made no net progress after: "
                   f"it averaged {fmt_value(plateau.first_half)} over steps {fmt_step(int(steps[start]))}-"
                   f"{fmt_step(int(steps[middle - 1]))} and {fmt_value(plateau.second_half)} over steps "
                   f"{fmt_step(int(steps[middle]))}-{fmt_step(int(steps[-1]))} ({fmt_percent(share)} of the run)"
                   + (f", at a constant LR of {lr_note}." if lr_note != "unknown" else ", with no LR logged."))
        evidence = [row_evidence(run, loss.iloc[0], note="first training loss"),
                    _mean_evidence(run, loss, start - window + 1, start + 1, f"at most {fmt_value(plateau.level + plateau.band)}",
                                   "mean over the window ending where the plateau starts"),
                    _mean_evidence(run, loss, len(loss) - window, len(loss), None, "final level: mean of the last window"),
                    _mean_evidence(run, loss, start, middle, f"{fmt_value(plateau.second_half)} ±{fmt_value(plateau.band)}",
                                   "first half of the plateau"),
                    _mean_evidence(run, loss, middle, len(loss), None, "second half of the plateau"),
                    row_evidence(run, end_row, note="last training loss")]
        return self.finding(step=int(steps[start]), end_step=int(steps[-1]), message=message,
                            fix=self.documentation()["Fix"], evidence=evidence, confidence=0.6)


@dataclass(frozen=True)
class Plateau:
    """Where the windowed loss mean reached its final level, and the numbers that show it stayed."""

    start: int          # index of the first window mean within `band` above `level`
    window: int         # values per window mean
    reached: float      # that window mean
    level: float        # mean of the last window
    band: float
    drop: float         # first window mean minus `level`
    first_half: float   # means of the plateau's two halves
    second_half: float


def find_plateau(values: np.ndarray) -> Plateau | None:
    """The final plateau of a loss series, or None.

    It starts at the first index whose trailing window mean is within the band above the final
    level, and must then show no net progress (its halves' means differ by at most the band). The
    band widens with the noise of a window mean, so a noisy loss is judged by its average, not by
    single batches.
    """
    window = max(5, int(len(values) * WINDOW_SHARE))
    trailing = pd.Series(values).rolling(window, min_periods=window).mean().to_numpy()
    level = float(np.mean(values[-window:]))
    steps_apart = np.diff(values)
    noise = 1.4826 * float(np.median(np.abs(steps_apart - np.median(steps_apart)))) / np.sqrt(2)
    drop = max(float(trailing[window - 1]) - level, 0.0)
    band = max(BAND_OF_LEVEL * abs(level), BAND_OF_DROP * drop, NOISE_Z * noise / np.sqrt(window))
    arrived = np.flatnonzero(trailing <= level + band)
    if not len(arrived):
        return None
    start = int(arrived[0])
    middle = start + (len(values) - start) // 2
    if middle - start < window:
        return None
    first_half, second_half = float(np.mean(values[start:middle])), float(np.mean(values[middle:]))
    if abs(first_half - second_half) > band:
        return None
    return Plateau(start, window, float(trailing[start]), level, band, drop, first_half, second_half)


def _losses_to_judge(run: Run) -> list[pd.DataFrame]:
    """The canonical training loss, or else every component that is not adversarial (YOLO's box, obj
    and cls losses plateau together or training still progresses), each finite, from its busiest
    source, in step order, with at least MIN_POINTS values."""
    parts = training_loss_parts(run)
    names = [aliases.LOSS] if aliases.LOSS in parts else [name for name in parts if not aliases.is_adversarial_loss(name)]
    judged = []
    for name in names:
        loss = run.series(name, group=0)
        loss = loss[np.isfinite(loss["value"].to_numpy())]
        loss = busiest_source(loss).sort_values(["segment", "step"], kind="stable").reset_index(drop=True)
        if len(loss) >= MIN_POINTS:
            judged.append(loss)
    return judged


def _mean_evidence(run: Run, loss: pd.DataFrame, first: int, stop: int, expected: str | None, note: str) -> Evidence:
    """The mean of rows first..stop-1 as one evidence item, located by its first and last rows."""
    rows = loss.iloc[first:stop]
    locator = f"mean of {len(rows)} values: {row_locator(run, rows.iloc[0])} .. {row_locator(run, rows.iloc[-1])}"
    return Evidence(str(rows["source"].iloc[0]), locator, float(rows["value"].mean()), expected=expected, note=note)


def _lr_during(run: Run, first: int, last: int) -> str | None:
    """The constant LR over [first, last] as text, "unknown" without an LR series, None if it moved."""
    lr = run.series(aliases.LR, group=0)
    lr = lr[(lr["step"] >= first) & (lr["step"] <= last) & np.isfinite(lr["value"].to_numpy())]
    if lr.empty:
        return "unknown"
    low, high = float(lr["value"].min()), float(lr["value"].max())
    return fmt_lr(high) if high <= low * (1 + LR_FLAT) else None
