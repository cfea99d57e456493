"""missing_resume_state: a resumed run whose checkpoints could not have restored the run exactly."""

from __future__ import annotations

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.resume.resumes import resumes
from forensics.formatting import fmt_step
from forensics.model import aliases
from forensics.model.run import Run


class MissingResumeState(Check):
    """A resumed run's checkpoints lack state an exact resume needs.

    **Symptom**: the run restarted from a checkpoint that holds no scheduler state, no global step
    or epoch, no optimizer state, no RNG state, or (with mixed precision) no GradScaler state, so
    the resumed process had to start those from scratch (or, with only the epoch saved, recompute
    the global step from it).

    **Bad run**: `torch.save({"model": model.state_dict(), "epoch": epoch}, path)` and a restart:
    the optimizer's moments, the LR schedule's position and the loss scale silently reset.

    **Healthy run**: every checkpoint of a resumed run holds model, optimizer, scheduler, step
    counters and RNG state (and the GradScaler when one is used); or the run never restarted.

    **Fix**: save `{"model", "optimizer", "scheduler", "scaler", "epoch", "global_step",
    "rng_state": torch.get_rng_state(), "cuda_rng_state", "numpy_rng_state", "python_rng_state"}`
    and restore each one with `load_state_dict` / `torch.set_rng_state` on resume.
    """

    code = "missing_resume_state"
    severity = "warning"
    needs = ("a restart segment", "checkpoints")

    def run(self, run: Run) -> list[Finding]:
        restarts = [resume for resume in resumes(run) if resume.segment.kind == "restart"]
        if not restarts:
            raise NotApplicable("the run never restarted, so no resume depended on its checkpoints")
        if not run.checkpoints:
            raise NotApplicable("the run restarted but no readable checkpoint was found")
        candidates = _resumable(run, restarts)
        missing = _missing_state(run, candidates)
        if not missing:
            return []
        first = restarts[0]
        gaps = sorted({what for what, _, _ in missing})
        # Only weights exports found: the training checkpoints the resume used may be kept elsewhere.
        exports_only = all(c.layout == "model_only" for c in candidates)
        serious = {"scheduler state", "optimizer state", "global step and epoch"} & set(gaps) and not exports_only
        evidence = [_restart_evidence(run, first)]
        evidence += [Evidence(path, "checkpoint keys", keys, expected=what, note=f"{what} missing")
                     for what, path, keys in missing[:8]]
        message = (f"The run restarted at step {fmt_step(first.step)}, but {len({p for _, p, _ in missing})} of "
                   f"the {len(candidates)} checkpoint(s) it could have resumed from lack {', '.join(gaps)}; the resumed process could not "
                   "have restored them" + (" (with only the epoch saved, the global step had to be recomputed from "
                                           "it)" if "global step" in gaps else "") + ".")
        return [self.finding(step=first.step, end_step=first.segment.end_step, message=message,
                             fix=self.documentation()["Fix"], evidence=evidence,
                             confidence=0.8, severity="warning" if serious else "info")]


def _resumable(run: Run, restarts) -> list:
    """The checkpoints a resume could have used: those saved before the last process that resumed
    started (global step at most one past where its predecessor ended: a checkpoint's global step
    counts the steps done), plus those whose step is unknown."""
    reached = max((resume.previous.end_step + 1 for resume in restarts if resume.previous.end_step is not None),
                  default=None)
    candidates = [c for c in run.checkpoints
                  if reached is None or c.global_step is None or c.global_step <= reached]
    return candidates or list(run.checkpoints)


def _missing_state(run: Run, candidates: list) -> list[tuple[str, str, str]]:
    """(what is missing, checkpoint path, the keys it does have) for every gap."""
    uses_scaler = any(c.has_grad_scaler for c in run.checkpoints) or len(run.series(aliases.LOSS_SCALE)) > 0
    uses_scheduler = any(c.schedulers for c in run.checkpoints) or _lr_moves(run)
    # Weights exports beside training checkpoints are not what a resume loads; when they are all
    # there is, they are what it resumed from.
    exports_only = all(checkpoint.layout == "model_only" for checkpoint in candidates)
    gaps = []
    for checkpoint in candidates:
        if checkpoint.layout == "model_only" and not exports_only:
            continue  # a weights export, not a training checkpoint
        keys = ", ".join(checkpoint.top_level_keys[:12]) or "(none)"
        # timm's schedulers hold no state: its train script rebuilds the schedule from the saved
        # epoch (`step(epoch)`, `step_update(epoch * updates_per_epoch)`) and saves on epoch ends,
        # so a timm checkpoint without scheduler state or global step resumes the schedule exactly.
        recomputes_schedule = checkpoint.layout == "timm" and checkpoint.epoch is not None
        checks = [
            ("optimizer state", not checkpoint.optimizers),
            ("scheduler state", uses_scheduler and not checkpoint.schedulers and not recomputes_schedule),
            ("global step and epoch", checkpoint.global_step is None and checkpoint.epoch is None),
            # With the epoch alone the resumed step counter is recomputed (epoch * len(loader)): right
            # only if the loader length and accumulation did not change and saves fell on epoch ends.
            ("global step", checkpoint.global_step is None and checkpoint.epoch is not None
             and not recomputes_schedule),
            ("RNG state", not checkpoint.has_rng_state),
            ("GradScaler state", uses_scaler and not checkpoint.has_grad_scaler),
        ]
        gaps += [(what, checkpoint.path, keys) for what, lacking in checks if lacking]
    return gaps


def _restart_evidence(run: Run, resume) -> Evidence:
    """Where the restart shows: the log line that announced it, or the new process's first record."""
    segment = resume.segment
    source = segment.sources[0] if segment.sources else "."
    line = next((event.line for event in run.events if event.source == source and event.line is not None
                 and event.kind in ("restart", "resume") and f"line {event.line}," in segment.reason), None)
    return Evidence(source, f"line {line}" if line is not None else "segment start", resume.step,
                    note=f"restart: {segment.reason}")


def _lr_moves(run: Run) -> bool:
    lr = run.series(aliases.LR, group=0)["value"]
    return len(lr) > 1 and lr.max() > 1.05 * lr.min()
