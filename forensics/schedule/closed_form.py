"""The expected LR of a schedule spec computed with numpy, mirroring what torch's scheduler would give.

Stepping a real torch scheduler costs about 3 µs per step (3 s for a million steps); these
functions compute the same values for all steps at once. They mirror torch's arithmetic rather
than the textbook formula: the chainable classes as the sequence of in-place updates torch makes
(`closed_form_chainable`, `closed_form_ops`), the others from the epoch (`closed_form_direct`),
`SequentialLR` with torch's closed-form value at each milestone, `ChainedScheduler` as every
child's update in turn. `tests/test_schedule_closed_form.py` checks every class against a real
torch replay at every step (short horizons) and at sampled steps (long ones).

`closed_form_lrs` returns None when a spec has no proven mirror (a nested composite, OneCycleLR or
CyclicLR inside a composite, parameters torch refuses, a case where torch itself would raise):
the caller then steps the real torch scheduler, which also produces torch's own error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forensics.schedule.closed_form_chainable import CHAINABLE, NoClosedForm, check_keys, integer
from forensics.schedule.closed_form_direct import cyclic, hf_multiplier, one_cycle, warm_restarts
from forensics.schedule.closed_form_ops import Updates, apply_updates, concatenate, interleave
from forensics.schedule.hf import torch_equivalent
from forensics.schedule.spec import ScheduleSpec


@dataclass(frozen=True)
class ClosedFormLRs:
    """Expected LR per group at scheduler steps 0..count-1 (NaN where torch would refuse to step)."""

    lrs: np.ndarray         # (groups, count)
    notes: tuple[str, ...]  # torch's reason for stopping early, as the step-by-step replay words it


def closed_form_lrs(spec: ScheduleSpec, base_lrs: list[float], count: int) -> ClosedFormLRs | None:
    """The LR torch's scheduler for `spec` gives at each of `count` scheduler steps; None without a mirror."""
    groups = [float(lr) for lr in base_lrs] or [1.0]
    if count < 1:
        return None  # nothing to compute; torch still validates the spec at construction
    try:
        with np.errstate(all="ignore"):  # inf from an ever-growing ExponentialLR is torch's value too
            return _schedule(spec, groups, count)
    except NoClosedForm:
        return None


def _schedule(spec: ScheduleSpec, groups: list[float], count: int) -> ClosedFormLRs:
    spec = _resolve_hf(spec)
    if spec.class_name == "OneCycleLR":
        values, total = one_cycle(spec.params, groups, count)
        notes = ()
        if count > total + 1:
            # Mirrors torch's ValueError, worded as replay._step words it.
            notes = (f"torch stopped the schedule after {total + 1} steps: Tried to step {total + 1} times. "
                     f"The specified number of total steps is {total}",)
        return ClosedFormLRs(values, notes)
    if spec.class_name == "CyclicLR":
        return ClosedFormLRs(cyclic(spec.params, groups, count), ())
    per_step = len(spec.children) if spec.class_name == "ChainedScheduler" else 1
    rows = [apply_updates(base, _updates(spec, base, count), per_step) for base in groups]
    return ClosedFormLRs(np.array(rows).reshape(len(groups), count), ())


def _updates(spec: ScheduleSpec, base: float, count: int) -> Updates:
    """The in-place LR updates of `count` scheduler calls (one per child per call for ChainedScheduler)."""
    if spec.class_name == "SequentialLR":
        return _sequential(spec, base, count)
    if spec.class_name == "ChainedScheduler":
        check_keys(spec.params, ())
        return interleave([_leaf(child, base, count) for child in spec.children])
    return _leaf(spec, base, count)


def _sequential(spec: ScheduleSpec, base: float, count: int) -> Updates:
    """SequentialLR: child k runs from milestone k; at the milestone torch calls its `_update_lr(0)`,
    which sets the closed-form value at epoch 0, and steps it from there."""
    check_keys(spec.params, ("milestones",))
    milestones = spec.params.get("milestones")
    if not isinstance(milestones, (list, tuple)) or len(milestones) != len(spec.children) - 1:
        raise NoClosedForm("milestones")  # torch raises ValueError
    milestones = [integer(m, 1) for m in milestones]
    if any(later <= earlier for earlier, later in zip(milestones, milestones[1:])):
        raise NoClosedForm("milestones not increasing")
    bounds = [0, *milestones, count]
    parts = []
    for index, child in enumerate(spec.children):
        begin, end = min(bounds[index], count), min(bounds[index + 1], count)
        part = _leaf(child, base, max(end - begin, 0))
        if index and end > begin:
            part = part.with_first_set_to(_value_at_milestone(child, base))
        parts.append(part)
    return concatenate(parts)


def _leaf(spec: ScheduleSpec, base: float, count: int) -> Updates:
    spec = _resolve_hf(spec)
    if spec.class_name in CHAINABLE:
        return CHAINABLE[spec.class_name][0](spec.params, base, count)
    if spec.class_name == "CosineAnnealingWarmRestarts":
        return Updates.assign(warm_restarts(spec.params, base, count))
    if spec.is_hf:
        return Updates.assign(hf_multiplier(spec.class_name, spec.params, base, count))
    raise NoClosedForm(f"{spec.class_name} inside a composite")


def _value_at_milestone(spec: ScheduleSpec, base: float) -> float:
    spec = _resolve_hf(spec)
    if spec.class_name in CHAINABLE:
        return CHAINABLE[spec.class_name][1](spec.params, base)
    # No `_get_closed_form_lr`: torch calls get_lr() at epoch 0, the class's own first value.
    return float(_leaf(spec, base, 1).a[0])


def _resolve_hf(spec: ScheduleSpec) -> ScheduleSpec:
    """An HF name as the torch construction the replay builds for it (see `replay.build_scheduler`)."""
    if not spec.is_hf:
        return spec
    equivalent = torch_equivalent(spec.class_name, spec.params)
    if equivalent is None:
        return spec  # transformers' lambda in a LambdaLR
    return equivalent
