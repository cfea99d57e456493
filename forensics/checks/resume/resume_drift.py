"""resume_drift: a resume that did not continue the run where it left off."""

from __future__ import annotations

import math

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.resume.resumes import Resume, checkpoints_between, counter_offsets, resumes, scheduler_unit
from forensics.formatting import fmt_lr, fmt_step
from forensics.model.run import Run

# An LR step across a resume larger than this factor needs an explanation.
LR_JUMP = 1.5
# "Back at the start": within this relative distance of the run's first LR.
SAME_LR = 0.05


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
    """The step counter went back further than to the newest checkpoint saved before the restart."""
    rewound_from = resume.segment.rewound_from_step
    if rewound_from is None:
        return None, []
    newest = checkpoints_between(run, None, rewound_from)
    resumable = max((c.global_step for c in newest), default=None)
    if resume.step == 0 or (resume.step < (resumable or 0) and resume.step <= rewound_from // 2):
        items = [Evidence(resume.segment.sources[0] if resume.segment.sources else ".", "segment start",
                          resume.step, expected=f"about {fmt_step(resumable or rewound_from)}",
                          note=f"the previous process had reached step {fmt_step(rewound_from)}")]
        if resume.lr_before is not None and resume.lr_after is not None:
            items += [row_evidence(run, resume.lr_before, note="last step logged before the restart"),
                      row_evidence(run, resume.lr_after, note="first step logged after the restart")]
        return (f"the step counter restarted at {fmt_step(resume.step)} although the previous process had "
                f"reached step {fmt_step(rewound_from)} (global step / start epoch reset on resume)"), items
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
    """The LR jumped across the resume, typically back to the start of the warmup."""
    if resume.lr_before is None or resume.lr_after is None:
        return None, []
    before, after = float(resume.lr_before["value"]), float(resume.lr_after["value"])
    if before <= 0 or after <= 0 or abs(math.log(after / before)) < math.log(LR_JUMP):
        return None, []
    first = float(resume.lr_first["value"]) if resume.lr_first is not None else None
    warmup_again = first is not None and abs(after - first) <= SAME_LR * first and abs(before - first) > SAME_LR * first
    items = [row_evidence(run, resume.lr_before, note="last LR before the resume"),
             row_evidence(run, resume.lr_after, expected=f"close to {fmt_lr(before)}", note="first LR after the resume")]
    detail = (f"the LR jumped from {fmt_lr(before)} to {fmt_lr(after)}"
              + (f", back to the run's first LR {fmt_lr(first)} (the schedule started over)" if warmup_again else ""))
    return detail, items
