"""Counters of the run that size a schedule: planned steps, epochs, steps per epoch, accumulation."""

from __future__ import annotations

from dataclasses import dataclass

from forensics.model import aliases
from forensics.model.run import Run

_ACCUMULATION_KEYS = ("gradient_accumulation_steps", "accumulate_grad_batches", "grad_accum", "accumulation_steps")
_WORLD_SIZE_KEYS = ("world_size", "_n_gpu", "n_gpu", "num_processes", "devices")


@dataclass(frozen=True)
class RunFacts:
    """What the run says about its own length, for sizing and naming a schedule's time scale."""

    last_step: int | None          # last optimizer step with a logged LR / metric
    planned_steps: int | None      # the longest the run got or was planned (checkpoints, logs)
    epochs: int | None
    steps_per_epoch: int | None    # from checkpoints holding both epoch and global step
    accumulation: int | None
    world_size: int | None
    first_lr: float | None         # first logged LR of param group 0


def run_facts(run: Run) -> RunFacts:
    """Collect the counters from the run model (never from files)."""
    step_range = run.step_range
    last_step = step_range[1] if step_range else None
    steps = [c.global_step for c in run.checkpoints if c.global_step is not None]
    planned = max([*steps, (last_step + 1) if last_step is not None else 0]) or None
    epochs = max((c.epoch for c in run.checkpoints if c.epoch is not None), default=None)
    ratios = {c.global_step // c.epoch for c in run.checkpoints
              if c.epoch and c.global_step and c.global_step % c.epoch == 0}
    steps_per_epoch = ratios.pop() if len(ratios) == 1 else None
    lr = run.series(aliases.LR, group=0)
    first_lr = None
    if len(lr):
        ordered = lr.sort_values("step", kind="stable")
        first_lr = float(ordered["value"].iloc[0])
    return RunFacts(last_step, planned, epochs or None, steps_per_epoch,
                    _config_int(run, _ACCUMULATION_KEYS), _config_int(run, _WORLD_SIZE_KEYS), first_lr)


def _config_int(run: Run, keys: tuple[str, ...]) -> int | None:
    for config in run.configs.values():
        for key in keys:
            value = config.get(key) if isinstance(config, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None
