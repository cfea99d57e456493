"""constant_lr: the LR sits still for most of the run although a scheduler was meant to move it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.schedule.alignment import MIN_CONFIDENCE, intent_evidence
from forensics.checks.schedule.scheduler_facts import (
    SavedScheduler,
    expects_lr_change,
    saved_schedulers,
)
from forensics.checks.series import busiest_source
from forensics.formatting import fmt_lr, fmt_percent, fmt_step
from forensics.model import aliases
from forensics.model.run import Run

# "Constant" = within this relative band around the stretch's first value.
BAND = 0.05
# A stretch this long (as a share of the run's steps) is "most of the run".
MIN_SHARE = 0.5
MIN_POINTS = 10
# The logged LR "follows" a schedule within this relative error (logs round to 4 significant digits).
FOLLOWS = 0.01


class ConstantLr(Check):
    """Learning rate stays constant while a scheduler is configured to change it.

    **Symptom**: the logged LR is flat (within 5%) for at least half of the run's steps, yet the
    checkpoints hold a scheduler whose schedule moves the LR (OneCycle, cosine, linear, ...), or,
    when no checkpoint holds one, the schedule stated with `--schedule` or in a config moves it.

    **Bad run**: OneCycleLR(total_steps=58285) stepped once per epoch: the LR sits at 2.84e-03 from
    step 0 to 45,114 and never warms up or anneals.

    **Healthy run**: the LR follows the scheduler; or the LR is flat and no scheduler is saved,
    or the saved scheduler keeps it flat by design (ReduceLROnPlateau, a StepLR that never reached
    its step size).

    **Fix**: call `scheduler.step()` once per optimizer step for per-step schedules (inside the
    batch loop, right after `optimizer.step()`), size the schedule in optimizer steps
    (`total_steps = epochs * ceil(len(loader) / accumulation_steps)`), and restore the scheduler's
    `state_dict()` on resume.
    """

    code = "constant_lr"
    severity = "error"
    needs = ("LR series", "scheduler state in a checkpoint")

    def run(self, run: Run) -> list[Finding]:
        lr = _main_lr_series(run)
        if len(lr) < MIN_POINTS:
            raise NotApplicable(f"needs an LR series with at least {MIN_POINTS} points; "
                                + ("none found" if lr.empty else f"found {len(lr)}"))
        by_step = lr.sort_values("step", kind="stable").drop_duplicates("step", keep="last")
        steps = by_step["step"].to_numpy()
        intent = _saved_intent(run) if saved_schedulers(run) else _stated_intent(run, steps)
        if intent is None:
            return []
        first, last = _longest_flat_stretch(by_step["value"].to_numpy())
        span = max(int(steps[-1] - steps[0]), 1)
        share = (int(steps[last] - steps[first]) + 1) / (span + 1)
        if share < MIN_SHARE:
            return []
        start_row, end_row = by_step.iloc[first], by_step.iloc[last]
        # A schedule that is flat there by its own shape explains a flat LR, unless a checkpoint shows
        # the scheduler stepped less often than the optimizer (then the flatness is the failure).
        explained = not _stepped_slowly(run) and (_follows_intended(run, by_step.iloc[first:last + 1])
                                                  or _scheduler_drove_it(run))
        if explained or _other_source_moves(run, lr, start_row, end_row):
            return []
        return [self._finding(run, start_row, end_row, share, intent)]

    def _finding(self, run: Run, start_row: pd.Series, end_row: pd.Series, share: float, intent: Intent) -> Finding:
        level = float(start_row["value"])
        start_step, end_step = int(start_row["step"]), int(end_row["step"])
        message = (f"LR stuck at {fmt_lr(level)} from step {fmt_step(start_step)} to {fmt_step(end_step)} "
                   f"({fmt_percent(share)} of training) although {intent.holder}; {intent.why}.")
        if intent.hint:
            message += " " + intent.hint
        evidence = [
            row_evidence(run, start_row, note="start of the flat stretch"),
            row_evidence(run, end_row, expected=f"outside {fmt_lr(level)} ±{BAND:.0%}", note="end of the flat stretch"),
            *intent.evidence,
        ]
        return self.finding(step=start_step, end_step=end_step, message=message, fix=self.documentation()["Fix"],
                            evidence=evidence, confidence=intent.confidence)


@dataclass(frozen=True)
class Intent:
    """What says the LR should have moved: a saved scheduler or a stated schedule."""

    holder: str                    # "checkpoints/ckpt_epoch_5.pt holds a OneCycleLR scheduler"
    why: str
    hint: str
    evidence: tuple[Evidence, ...]
    confidence: float


def _saved_intent(run: Run) -> Intent | None:
    """The last saved scheduler that should have moved the LR, or None when none should have."""
    moving = [(saved, why) for saved in saved_schedulers(run) for expected, why in [expects_lr_change(saved.state)]
              if expected]
    if not moving:
        return None
    saved, why = moving[-1]
    evidence = (Evidence(saved.checkpoint.path, saved.locator, saved.state.class_name or "unidentified",
                         note=f"identified by {saved.state.identified_by}; {why}"), *_counter_evidence(saved))
    return Intent(f"{saved.checkpoint.path} holds a {saved.state.class_name or 'unidentified'} scheduler", why,
                  _stepping_hint(saved), evidence, 0.9)


def _stated_intent(run: Run, steps: np.ndarray) -> Intent:
    """Without a saved scheduler: the schedule stated on the command line or in a config, if it moves the LR."""
    intended = run.intended_schedule
    if intended is None or intended.source == "inferred" or intended.confidence < MIN_CONFIDENCE:
        raise NotApplicable("no scheduler state in any checkpoint and no schedule stated (--schedule or a config), "
                            "so a flat LR may be intended")
    expected = intended.expected_at(steps)
    expected = expected[np.isfinite(expected)]
    if not len(expected) or _end_of_band(expected, 0) == len(expected):
        return None
    low, high = float(expected.min()), float(expected.max())
    why = f"over the logged steps it goes from {fmt_lr(float(expected[0]))} through {fmt_lr(high)} to {fmt_lr(float(expected[-1]))}"
    if low > 0:
        why += f" (a {high / low:,.1f}x range)"
    holder = f"the stated schedule {intended.spec} ({intended.source}) moves it"
    evidence = (intent_evidence(intended),)
    return Intent(holder, why, "", evidence, 0.9 * intended.confidence)


def _main_lr_series(run: Run) -> pd.DataFrame:
    """Param group 0 from the source that logged the LR most often."""
    lr = run.series(aliases.LR, group=0)
    if lr.empty:
        return lr
    lr = busiest_source(lr)
    return lr[np.isfinite(lr["value"].to_numpy())]


def _follows_intended(run: Run, stretch: pd.DataFrame) -> bool:
    """Whether the flat stretch is what the intended schedule prescribes there (within 1%, at the
    best of the step conventions s-1, s, s+1): early on a cosine sized for many more steps (the
    horizon is the problem then, `schedule_incomplete` says so), or a plateau held on purpose."""
    intended = run.intended_schedule
    if intended is None or intended.source == "inferred" or intended.confidence < MIN_CONFIDENCE:
        return False
    steps, logged = stretch["step"].to_numpy(), stretch["value"].to_numpy()
    for shift in (0, -1, 1):
        expected = intended.expected_at(steps + shift)
        inside = np.isfinite(expected) & (expected > 0)
        if inside.sum() >= MIN_POINTS and np.all(np.abs(logged[inside] / expected[inside] - 1) <= FOLLOWS):
            return True
    return False


def _stepped_slowly(run: Run) -> bool:
    """A saved scheduler stepped fewer than 2/3 as often as the optimizer before it (once per epoch, say)."""
    return any(saved.state.last_epoch is not None and saved.checkpoint.global_step
               and saved.state.last_epoch * 1.5 < saved.checkpoint.global_step for saved in saved_schedulers(run))


def _scheduler_drove_it(run: Run) -> bool:
    """Whether the saved scheduler was stepped once per optimizer step and put the logged LR where
    it is: its step count matches the checkpoint's global step and its last LR the one logged there.
    A flat stretch is then the schedule's own slow part, not a scheduler that did not move."""
    for saved in saved_schedulers(run):
        state, checkpoint = saved.state, saved.checkpoint
        if not state.last_lrs or not state.last_lrs[0] > 0 or state.last_epoch is None or not checkpoint.global_step:
            continue
        lr = run.series(aliases.LR, group=0)
        near = lr[(lr["step"] - checkpoint.global_step).abs() <= 1]["value"].to_numpy()
        if len(near) and np.any(np.abs(near / state.last_lrs[0] - 1) <= FOLLOWS):
            return True
    return False


def _other_source_moves(run: Run, main: pd.DataFrame, start_row: pd.Series, end_row: pd.Series) -> bool:
    """Whether another file logs an LR that leaves the band over the same steps: then the flat one
    records a configured value, not the optimizer's LR (`lr_mismatch` reports the disagreement)."""
    lr = run.series(aliases.LR, group=0)
    others = lr[(lr["source"] != main["source"].iloc[0]) & lr["step"].between(start_row["step"], end_row["step"])]
    level = float(start_row["value"])
    low, high = sorted((level / (1 + BAND), level * (1 + BAND)))
    for _, rows in others.groupby("source", observed=True):
        values = rows["value"].to_numpy()
        values = values[np.isfinite(values)]
        if len(values) >= MIN_POINTS // 2 and np.any((values < low) | (values > high)):
            return True
    return False


def _longest_flat_stretch(values: np.ndarray) -> tuple[int, int]:
    """First and last index of the longest run of values that stay within BAND of that run's own first value."""
    best = (0, 0)
    start = 0
    while start < len(values):
        end = _end_of_band(values, start) - 1
        if end - start > best[1] - best[0]:
            best = (start, end)
        start = end + 1
    return best


def _end_of_band(values: np.ndarray, start: int) -> int:
    """Index of the first value after `start` outside BAND of values[start] (len(values) if none).

    Looks ahead in doubling windows so a fast-moving LR costs O(n) overall, not O(n^2).
    """
    reference = values[start]
    low, high = sorted((reference / (1 + BAND), reference * (1 + BAND)))
    position, window = start + 1, 256
    while position < len(values):
        chunk = values[position:position + window]
        outside = np.flatnonzero((chunk < low) | (chunk > high))
        if len(outside):
            return position + int(outside[0])
        position += window
        window *= 2
    return len(values)


def _stepping_hint(saved: SavedScheduler) -> str:
    """Compare how often the scheduler stepped with how many optimizer steps ran."""
    scheduler_steps = saved.state.last_epoch
    optimizer_steps = saved.checkpoint.global_step
    if scheduler_steps is None or not optimizer_steps or scheduler_steps <= 0:
        return ""
    ratio = optimizer_steps / scheduler_steps
    if ratio < 1.5:
        return ""
    return (f"The scheduler had been stepped {scheduler_steps:,} times in {optimizer_steps:,} optimizer steps "
            f"(one scheduler step per {ratio:,.0f} optimizer steps), as if stepped once per epoch.")


def _counter_evidence(saved: SavedScheduler) -> list[Evidence]:
    state, checkpoint = saved.state, saved.checkpoint
    evidence = []
    if state.last_epoch is not None:
        evidence.append(Evidence(checkpoint.path, f"ckpt key {state.key}.last_epoch", state.last_epoch,
                                 expected=checkpoint.global_step, note="scheduler steps vs the checkpoint's global step"))
    total = (state.params or {}).get("total_steps") or (state.params or {}).get("T_max")
    if total is not None:
        evidence.append(Evidence(checkpoint.path, f"ckpt key {state.key}.{'total_steps' if 'total_steps' in state.params else 'T_max'}",
                                 total, note="the schedule's horizon in scheduler steps"))
    return evidence
