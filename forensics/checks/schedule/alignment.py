"""The actual LR lined up against the intended schedule: the common input of the schedule checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forensics.checks.base import Evidence, NotApplicable
from forensics.checks.series import busiest_source
from forensics.model import aliases
from forensics.model.run import Run
from forensics.schedule import IntendedSchedule, ScheduleComparison, compare_schedule

MIN_POINTS = 10
# How sure the intended schedule must be before a check contradicts the run with it.
MIN_CONFIDENCE = 0.5


@dataclass(frozen=True, eq=False)
class Alignment:
    """LR rows of the run's first segment (one per step) and their comparison with the intent."""

    intended: IntendedSchedule
    lr: pd.DataFrame
    comparison: ScheduleComparison


def intended_or_skip(run: Run, declared_only: bool = False) -> IntendedSchedule:
    """The intended schedule when it is trustworthy enough, else NotApplicable saying why."""
    intended = run.intended_schedule
    if intended is None:
        raise NotApplicable("no intended schedule: none stated in checkpoints, configs or --schedule, "
                            "and none could be fitted to the logged LR")
    if declared_only and intended.source == "inferred":
        raise NotApplicable("the schedule was only inferred from the logged LR, so the LR cannot contradict it")
    if intended.confidence < MIN_CONFIDENCE:
        raise NotApplicable(f"the intended schedule ({intended.source}) has low confidence {intended.confidence:.2f}")
    return intended


def first_segment_lr(run: Run) -> pd.DataFrame:
    """Group-0 LR of the run's first segment from its busiest source: one finite row per step."""
    lr = run.series(aliases.LR, group=0)
    if lr.empty:
        raise NotApplicable("needs an LR series; none found")
    lr = lr[np.isfinite(lr["value"].to_numpy()) & (lr["segment"] == lr["segment"].min())]
    lr = busiest_source(lr).sort_values("step", kind="stable").drop_duplicates("step", keep="last")
    if len(lr) < MIN_POINTS:
        raise NotApplicable(f"needs at least {MIN_POINTS} LR points in the run's first segment; found {len(lr)}")
    return lr.reset_index(drop=True)


def align(run: Run, declared_only: bool = True) -> Alignment:
    """Compare the first segment's LR with the intended schedule (NotApplicable when either is missing)."""
    intended = intended_or_skip(run, declared_only)
    lr = first_segment_lr(run)
    comparison = compare_schedule(lr["step"].to_numpy(), lr["value"].to_numpy(), intended)
    return Alignment(intended, lr, comparison)


def intent_evidence(intended: IntendedSchedule, note: str = "the intended schedule") -> Evidence:
    """Where the intended schedule came from, as an evidence item."""
    source, _, key = intended.source_detail.partition(" key ")
    locator = f"ckpt key {key}" if key else intended.source
    if intended.source == "cli":
        source, locator = "(command line)", "--schedule"
    return Evidence(source, locator, intended.spec, note=f"{note} ({intended.source}, confidence "
                                                          f"{intended.confidence:.2f})")
