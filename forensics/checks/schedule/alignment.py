"""The actual LR lined up against the intended schedule: the common input of the schedule checks.

Step conventions. The intended schedule is indexed by 0-based optimizer step: `expected_at(s)` is
the LR optimizer step s used. Most loggers attach that LR to step s. HF Trainer attaches the LR to
its `global_step`, the number of optimizer steps done, and which LR it reads changed between major
versions (measured with a real `transformers.Trainer`, see tests/test_stated_hf.py):

- transformers 5.x logs at `step: s` the LR that 0-based step s-1 used (the LR read before
  `scheduler.step()`): step s in the log is optimizer step s-1;
- transformers 4.x logged `get_last_lr()` after `scheduler.step()`: the LR of 0-based step s, the
  next step's.

For LR rows an HF writer logged (trainer_state.json log_history, HF's printed dicts, its TensorBoard
`train/learning_rate`), `align` lines the rows up both ways and keeps the convention that fits:
`Alignment.shift` is what was subtracted from the logged step (1 for 5.x, 0 otherwise).
"""

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
    lr: pd.DataFrame               # rows as logged (their `step` is the logged step)
    comparison: ScheduleComparison  # at optimizer steps: logged step - shift
    shift: int = 0
    shift_basis: str = ""

    def row_at(self, index: int) -> pd.Series:
        """The logged row behind `comparison.steps[index]`."""
        step = int(self.comparison.steps[index]) + self.shift
        return self.lr[self.lr["step"] == step].iloc[0]


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
    steps, values = lr["step"].to_numpy(), lr["value"].to_numpy()
    comparison = compare_schedule(steps, values, intended)
    if not logs_steps_done(run, lr):
        return Alignment(intended, lr, comparison)
    done = compare_schedule(steps - 1, values, intended)
    if done.residual <= comparison.residual:
        return Alignment(intended, lr, done, 1, "HF logs the LR of optimizer step s-1 at step s (transformers 5.x)")
    return Alignment(intended, lr, comparison, 0, "HF logs the next step's LR at step s (transformers 4.x)")


def logs_steps_done(run: Run, lr: pd.DataFrame) -> bool:
    """Whether these LR rows were logged at a count of optimizer steps done (HF's global_step), not a
    0-based step: trainer_state.json log_history, HF Trainer's printed dicts, HF's TensorBoard tags."""
    if lr.empty:
        return False
    source = run.source(str(lr["source"].iloc[0]))
    if source is None:
        return False
    if source.kind == "trainer_state":
        return True
    formats = (source.coverage or {}).get("formats") or {}
    if formats and max(formats, key=formats.get) == "hf_trainer_dict":
        return True
    return source.kind == "tensorboard" and str(lr["tag"].iloc[0]) == "train/learning_rate"


def steps_done(run: Run, lr: pd.DataFrame) -> int | None:
    """Optimizer steps done by the last LR row: its step, or step + 1 for a 0-based logger."""
    if lr.empty:
        return None
    last = int(lr["step"].max())
    return last if logs_steps_done(run, lr) else last + 1


def intent_evidence(intended: IntendedSchedule, note: str = "the intended schedule") -> Evidence:
    """Where the intended schedule came from, as an evidence item."""
    source, _, key = intended.source_detail.partition(" key ")
    locator = f"ckpt key {key}" if key else intended.source
    if intended.source_path:
        source, locator = intended.source_path, intended.source_locator
    if intended.source == "cli":
        source, locator = "(command line)", "--schedule"
    return Evidence(source, locator, intended.spec, note=f"{note} ({intended.source}, confidence "
                                                          f"{intended.confidence:.2f})")
