"""What the scheduler state saved in checkpoints says about the LR the run was meant to have."""

from __future__ import annotations

from dataclasses import dataclass

from forensics.ingest.checkpoint import Checkpoint, SchedulerState
from forensics.model.run import Run

# Schedules whose LR moves continuously over their horizon.
_ALWAYS_MOVING = {"OneCycleLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "LinearLR", "PolynomialLR",
                  "CyclicLR", "SequentialLR", "ChainedScheduler"}
# Schedules under which a flat LR is normal (until a plateau, or by definition).
_FLAT_ALLOWED = {"ReduceLROnPlateau", "ConstantLR"}


@dataclass(frozen=True)
class SavedScheduler:
    """A scheduler state together with the checkpoint it was saved in."""

    checkpoint: Checkpoint
    state: SchedulerState

    @property
    def locator(self) -> str:
        return f"ckpt key {self.state.key}"


def saved_schedulers(run: Run) -> list[SavedScheduler]:
    """Every scheduler state in every readable checkpoint, in checkpoint order."""
    return [SavedScheduler(checkpoint, state) for checkpoint in run.checkpoints for state in checkpoint.schedulers]


def expects_lr_change(state: SchedulerState) -> tuple[bool, str]:
    """Whether this scheduler should have moved the LR during the run, and why we think so."""
    name = state.class_name or ""
    params = state.params or {}
    if name in _FLAT_ALLOWED:
        return False, f"{name} keeps the LR flat by design until it acts"
    if name in _ALWAYS_MOVING:
        return True, f"{name} moves the LR at every step of its schedule"
    if name == "ExponentialLR":
        gamma = params.get("gamma")
        return gamma not in (None, 1, 1.0), f"ExponentialLR with gamma={gamma}"
    if name == "StepLR":
        step_size = params.get("step_size")
        crossed = step_size is not None and state.last_epoch is not None and state.last_epoch >= step_size
        return crossed, f"StepLR(step_size={step_size}) stepped {state.last_epoch} times"
    if name == "MultiStepLR":
        milestones = params.get("milestones") or {}
        first = min((int(m) for m in milestones), default=None)
        crossed = first is not None and state.last_epoch is not None and state.last_epoch >= first
        return crossed, f"MultiStepLR(first milestone {first}) stepped {state.last_epoch} times"
    if state.base_lrs and state.last_lrs and _differs(state.base_lrs[0], state.last_lrs[0]):
        return True, f"{name or 'the scheduler'} had itself moved the LR from {state.base_lrs[0]:.3g} to {state.last_lrs[0]:.3g}"
    return False, f"{name or 'an unidentified scheduler'} gives no sign that the LR should move"


def _differs(a: float, b: float, tolerance: float = 0.05) -> bool:
    return abs(a - b) > tolerance * max(abs(a), abs(b), 1e-30)
