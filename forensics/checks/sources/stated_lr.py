"""The LR a run states (config, hparams, training arguments) against the LR its optimizer used.

`lr_mismatch` compares the logged LR of two files; a config is a source too. A script that
hard-codes `Adam(lr=1e-3)` while its hparams say `lr: 0.01` trains at a tenth of what everyone
reading the config believes. The comparison is by factors, never by last bits: the logged peak
against the peak the stated LR gives over the logged steps (the schedule's own shape when one is
stated, else the stated LR itself when the logged LR never moves), a disagreement of 2x or more,
and not a factor a stated scaling rule explains (world size, batch size / 256, accumulation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forensics.checks.schedule.alignment import MIN_CONFIDENCE
from forensics.checks.series import busiest_source
from forensics.model import aliases
from forensics.model.run import Run
from forensics.model.stated import Fact

FACTOR = 2.0             # stated and used differ by at least this factor
FLAT = 1.05              # an LR within 5% of itself everywhere never moved
PAST_PEAK = 0.9          # a scheduled LR that ends below this share of its peak has shown its peak
EXPLAINED = 0.02         # a ratio within 2% of a stated scaling factor is that scaling rule
STATED_ORIGINS = ("config", "checkpoint hyper_parameters", "training_args", "checkpoint")


@dataclass(frozen=True)
class StatedLrGap:
    """The stated LR, the peak it implies over the logged steps, and the logged rows it disagrees with."""

    fact: Fact
    expected_peak: float
    first_row: pd.Series
    peak_row: pd.Series
    basis: str           # how expected_peak was obtained


def stated_lr_gap(run: Run) -> StatedLrGap | None:
    """The disagreement between the stated LR and the one logged, or None when they agree or
    nothing can be compared."""
    fact = next((f for f in run.stated.all("base_lr") if f.origin in STATED_ORIGINS
                 and isinstance(f.value, (int, float)) and not isinstance(f.value, bool) and f.value > 0), None)
    lr = run.series(aliases.LR)
    lr = lr[np.isfinite(lr["value"].to_numpy()) & (lr["value"].to_numpy() > 0)]
    if fact is None or len(lr) < 3:
        return None
    stated = float(fact.value)
    gaps = []
    # Every param group must disagree: groups at their own LRs (a backbone at a tenth of the head's,
    # yolov5's bias group warming down from 0.1) are a recipe, and one group at the stated LR shows
    # the optimizer was built from it.
    for _, group_rows in lr.groupby("group", sort=True):
        rows = busiest_source(group_rows).sort_values("step", kind="stable")
        values = rows["value"].to_numpy()
        expected_peak, basis = _expected_peak(run, rows["step"].to_numpy(), stated, values)
        if expected_peak is None:
            return None
        peak_index = int(np.argmax(values))
        ratio = float(values[peak_index]) / expected_peak
        if 1 / FACTOR < ratio < FACTOR or _explained(run, ratio):
            return None
        gaps.append(StatedLrGap(fact, expected_peak, rows.iloc[0], rows.iloc[peak_index], basis))
    return gaps[0] if gaps else None


def _expected_peak(run: Run, steps: np.ndarray, stated: float, values: np.ndarray) -> tuple[float | None, str]:
    intended = run.intended_schedule
    if (intended is not None and intended.source not in ("inferred", "checkpoint")
            and intended.confidence >= MIN_CONFIDENCE and intended.base_lrs and intended.base_lrs[0] > 0):
        expected = intended.expected_at(steps) * (stated / intended.base_lrs[0])
        inside = np.isfinite(expected) & (expected > 0)
        if inside.sum() < 3:
            return None, ""
        # The logged LR must have reached its own peak and left it: one still rising at the end (a
        # warmup stepped per epoch) never showed the LR the optimizer was built with.
        if values[-1] > PAST_PEAK * values.max():
            return None, ""
        return float(expected[inside].max()), f"the peak {intended.spec} reaches over the logged steps"
    if values.max() <= FLAT * values.min():
        return stated, "the LR never moves, so it should be the stated LR"
    return None, ""


def _explained(run: Run, ratio: float) -> bool:
    """Whether a stated scaling rule gives this ratio: LR x world size, x batch / 256, x accumulation."""
    factors = []
    for name in ("world_size", "gradient_accumulation_steps"):
        value = run.stated.int_value(name)
        if value and value > 1:
            factors.append(float(value))
    for name in ("total_batch_size", "batch_size"):
        value = run.stated.int_value(name)
        if value:
            factors.append(value / 256)
    return any(abs(ratio * factor - 1) <= EXPLAINED or abs(ratio / factor - 1) <= EXPLAINED for factor in factors)
