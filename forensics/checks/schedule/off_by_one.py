"""off_by_one: the scheduler runs one step ahead of the optimizer."""

from __future__ import annotations

import math

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.resume.resumes import counter_offsets, resumes
from forensics.checks.schedule.alignment import align, intent_evidence
from forensics.formatting import fmt_lr, fmt_step
from forensics.model import aliases
from forensics.model.run import Run

EXPLAINED = 0.25   # the one-step shift must explain the LR this much better than no shift
RESUME_JUMP = 1.5  # an LR continuing across a resume moves by less than this factor
BURST_LINES = 4    # warnings this few lines apart were printed by one call (a scheduler and its children)


class OffByOne(Check):
    """The LR schedule runs one step ahead: the scheduler was stepped before the optimizer.

    **Symptom**: the scheduler's counter is one ahead of the optimizer's (`scheduler.step()` called
    once at setup, or before `optimizer.step()` in the loop), so the first LR of the schedule is
    never used and every step gets the next step's LR; with a warmup the first LR is about 2x the
    intended one. torch warns "Detected call of `lr_scheduler.step()` before `optimizer.step()`".

    **Bad run**: a pre-stepped OneCycleLR starts at 2x its initial LR; checkpoints show
    `scheduler.last_epoch = global_step + 1`.

    **Healthy run**: the LR used at step s is the schedule's value for step s. The torch warning
    alone is harmless when AMP's GradScaler skipped the first optimizer step on an fp16 overflow
    (the loss scale drops at the start).

    **Fix**: call `scheduler.step()` only after `optimizer.step()`, once per step, and never at
    setup; when resuming, restore the scheduler with `load_state_dict` instead of stepping it to
    catch up.
    """

    code = "off_by_one"
    severity = "warning"
    needs = ("LR series and intended schedule, or checkpoint counters, or the torch ordering warning",)

    def run(self, run: Run) -> list[Finding]:
        evidence, reasons = [], []
        counter = _counter_ahead(run)
        if counter is not None:
            reasons.append(counter[0])
            evidence.append(counter[1])
        warning = next((event for event in run.events if event.kind == "scheduler_order_warning"), None)
        harmless = _first_step_skipped(run) or _resume_fast_forward(run)
        if warning is not None and harmless is None:
            reasons.append(f"torch warned that lr_scheduler.step() ran before optimizer.step() ({warning.source} "
                           f"line {warning.line})")
            evidence.append(Evidence(warning.source, f"line {warning.line}", warning.text, note="torch's warning"))
        if not reasons:
            if warning is None and not counter_offsets(run.checkpoints, "global_step"):
                raise NotApplicable("needs scheduler counters in checkpoints or torch's ordering warning in a log "
                                    "(a logged LR one step ahead alone may be a logging offset)")
            if warning is not None:
                raise NotApplicable(f"torch's ordering warning is explained by a skipped first step ({harmless})")
            return []
        shift = _shifted_lr(run)
        if shift is not None:
            reasons.append(shift[0])
            evidence += shift[1]
        message = "The scheduler is one step ahead of the optimizer: " + "; ".join(reasons) + "."
        return [self.finding(step=0, end_step=None, message=message, fix=self.documentation()["Fix"],
                             evidence=evidence, confidence=0.85 if counter or shift else 0.6)]


def _counter_ahead(run: Run):
    """Every checkpoint has scheduler.last_epoch == global_step + 1: stepped once more than the optimizer."""
    offsets = counter_offsets(run.checkpoints, "global_step")
    if len(offsets) < 1 or set(offsets) != {1}:
        return None
    checkpoint = next(c for c in run.checkpoints if c.schedulers and c.global_step is not None)
    state = checkpoint.schedulers[0]
    return (f"{checkpoint.path} has scheduler last_epoch {state.last_epoch} at global_step {checkpoint.global_step}",
            Evidence(checkpoint.path, f"ckpt key {state.key}.last_epoch", state.last_epoch,
                     expected=checkpoint.global_step, note="scheduler steps vs optimizer steps"))


def _first_step_skipped(run: Run) -> str | None:
    """Evidence that the optimizer skipped its first step(s) (AMP overflow), which also triggers the warning."""
    if any(event.kind == "overflow" and (event.step is None or event.step <= 5) for event in run.events):
        return "an fp16 overflow was logged at the first steps"
    scale = run.series(aliases.LOSS_SCALE)
    if len(scale) >= 2:
        first = scale.sort_values("step", kind="stable")
        if float(first["value"].iloc[1]) < float(first["value"].iloc[0]) and int(first["step"].iloc[1]) <= 5:
            return "the loss scale dropped at the first steps"
    for checkpoint in run.checkpoints:
        counts = [count for optimizer in checkpoint.optimizers for count in optimizer.step_counts]
        if counts and checkpoint.global_step is not None and max(counts) < checkpoint.global_step:
            return (f"{checkpoint.path}: the optimizer took {max(counts)} steps of {checkpoint.global_step} "
                    "(skipped steps)")
    return None


def _resume_fast_forward(run: Run) -> str | None:
    """The ordering warnings came from resumes that stepped a fresh scheduler forward to the resumed
    step before training (the LR then continues where it stopped), not from the loop's order.

    A warning whose time places it in the first process is not one; warnings that cannot be placed
    are explained when there is at most one per resume whose LR continued smoothly (a scheduler ahead
    from the start warns in every process, the first included).
    """
    warnings = [event for event in run.events if event.kind == "scheduler_order_warning"]
    smooth = [resume for resume in resumes(run) if resume.segment.kind == "restart"
              and resume.lr_before is not None and resume.lr_after is not None
              and resume.segment.rewound_from_step is None
              and _continues(float(resume.lr_before["value"]), float(resume.lr_after["value"]))]
    if not warnings or not smooth or len(_bursts(warnings)) > len(smooth):
        return None
    first = run.segments[0] if run.segments else None
    for event in warnings:
        if (first is not None and event.wall_time is not None and first.end_wall_time is not None
                and event.wall_time <= first.end_wall_time):
            return None
    steps = ", ".join(fmt_step(resume.step) for resume in smooth)
    return (f"the run resumed at step {steps} with the LR continuing where it stopped: a fresh scheduler "
            "stepped forward to the resumed step before training warns the same way")


def _bursts(warnings: list) -> list[list]:
    """Warnings printed together (one scheduler and its children, a few lines apart in one log) are
    one occurrence."""
    bursts: list[list] = []
    for event in sorted(warnings, key=lambda e: (e.source, e.line or 0)):
        last = bursts[-1][-1] if bursts else None
        if (last is not None and last.source == event.source and last.line is not None and event.line is not None
                and event.line - last.line <= BURST_LINES):
            bursts[-1].append(event)
        else:
            bursts.append([event])
    return bursts


def _continues(before: float, after: float) -> bool:
    return before > 0 and after > 0 and abs(math.log(after / before)) < math.log(RESUME_JUMP)


def _shifted_lr(run: Run):
    """The logged LR matches the intended schedule shifted by one step (and not unshifted)."""
    try:
        alignment = align(run)
    except NotApplicable:
        return None
    comparison = alignment.comparison
    if comparison.offset != 1 or not comparison.offset_residual < EXPLAINED * comparison.residual:
        return None
    first = alignment.lr.iloc[0]
    expected = alignment.intended.expected_at([first["step"]])[0]
    return (f"the logged LR is the schedule's next-step value (first LR {fmt_lr(float(first['value']))}, "
            f"intended {fmt_lr(float(expected))})",
            [row_evidence(run, first, expected=float(expected), note="first LR"),
             intent_evidence(alignment.intended)])
