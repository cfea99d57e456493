"""resume_drift: a resume that did not continue the run where it left off."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.resume.resumes import (
    SAME_LR, Resume, checkpoints_between, counter_offsets, finite_lr, resumes, same_lr, scheduler_unit)
from forensics.formatting import fmt_lr, fmt_step
from forensics.model.run import Run

# An LR step across a resume larger than this factor needs an explanation.
LR_JUMP = 1.5
# The LRs logged this many rows into the resumed process are held against the course before it.
FIRST_ROWS = 3


class ResumeDrift(Check):
    """A resume did not continue the schedule or the step counters where the run left off.

    **Symptom**: after a restart the step counter goes back (to 0, or to an older checkpoint), the
    scheduler's own counter starts again while the global step continues, or the LR jumps to a
    value the schedule does not explain (warmup repeats).

    **Bad run**: the loop loads model and optimizer but builds a fresh scheduler, so at step 200 the
    LR drops from 1.8e-03 back to the warmup start 3.0e-05; or `start_epoch = 0` after loading, so
    TensorBoard steps restart at 0.

    **Healthy run**: after the restart the step counter continues from the checkpoint, the
    scheduler's `last_epoch` keeps its relation to the global step, and the LR continues smoothly.

    **Fix**: save and restore everything that moves: `scheduler.load_state_dict(ckpt["scheduler"])`,
    `start_epoch = ckpt["epoch"]`, `global_step = ckpt["global_step"]`, and never reset them after
    loading; resume from the newest checkpoint.
    """

    code = "resume_drift"
    severity = "error"
    needs = ("a restart or rewind segment", "LR series or checkpoint counters")

    def run(self, run: Run) -> list[Finding]:
        found = resumes(run)
        if not found:
            raise NotApplicable("the run has no restart or rewind, so there is no resume to check")
        findings = []
        for resume in found:
            evidence, problems = [], []
            for examine in (_step_rewind, _scheduler_restart, _lr_jump):
                problem, items = examine(run, resume)
                if problem:
                    problems.append(problem)
                    evidence += items
            if problems:
                findings.append(self.finding(
                    step=resume.step, end_step=resume.segment.end_step,
                    message=f"At the resume at step {fmt_step(resume.step)} ({resume.segment.reason}): "
                            + "; ".join(problems) + ".",
                    fix=self.documentation()["Fix"], evidence=evidence, confidence=0.85))
        return findings


def _step_rewind(run: Run, resume: Resume):
    """The step counter went back to 0, or to before the newest checkpoint saved before the restart."""
    rewound_from = resume.segment.rewound_from_step
    if rewound_from is None:
        return None, []
    newest = checkpoints_between(run, None, rewound_from)
    resumable = max((c.global_step for c in newest), default=None)
    if resume.step == 0 or resume.step < (resumable or 0):
        items = [Evidence(resume.segment.sources[0] if resume.segment.sources else ".", "segment start",
                          resume.step, expected=f"about {fmt_step(resumable or rewound_from)}",
                          note=f"the previous process had reached step {fmt_step(rewound_from)}")]
        if resume.lr_before is not None and resume.lr_after is not None:
            items += [row_evidence(run, resume.lr_before, note="last step logged before the restart"),
                      row_evidence(run, resume.lr_after, note="first step logged after the restart")]
        why = ("global step / start epoch reset on resume" if resume.step == 0 or resumable is None
               else f"resumed from an older checkpoint than the newest one, saved at step {fmt_step(resumable)}")
        return (f"the step counter restarted at {fmt_step(resume.step)} although the previous process had "
                f"reached step {fmt_step(rewound_from)} ({why})"), items
    return None, []


def _scheduler_restart(run: Run, resume: Resume):
    """The scheduler's counter lost its relation to the loop counter across the resume."""
    before = checkpoints_between(run, None, resume.step - 1 if resume.segment.rewound_from_step is None else None)
    if resume.segment.rewound_from_step is not None:
        return None, []  # counters of a rewound run are compared by _step_rewind
    after = checkpoints_between(run, resume.step + 1, None)  # saved by the resumed process
    unit = scheduler_unit(before)
    if unit is None or not after:
        return None, []
    counter, offset_before = unit
    changed = next((c for c in after if counter_offsets([c], counter) not in ([], [offset_before])), None)
    if changed is None:
        return None, []
    state = changed.schedulers[0]
    item = Evidence(changed.path, f"ckpt key {state.key}.last_epoch", state.last_epoch,
                    expected=getattr(changed, counter) + offset_before,
                    note=f"before the resume last_epoch - {counter} was {offset_before}")
    return (f"the scheduler's counter restarted: {changed.path} has last_epoch {state.last_epoch} at "
            f"{counter} {getattr(changed, counter)}, where the checkpoints before the resume kept "
            f"last_epoch = {counter}{offset_before:+d} (scheduler state not restored)"), [item]


def _lr_jump(run: Run, resume: Resume):
    """The LR across the resume is not what the run was on course for.

    Steps logged both before and after a rewind must show the same LR (a re-run of steps after the
    last checkpoint repeats the schedule exactly). Otherwise the first LR after the resume is held
    against the LR just before it and the local slope of the LR there, against a stated schedule,
    and against the run's own step decays; a jump none of them explains, and an LR back at the run's
    first value (a warmup or schedule starting over), is drift.
    """
    if resume.lr_before is None or resume.lr_after is None:
        return None, []
    twice = _logged_twice(resume)
    if twice is not None:
        return _differ_on_rerun(run, resume, twice)
    before = float(resume.lr_before["value"])
    # The first few LRs after the resume: a fresh scheduler built before the optimizer state was
    # loaded lets one step run at the restored LR and resets it at its first step().
    resumed = resume.lr_resumed.drop_duplicates("step", keep="first") if resume.lr_resumed is not None else None
    rows = [row for _, row in resumed.head(FIRST_ROWS).iterrows()] if resumed is not None else [resume.lr_after]
    for position, row in enumerate(rows):
        after = float(row["value"])
        low, high = _on_course(resume, row)
        if low / LR_JUMP <= after <= high * LR_JUMP or _stated_explains(run, row, after) or _own_decay(run, before, after):
            before = after if position == 0 else before
            continue
        first = float(resume.lr_first["value"]) if resume.lr_first is not None else None
        warmup_again = first is not None and same_lr(after, first) and not same_lr(before, first)
        which = "first LR after the resume" if position == 0 else f"LR {position + 1} logged steps after the resume"
        items = [row_evidence(run, resume.lr_before, note="last LR before the resume"),
                 row_evidence(run, row, expected=f"about {fmt_lr(high if after > high else low)}", note=which)]
        if position:
            items.insert(1, row_evidence(run, rows[0], note="first LR after the resume (the restored one)"))
        where = "" if position == 0 else f" by step {fmt_step(int(row['step']))}"
        detail = (f"the LR jumped from {fmt_lr(float(resume.lr_before['value']))} to {fmt_lr(after)}{where}"
                  + (f", back to the run's first LR {fmt_lr(first)} (the schedule started over)" if warmup_again
                     else ""))
        return detail, items
    return None, []


def _logged_twice(resume: Resume) -> pd.DataFrame | None:
    """LRs at the steps logged both before and after a rewind: columns step, before, after."""
    if resume.segment.rewound_from_step is None or resume.lr_previous is None or resume.lr_resumed is None:
        return None
    earlier = resume.lr_previous.drop_duplicates("step", keep="last").set_index("step")
    later = resume.lr_resumed.drop_duplicates("step", keep="first").set_index("step")
    shared = earlier.index.intersection(later.index)
    if not len(shared):
        return None
    return pd.DataFrame({"step": shared, "before": earlier.loc[shared, "value"].to_numpy(),
                         "after": later.loc[shared, "value"].to_numpy()})


def _differ_on_rerun(run: Run, resume: Resume, twice: pd.DataFrame):
    differ = [index for index, (a, b) in enumerate(zip(twice["before"], twice["after"])) if not same_lr(a, b)]
    if len(differ) * 4 < len(twice):  # a stray rounding is not a different schedule
        return None, []
    first = twice.iloc[differ[0]]
    step = int(first["step"])
    earlier = resume.lr_previous[resume.lr_previous["step"] == step].iloc[-1]
    later = resume.lr_resumed[resume.lr_resumed["step"] == step].iloc[0]
    items = [row_evidence(run, earlier, note=f"step {fmt_step(step)} before the resume"),
             row_evidence(run, later, expected=float(first["before"]), note=f"step {fmt_step(step)} after the resume")]
    return (f"{len(differ)} of the {len(twice)} steps logged both before and after the resume have a different LR "
            f"(step {fmt_step(step)}: {fmt_lr(float(first['before']))} before, {fmt_lr(float(first['after']))} "
            f"after), so the resumed process did not continue the same schedule"), items


def _on_course(resume: Resume, row: pd.Series) -> tuple[float, float]:
    """The range an LR after the resume was on course for: between the last LR before it and the
    LR's local trend (a line through the last few LRs) carried on to that row's step."""
    before = float(resume.lr_before["value"])
    previous = resume.lr_previous
    if previous is None or len(previous) < 3:
        return before, before
    tail = previous.drop_duplicates("step", keep="last").tail(5)
    steps, values = tail["step"].to_numpy(dtype=float), tail["value"].to_numpy(dtype=float)
    if np.ptp(steps) == 0:
        return before, before
    slope = np.polyfit(steps, values, 1)[0]
    carried = max(0.0, before + slope * (float(row["step"]) - steps[-1]))
    return min(before, carried), max(before, carried)


def _stated_explains(run: Run, row: pd.Series, after: float) -> bool:
    """A stated (not inferred) schedule gives this LR at this row's step."""
    intended = run.intended_schedule
    if intended is None or intended.source == "inferred":
        return False
    expected = float(intended.expected_at([int(row["step"])])[0])
    return math.isfinite(expected) and same_lr(after, expected)


def _own_decay(run: Run, before: float, after: float) -> bool:
    """A drop by the same factor as a step decay the LR makes elsewhere in the run (StepLR's gamma
    falling due at the resume)."""
    if not 0 < after < before:
        return False
    values = finite_lr(run).sort_values(["segment", "step"], kind="stable")["value"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = values[1:] / values[:-1]
    drops = ratios[(ratios < 1 / LR_JUMP) & np.isfinite(ratios)]
    # The drop across the resume is one of them; the schedule must make the same drop elsewhere too.
    return int(np.sum(np.abs(drops - after / before) <= SAME_LR * after / before)) >= 2
