"""Replay a schedule: the LR the real `torch.optim.lr_scheduler` classes give at each step.

The LR at optimizer step `s` (0-based) is the optimizer's LR after `s` scheduler steps, i.e. the LR
that step used, the value a loop logs when it reads `param_groups[i]["lr"]` before `scheduler.step()`.

Two ways to get it, same values: `forensics.schedule.closed_form` computes every step at once with
numpy, mirroring torch's own arithmetic (a million steps in tens of milliseconds); where it has no
mirror (nested composites, OneCycleLR or CyclicLR inside a composite, arguments torch refuses) the
spec is turned into the torch scheduler it names and stepped, about 3 µs per step. `Replay.method`
says which one ran. The step-by-step replay attaches the scheduler to a bare `Optimizer` holding
only param groups: a real `torch.optim.SGD` would import `torch._dynamo` (2 s) on construction.
torch is imported only when that replay runs.
Past `MAX_REPLAY_STEPS` the replay stops and says so (the schedule is not extrapolated).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from forensics.errors import ForensicsError
from forensics.schedule.closed_form import closed_form_lrs
from forensics.schedule.hf import hf_lambda, torch_equivalent
from forensics.schedule.spec import COMPOSITES, ScheduleSpec

if TYPE_CHECKING:
    import torch

MAX_REPLAY_STEPS = 5_000_000
# Arguments that only steer momentum; dropped for the replay (they never change the LR, and
# cycling momentum needs an optimizer that has it).
_MOMENTUM_ONLY = ("cycle_momentum", "base_momentum", "max_momentum")
CLOSED_FORM = "closed form (numpy, mirroring torch's arithmetic)"
STEPPED = "torch scheduler stepped once per scheduler step"


@dataclass(frozen=True)
class Replay:
    """Expected LR per param group at optimizer steps 0..len-1 (NaN where torch refused to step)."""

    lrs: np.ndarray          # shape (groups, steps)
    scheduler_steps: int     # how many times the scheduler was stepped
    notes: tuple[str, ...]   # e.g. "torch refused to step past total_steps=600"
    used: str                # the torch construction actually replayed (differs for HF names)
    method: str = STEPPED    # CLOSED_FORM or STEPPED: how the values were computed


def replay(spec: ScheduleSpec, base_lrs: list[float], optimizer_steps: int, interval: str = "step",
           steps_per_epoch: int | None = None) -> Replay:
    """Expected LR at each of `optimizer_steps` optimizer steps: closed form where one mirrors torch,
    else by stepping the real torch scheduler."""
    notes: list[str] = []
    if optimizer_steps > MAX_REPLAY_STEPS:
        notes.append(f"replayed the first {MAX_REPLAY_STEPS:,} of {optimizer_steps:,} steps "
                     f"(MAX_REPLAY_STEPS); later steps are NaN")
        optimizer_steps = MAX_REPLAY_STEPS
    per_epoch = interval == "epoch"
    spe = max(int(steps_per_epoch or 1), 1)
    scheduler_steps = math.ceil(optimizer_steps / spe) if per_epoch else optimizer_steps
    _check_learning_rates(base_lrs)
    closed = closed_form_lrs(spec, base_lrs, scheduler_steps)
    if closed is not None:
        values, method, used = closed.lrs, CLOSED_FORM, construction_text(spec)
        notes += closed.notes
    else:
        values, used = _stepped(spec, base_lrs, scheduler_steps, notes)
        method = STEPPED
    if per_epoch:
        values = np.repeat(values, spe, axis=1)[:, :optimizer_steps]
    return Replay(values, scheduler_steps, tuple(notes), used, method)


def stepped_replay(spec: ScheduleSpec, base_lrs: list[float], scheduler_steps: int) -> Replay:
    """The step-by-step torch replay alone (the reference the closed forms are tested and timed against)."""
    _check_learning_rates(base_lrs)
    notes: list[str] = []
    values, used = _stepped(spec, base_lrs, scheduler_steps, notes)
    return Replay(values, scheduler_steps, tuple(notes), used, STEPPED)


def construction_text(spec: ScheduleSpec) -> str:
    """Text of the torch construction `build_scheduler` makes for `spec` (an HF name becomes its torch
    equivalent or a LambdaLR)."""
    if spec.is_hf:
        equivalent = torch_equivalent(spec.class_name, spec.params)
        if equivalent is not None:
            return equivalent.text()
        return f"LambdaLR(transformers' {spec.class_name} lambda)"
    return spec.text()


def _stepped(spec: ScheduleSpec, base_lrs: list[float], scheduler_steps: int, notes: list[str]):
    optimizer = _throwaway_optimizer(base_lrs)
    with warnings.catch_warnings():
        # "lr_scheduler.step() before optimizer.step()" and deprecation chatter: not ours to show.
        warnings.simplefilter("ignore")
        scheduler, used = build_scheduler(spec, optimizer, base_lrs)
        values = _step(scheduler, optimizer, scheduler_steps, notes)
    return values, used


def _check_learning_rates(base_lrs: list[float]) -> None:
    """torch.optim.SGD's check on its default lr (the first group's), which the replay's optimizer used to make."""
    if base_lrs and base_lrs[0] < 0.0:
        raise ValueError(f"Invalid learning rate: {float(base_lrs[0])}")


def build_scheduler(spec: ScheduleSpec, optimizer: torch.optim.Optimizer, base_lrs: list[float]):
    """Construct the torch scheduler a spec names on `optimizer`; returns (scheduler, text of what was built)."""
    import torch.optim.lr_scheduler as lr_scheduler  # lazily: the closed forms need no torch

    if spec.is_hf:
        equivalent = torch_equivalent(spec.class_name, spec.params)
        if equivalent is not None:
            return build_scheduler(equivalent, optimizer, base_lrs)[0], equivalent.text()
        lambdas = [hf_lambda(spec.class_name, spec.params, lr) for lr in base_lrs]
        return lr_scheduler.LambdaLR(optimizer, lambdas), f"LambdaLR(transformers' {spec.class_name} lambda)"
    cls = getattr(lr_scheduler, spec.class_name)
    params = {k: v for k, v in spec.params.items() if k not in _MOMENTUM_ONLY}
    if spec.class_name in ("OneCycleLR", "CyclicLR"):
        params["cycle_momentum"] = False
    try:
        if spec.class_name in COMPOSITES:
            children = [build_scheduler(child, optimizer, base_lrs)[0] for child in spec.children]
            if spec.class_name == "ChainedScheduler":
                return cls(children, optimizer=optimizer, **params), spec.text()
            return cls(optimizer, children, **params), spec.text()
        return cls(optimizer, **params), spec.text()
    except (TypeError, ValueError) as error:
        raise ForensicsError(f"schedule {spec.text()}: torch refused it: {error}") from None


def _throwaway_optimizer(base_lrs: list[float]) -> torch.optim.Optimizer:
    groups = [float(lr) for lr in base_lrs] or [1.0]
    return _bare_optimizer_class()(groups)


@functools.cache
def _bare_optimizer_class():
    """An `Optimizer` with param groups and nothing else: schedulers read and write only
    `param_groups`, `defaults` and wrap `step`, and skipping `Optimizer.__init__` keeps
    `torch._dynamo` (imported by `add_param_group`) out of the process."""
    import torch

    class BareOptimizer(torch.optim.Optimizer):
        def __init__(self, lrs: list[float]) -> None:  # noqa: D107 - see the class docstring
            self.defaults = {"lr": lrs[0]}
            self.param_groups = [{"params": [], "lr": lr} for lr in lrs]
            self.state = {}

        def step(self, closure=None):  # noqa: D102 - nothing to optimise
            return None

    return BareOptimizer


def _step(scheduler, optimizer: torch.optim.Optimizer, count: int, notes: list[str]) -> np.ndarray:
    groups = optimizer.param_groups
    values = np.full((len(groups), count), np.nan)
    first = groups[0]
    row = values[0]
    for index in range(count):
        row[index] = first["lr"]
        for group_index in range(1, len(groups)):
            values[group_index, index] = groups[group_index]["lr"]
        if index == count - 1:
            break
        try:
            scheduler.step()
        except ValueError as error:  # OneCycleLR past total_steps: "Tried to step N times..."
            notes.append(f"torch stopped the schedule after {index + 1} steps: {error}")
            break
    return values
