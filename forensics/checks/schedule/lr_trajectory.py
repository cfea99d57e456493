"""The logged LR as one chronological trajectory: the input of the checks that need no stated schedule
(lr_collapse, lr_runaway), which judge the LR by its own shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forensics.checks.base import Evidence, NotApplicable
from forensics.checks.schedule.alignment import MIN_CONFIDENCE, intent_evidence
from forensics.checks.series import busiest_source, training_losses
from forensics.model import aliases
from forensics.model.run import Run

MIN_POINTS = 10
# A stated schedule "explains" the logged LR when their median gap is within this factor ...
EXPLAINED_FACTOR = 2.0
# ... over at least this share of the rows it was compared on.
EXPLAINED_COVERAGE = 0.8
# LRs below this fraction of the peak are all "zero" when a stated schedule is compared with the log.
COMPARISON_FLOOR = 1e-12


@dataclass(frozen=True, eq=False)
class LrTrajectory:
    """Group-0 LR rows of the busiest source in the order they were trained, one row per (segment, step)."""

    rows: pd.DataFrame
    values: np.ndarray
    # Optimizer steps trained up to each row: a restart or a rewind adds none, so the axis never runs back.
    progress: np.ndarray
    # Progress at the end of training: the last LR row, or later when the loss was still logged after it.
    end_progress: float
    # The last training-loss row logged after the last LR row in the same segment, if any.
    later_loss: pd.Series | None

    @property
    def span(self) -> float:
        """Optimizer steps covered by training (at least 1, so shares are always defined)."""
        return max(self.end_progress - float(self.progress[0]), 1.0)

    def share_from(self, index: int, until: int | None = None) -> float:
        """Share of training from row `index` to row `until` (or to the end of training)."""
        end = self.end_progress if until is None else float(self.progress[until])
        return (end - float(self.progress[index])) / self.span


def lr_trajectory(run: Run) -> LrTrajectory:
    """The run's LR trajectory, or NotApplicable when it has too few finite LR values."""
    lr = run.series(aliases.LR, group=0)
    if lr.empty:
        raise NotApplicable("needs an LR series; none found")
    lr = busiest_source(lr[np.isfinite(lr["value"].to_numpy())])
    lr = (lr.sort_values(["segment", "step"], kind="stable")
          .drop_duplicates(["segment", "step"], keep="last").reset_index(drop=True))
    if len(lr) < MIN_POINTS:
        raise NotApplicable(f"needs an LR series with at least {MIN_POINTS} finite values; found {len(lr)}")
    steps, segments = lr["step"].to_numpy(), lr["segment"].to_numpy()
    advance = np.diff(steps, prepend=steps[0]).astype(np.float64)
    advance[(advance < 0) | (np.diff(segments, prepend=segments[0]) != 0)] = 0.0
    progress = np.cumsum(advance)
    later_loss = _loss_after(run, lr.iloc[-1])
    end_progress = float(progress[-1])
    if later_loss is not None:
        end_progress += float(int(later_loss["step"]) - int(lr["step"].iloc[-1]))
    return LrTrajectory(lr, lr["value"].to_numpy(dtype=np.float64), progress, end_progress, later_loss)


def _loss_after(run: Run, last_lr: pd.Series) -> pd.Series | None:
    """The last finite training loss logged after the last LR value, in the same segment."""
    losses = training_losses(run)
    if losses.empty:
        return None
    later = losses[(losses["segment"] == last_lr["segment"]) & (losses["step"] > last_lr["step"])
                   & np.isfinite(losses["value"].to_numpy())]
    if later.empty:
        return None
    return later.loc[later["step"].idxmax()]


def stated_schedule_explains(run: Run, rows: pd.DataFrame) -> Evidence | None:
    """Evidence of the user's stated schedule (`--schedule`) when it expects the LR these rows show, else None.

    Only the user's own statement counts. An inferred schedule was fitted to this very LR and would
    explain anything; a checkpoint's saved scheduler or a config records what ran, and an
    `ExponentialLR(gamma=1.05)` in either is the bug itself, not an intent that excuses it.
    """
    intended = run.intended_schedule
    if intended is None or intended.source != "cli" or intended.confidence < MIN_CONFIDENCE:
        return None
    observed = rows["value"].to_numpy(dtype=np.float64)
    expected = intended.expected_at(rows["step"].to_numpy())
    known = np.isfinite(expected)
    if known.mean() < EXPLAINED_COVERAGE:
        return None
    floor = COMPARISON_FLOOR * max(float(np.nanmax(np.abs(expected[known]))), float(np.abs(observed).max()), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.abs(np.log10(np.maximum(observed[known], floor)) - np.log10(np.maximum(expected[known], floor)))
    if float(np.median(gap)) > np.log10(EXPLAINED_FACTOR):
        return None
    return intent_evidence(intended, note="the stated schedule expects this LR")
