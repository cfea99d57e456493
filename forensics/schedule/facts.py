"""Counters of the run that size a schedule: planned steps, epochs, steps per epoch, accumulation.

What the run states (epochs, steps per epoch, accumulation, world size, horizon) comes from
`run.stated` (`forensics.model.stated`), the one place that reads every source's statements; what
the run did (last step, checkpoint counters, first LR) comes from the series and checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forensics.model import aliases
from forensics.model.run import Run
from forensics.model.stated import Fact

EPOCH_METRIC = "epoch"


@dataclass(frozen=True)
class RunFacts:
    """What the run says about its own length, for sizing and naming a schedule's time scale."""

    last_step: int | None          # last optimizer step with a logged LR / metric
    planned_steps: int | None      # the longest the run got or was planned (checkpoints, logs)
    epochs: int | None             # stated epochs, else the last epoch a checkpoint reached
    steps_per_epoch: int | None    # checkpoints holding epoch and global step, a stated count, or the epoch series
    accumulation: int | None
    world_size: int | None
    first_lr: float | None         # first logged LR of param group 0
    epochs_basis: str = ""         # where the epochs come from
    steps_per_epoch_basis: str = ""
    accumulation_fact: Fact | None = None
    world_size_fact: Fact | None = None


def run_facts(run: Run) -> RunFacts:
    """Collect the counters from the run model (never from files)."""
    stated = run.stated
    step_range = run.step_range
    last_step = step_range[1] if step_range else None
    steps = [c.global_step for c in run.checkpoints if c.global_step is not None]
    planned = max([*steps, (last_step + 1) if last_step is not None else 0]) or None
    epochs, epochs_basis = stated.int_value("epochs"), ""
    if epochs:
        epochs_basis = f"epochs={epochs} ({stated.get('epochs').where()})"
    else:
        epochs = max((c.epoch for c in run.checkpoints if c.epoch is not None), default=None) or None
        epochs_basis = f"checkpoints reach epoch {epochs}" if epochs else ""
    per_epoch, per_epoch_basis = _steps_per_epoch(run)
    lr = run.series(aliases.LR, group=0)
    first_lr = None
    if len(lr):
        first_lr = float(lr["value"].iloc[int(np.argmin(lr["step"].to_numpy()))])  # the first row at the first step
    accumulation, world = stated.get("gradient_accumulation_steps"), stated.get("world_size")
    return RunFacts(last_step, planned, epochs, per_epoch, stated.int_value("gradient_accumulation_steps"),
                    stated.int_value("world_size"), first_lr, epochs_basis, per_epoch_basis, accumulation, world)


def _steps_per_epoch(run: Run) -> tuple[int | None, str]:
    ratios = {c.global_step // c.epoch for c in run.checkpoints
              if c.epoch and c.global_step and c.global_step % c.epoch == 0}
    if len(ratios) == 1:
        return ratios.pop(), "checkpoints: global_step / epoch"
    stated = run.stated.get("steps_per_epoch")
    if stated is not None and run.stated.int_value("steps_per_epoch"):
        return int(stated.value), f"steps_per_epoch={stated.value} ({stated.where()})"
    return _from_epoch_series(run)


def _from_epoch_series(run: Run) -> tuple[int | None, str]:
    """The step spacing of a logged whole-number epoch counter's increments (Lightning, Keras log `epoch`)."""
    frame = run.series(EPOCH_METRIC)
    if len(frame) < 3:
        return None, ""
    frame = frame[frame["segment"] == frame["segment"].min()].sort_values("step", kind="stable")
    values, steps = frame["value"].to_numpy(), frame["step"].to_numpy()
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        return None, ""
    changes = np.flatnonzero(np.diff(values) == 1) + 1
    if len(changes) < 2:
        return None, ""
    spacing = np.diff(steps[changes])
    if not len(spacing) or spacing.min() < 2 or spacing.max() != spacing.min():
        return None, ""
    source = str(frame["source"].iloc[0])
    return int(spacing[0]), f"the logged epoch counter in {source} moves every {int(spacing[0])} steps"
