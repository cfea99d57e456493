"""The resumes of a run, with what the run looked like just before and just after each one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forensics.checks.series import training_losses
from forensics.ingest.checkpoint import Checkpoint
from forensics.model import aliases
from forensics.model.run import Run, Segment


# Two LRs are "the same" within this relative distance (a log rounds to 4 digits; float32 events).
SAME_LR = 0.05


@dataclass(frozen=True)
class Resume:
    """A segment that starts with a new process or a rewound step counter."""

    segment: Segment
    previous: Segment
    lr_before: pd.Series | None   # last LR row of the previous segment
    lr_after: pd.Series | None    # first LR row of this segment
    lr_first: pd.Series | None    # the very first LR row of the run
    lr_previous: pd.DataFrame | None = None  # every LR row of the previous segment, by step
    lr_resumed: pd.DataFrame | None = None   # every LR row of this segment, by step

    @property
    def step(self) -> int | None:
        """The first step logged after the resume."""
        return self.segment.start_step


def resumes(run: Run) -> list[Resume]:
    """Every restart or rewind after the first segment that continued the run (not a fresh start), in order."""
    lr = finite_lr(run)
    found = []
    for previous, segment in zip(run.segments, run.segments[1:]):
        if segment.kind not in ("restart", "rewind") or segment.start_step is None:
            continue
        if _fresh_start(run, previous, segment, lr):
            continue
        before = lr[lr["segment"] == previous.index].sort_values("step", kind="stable")
        after = lr[lr["segment"] == segment.index].sort_values("step", kind="stable")
        found.append(Resume(
            segment, previous,
            before.iloc[-1] if len(before) else None,
            after.iloc[0] if len(after) else None,
            lr.sort_values(["segment", "step"], kind="stable").iloc[0] if len(lr) else None,
            before, after))
    return found


def finite_lr(run: Run) -> pd.DataFrame:
    """The finite LR rows of param group 0."""
    lr = run.series(aliases.LR, group=0)
    return lr[np.isfinite(lr["value"].to_numpy())]


def same_lr(first: float, second: float) -> bool:
    """Two LRs equal up to rounding (both zero counts as equal)."""
    return abs(first - second) <= SAME_LR * max(abs(first), abs(second))


def counter_offsets(checkpoints: list[Checkpoint], unit: str) -> list[int]:
    """`scheduler.last_epoch - <unit>` per checkpoint that has both (unit: global_step or epoch)."""
    offsets = []
    for checkpoint in checkpoints:
        counter = getattr(checkpoint, unit)
        if checkpoint.schedulers and checkpoint.schedulers[0].last_epoch is not None and counter is not None:
            offsets.append(checkpoint.schedulers[0].last_epoch - counter)
    return offsets


def scheduler_unit(checkpoints: list[Checkpoint]) -> tuple[str, int] | None:
    """The loop counter the scheduler tracks (constant offset across checkpoints), and that offset.

    A per-step scheduler keeps last_epoch - global_step constant; a per-epoch one, last_epoch - epoch.
    """
    constant = []
    for unit in ("global_step", "epoch"):
        offsets = counter_offsets(checkpoints, unit)
        if offsets and len(set(offsets)) == 1:
            constant.append((abs(offsets[0]), unit, offsets[0]))
    if not constant:
        return None
    _, unit, offset = min(constant)
    return unit, offset


def checkpoints_between(run: Run, first_step: int | None, last_step: int | None) -> list[Checkpoint]:
    """Checkpoints whose global step lies in [first_step, last_step] (None = open end)."""
    return [checkpoint for checkpoint in run.checkpoints if checkpoint.global_step is not None
            and (first_step is None or checkpoint.global_step >= first_step)
            and (last_step is None or checkpoint.global_step <= last_step)]


def _fresh_start(run: Run, previous: Segment, segment: Segment, lr: pd.DataFrame) -> bool:
    """A new process that started the training over (a new experiment in the same log dir), not a resume.

    Only a restart at the run's very first step can be one. It counts as a resume only on positive
    evidence: a log says so ("Resuming from ..."), the LR picks up where the previous process left it
    rather than where the run began (a restored scheduler), or the loss clearly does.
    """
    first_step = run.segments[0].start_step
    if segment.kind != "restart" or first_step is None or segment.start_step > first_step + 1:
        return False
    if any(event.kind == "resume" for event in run.events):
        return False
    if _lr_continues(lr, previous, segment):
        return False
    loss = training_losses(run)
    loss = loss[np.isfinite(loss["value"].to_numpy())]
    ordered = loss.sort_values(["segment", "step"], kind="stable")
    start = ordered[ordered["segment"] == segment.index]["value"].head(5)
    before = ordered[ordered["segment"] == previous.index]["value"].tail(5)
    initial = ordered[ordered["segment"] == run.segments[0].index]["value"].head(5)
    if before.empty or start.empty or initial.empty:
        return True  # no finite loss to show the run continuing: no evidence of a resume
    # A resume needs positive evidence: the loss clearly continues from the previous process.
    level = float(start.median())
    return not abs(level - float(before.median())) < 0.5 * abs(level - float(initial.median()))


def _lr_continues(lr: pd.DataFrame, previous: Segment, segment: Segment) -> bool:
    """The segment's first LR is the previous segment's last one and not the run's first: the
    scheduler's position was carried over, so this process resumed."""
    ordered = lr.sort_values(["segment", "step"], kind="stable")
    before = ordered[ordered["segment"] == previous.index]["value"]
    after = ordered[ordered["segment"] == segment.index]["value"]
    if before.empty or after.empty:
        return False
    first, last, resumed = float(ordered["value"].iloc[0]), float(before.iloc[-1]), float(after.iloc[0])
    return same_lr(resumed, last) and not same_lr(resumed, first)
